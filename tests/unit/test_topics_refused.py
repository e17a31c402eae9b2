"""Topics Kafka refused to create are said, not taken for made (aiokafka returns the
CreateTopics answer without raising on its per-topic errors)."""

from __future__ import annotations

from types import SimpleNamespace

from orchestrator.kafka import topics_refused


def test_refused_topics_are_named_with_why() -> None:
    answer = SimpleNamespace(
        topic_errors=[
            ("orders.submitted", 0, None),
            ("orders.status", 36, "Topic 'orders.status' already exists."),
            ("orders.submitted.dlq", 38, "Replication factor: 3 larger than available brokers: 1."),
            ("saga.replies", 41),
        ]
    )
    assert topics_refused(answer) == [
        "orders.submitted.dlq: Replication factor: 3 larger than available brokers: 1.",
        "saga.replies: NotControllerError",
    ]


def test_an_answer_without_errors_refuses_nothing() -> None:
    assert topics_refused(SimpleNamespace(topic_errors=[("t", 0, "")])) == []
    assert topics_refused(None) == []
