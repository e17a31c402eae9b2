"""Handler wiring on FastStream's TestKafkaBroker: raw records reach the runtimes in batches."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker, TestKafkaBroker

from events import topics
from orchestrator.app import SERVICES, Application
from orchestrator.engine.records import RawRecord
from orchestrator.settings import Settings
from orchestrator.wiring import subscribe_batches


async def test_batches_carry_raw_records_with_key_headers_and_offsets() -> None:
    broker = KafkaBroker("localhost:9092")
    seen: list[RawRecord] = []

    async def handler(records: Sequence[RawRecord]) -> None:
        seen.extend(records)

    subscribe_batches(broker, ["t.in"], "g", Settings(), handler, title="t", description="d")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{not json", "t.in", key=b"k-1", headers={"ce_id": "m-1"})
        await test_broker.publish(b'{"a": 1}', "t.in", key=b"k-2")
    assert [r.value for r in seen] == [b"{not json", b'{"a": 1}']
    assert seen[0].key == b"k-1"
    assert ("ce_id", b"m-1") in list(seen[0].headers)


def test_application_wires_every_service_to_its_topics_and_groups() -> None:
    settings = Settings(group_prefix="p")
    app = Application(settings)
    subscribers = {
        (tuple(sorted(str(getattr(t, "name", t)) for t in sub.topics)), sub.group_id)  # type: ignore[attr-defined]
        for sub in app.broker.subscribers
    }
    inbound = (
        topics.CARDS_INVOICE_PAYMENT_REQUESTED,
        topics.CARDS_ISSUE_REQUESTED,
        topics.CUSTOMERS_REGISTERED,
        topics.GIFTCARDS_ACTIVATION_REQUESTED,
        topics.GIFTCARDS_PURCHASE_REQUESTED,
        topics.ORDERS_SUBMITTED,
        topics.WALLETS_TOPUP_REQUESTED,
    )
    assert (tuple(sorted(inbound)), "p.orchestrator.ingress") in subscribers
    assert ((topics.SAGA_REPLIES,), "p.orchestrator.replies") in subscribers
    for worker, topic in (
        ("card-issuance", topics.CARD_ISSUANCE_COMMANDS),
        ("billing", topics.BILLING_COMMANDS),
        ("payment", topics.PAYMENT_COMMANDS),
        ("store", topics.STORE_COMMANDS),
        ("delivery", topics.DELIVERY_COMMANDS),
        ("notification", topics.NOTIFICATION_COMMANDS),
    ):
        assert ((topic,), f"p.{worker}") in subscribers
    assert ((topics.STORE_STOCK_RECEIVED,), "p.store.feed") in subscribers
    assert ((topics.DELIVERY_POINTS_UPDATED,), "p.delivery.feed") in subscribers
    for topic in (*inbound, topics.STORE_STOCK_RECEIVED, topics.DELIVERY_POINTS_UPDATED):
        assert topics.dlq(topic) in app.topics
    assert {
        topics.CUSTOMERS_STATUS,
        topics.WALLETS_STATUS,
        topics.ORDERS_STATUS,
        topics.GIFTCARDS_STATUS,
        topics.NOTIFICATIONS_SENT,
    } <= app.topics
    assert set(SERVICES) == {
        "orchestrator",
        "card-issuance",
        "billing",
        "payment",
        "store",
        "delivery",
        "notification",
        "api",
    }


def test_application_runs_only_the_named_services() -> None:
    app = Application(Settings(group_prefix="p"), ["billing"])
    groups = {sub.group_id for sub in app.broker.subscribers}  # type: ignore[attr-defined]
    assert groups == {"p.billing"}
    assert app.runtime is None
