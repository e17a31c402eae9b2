"""The spans of the saga engine's committed decisions (see orchestrator.telemetry)."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator import telemetry
from orchestrator.engine.machine import Decision


def record_decisions(decisions: Iterable[Decision], start_ns: int) -> None:
    if not telemetry.enabled():
        return
    for decision in decisions:
        saga = decision.instance
        root = telemetry.root_span_id(saga.id)
        base = {"saga.type": saga.saga_type, "saga.key": saga.business_key}
        for entry in decision.history:
            if entry.event == "started":
                telemetry.record(f"saga {saga.saga_type}", saga.id, root, None, start_ns, base)
            elif entry.event == "reply-received" and entry.message_id:
                telemetry.record(
                    f"apply {entry.message_type}",
                    saga.id,
                    telemetry.message_span_id(f"apply:{entry.message_id}"),
                    telemetry.message_span_id(entry.message_id),
                    start_ns,
                    {**base, "saga.step": entry.step or ""},
                )
            elif entry.event not in ("command-sent", "compensation-sent", "reply-ignored"):
                span = telemetry.message_span_id(f"{entry.event}:{saga.id}:{entry.at.isoformat()}")
                attributes = {**base, "saga.step": entry.step or "", "detail": entry.detail or ""}
                telemetry.record(entry.event, saga.id, span, root, start_ns, attributes)
        for message in decision.outgoing:
            if message.envelope.saga_step is None:
                continue
            telemetry.record(
                f"send {message.body.__class__.__name__}",
                saga.id,
                telemetry.message_span_id(message.envelope.id),
                root,
                start_ns,
                {
                    **base,
                    "saga.step": message.envelope.saga_step,
                    "messaging.destination": message.topic,
                },
            )
