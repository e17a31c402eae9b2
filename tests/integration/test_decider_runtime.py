"""A worker whose handler decides from the command alone: its batch is claimed and answered
in one statement. A redelivered command is not answered twice; a command the handler fails
on is dead-lettered and refused; a record no one can read is dead-lettered."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Reply
from events.bench import BENCH_PAYMENT_COMMANDS, ReservePayment
from events.envelope import Envelope
from orchestrator.engine.outbox import OutboxRelay
from tests.integration.helpers import Record, Sent, saga_command, unique
from workers.bench.service import BENCH_WORKERS, decide
from workers.runtime import Decider, ParticipantRuntime

SPEC = BENCH_WORKERS["bench-payment"]


def _command(order_id: str) -> Record:
    body = ReservePayment(order_id=order_id, amount_minor=500)
    return saga_command(BENCH_PAYMENT_COMMANDS, body, "bench-order", "reserve-payment")


def _explodes(envelope: Envelope, command: object) -> Reply:
    if isinstance(command, ReservePayment) and command.order_id.startswith("explode"):
        raise RuntimeError("pricing table missing")
    return decide(envelope, command)


def _runtime(engine: AsyncEngine, sent: Sent) -> ParticipantRuntime:
    relay = OutboxRelay(engine, SPEC.outbox, sent, delete_delay_s=0.0)
    return ParticipantRuntime(
        SPEC.name, SPEC.topic, engine, SPEC.commands, Decider(_explodes), relay, SPEC.inbox
    )


async def test_a_batch_is_answered_once_with_failures_dead_lettered(engine: AsyncEngine) -> None:
    sent = Sent()
    runtime = _runtime(engine, sent)
    good, bad = _command(unique("ok")), _command(unique("explode"))
    garbage = Record(BENCH_PAYMENT_COMMANDS, b"{not json", offset=7)
    batch = [good, bad, good, garbage]

    await runtime.handle_batch(batch)
    await runtime.relay.drain()
    first = list(sent.messages)
    await runtime.handle_batch(batch)  # redelivered after a lost offset commit
    await runtime.relay.drain()
    again = sent.messages[len(first) :]

    replies = {m.headers["ce_causationid"]: m for m in first if m.topic != f"{SPEC.topic}.dlq"}
    good_id, bad_id = (dict(r.headers)["ce_id"].decode() for r in (good, bad))
    assert replies.keys() == {good_id, bad_id}
    assert b"BenchStepDone" in replies[good_id].payload
    assert b"PARTICIPANT_ERROR" in replies[bad_id].payload
    letters = sorted(
        (m.headers["dlq_reason"], m.headers.get("dlq_original_ce_id"))
        for m in first
        if m.topic.endswith(".dlq")
    )
    assert letters == sorted([("HANDLER_ERROR", bad_id), ("INVALID_JSON", None)])
    assert [m.headers["dlq_reason"] for m in again] == ["INVALID_JSON"]
    async with engine.connect() as conn:
        claimed = await conn.execute(
            text(f"SELECT count(*) FROM {SPEC.inbox.name} WHERE message_id IN (:a, :b)"),
            {"a": good_id, "b": bad_id},
        )
        left = await conn.execute(
            text(f"SELECT count(*) FROM {SPEC.outbox.name} WHERE headers->>'ce_causationid' = :a"),
            {"a": good_id},
        )
    assert claimed.scalar_one() == 2
    assert left.scalar_one() == 0  # published, then deleted
