"""Text PostgreSQL cannot hold (NUL, a lone surrogate, a header longer than its column) in a
record is dead-lettered with its reason, and the records after it go on: it must not fail
its batch's write forever. An upstream record's headers may be missing, so a NUL there is
replaced and the record read."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.bench import BENCH_REQUESTED, BenchStepDone
from events.envelope import Envelope
from events.topics import SAGA_REPLIES
from orchestrator.sagas.bench import BENCH_SAGA
from tests.integration.helpers import Record, Sent, bench_runtime, unique


def _order(order_id: str, **record: object) -> Record:
    body = json.dumps({"order_id": order_id, "amount_minor": 500}).encode()
    return Record(BENCH_REQUESTED, body, **record)  # type: ignore[arg-type]


@pytest.mark.usefixtures("bench_sagas_ended")
async def test_unstorable_text_is_dead_lettered_and_the_batch_goes_on(
    engine: AsyncEngine,
) -> None:
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    good, escaped, keyed, headed = (unique(n) for n in ("good", "escaped", "keyed", "header"))
    batch = [
        Record(BENCH_REQUESTED, b'{"order_id": "a\\u0000b", "amount_minor": 500}', offset=1),
        Record(BENCH_REQUESTED, b'{"order_id": "\\ud800", "amount_minor": 500}', offset=2),
        _order(headed, headers=[("ce_id", b"x\x00y"), ("x-trace\x00", b"t")], offset=3),
        _order(keyed, key=b"k\x00", offset=4),
        _order(good, offset=5),
        # an escaped backslash before "u0000" is plain text, and an escaped pair is one emoji
        Record(
            BENCH_REQUESTED,
            b'{"order_id": "%s\\\\u0000\\ud83d\\ude00", "amount_minor": 500}' % escaped.encode(),
            offset=6,
        ),
    ]
    await runtime.handle_inbound(batch)
    await runtime.relay.drain()

    letters = {
        int(m.headers["dlq_offset"]): (m.headers["dlq_reason"], m.headers["dlq_error"])
        for m in sent.messages
        if m.topic == f"{BENCH_REQUESTED}.dlq"
    }
    assert letters.keys() == {1, 2}
    assert letters[1][0] == letters[2][0] == "INVALID_PAYLOAD"
    assert "NUL" in letters[1][1]
    async with engine.connect() as conn:
        started = await conn.execute(
            text("SELECT business_key FROM saga_instances WHERE business_key LIKE ANY(:keys)"),
            {"keys": [good, f"{escaped}%", keyed, headed]},
        )
        keys = sorted(key for (key,) in started)
        (cause,) = (
            await conn.execute(
                text(
                    "SELECT h.message_id FROM saga_history h JOIN saga_instances s "
                    "ON s.id = h.saga_id WHERE s.business_key = :k AND h.event = 'started'"
                ),
                {"k": headed},
            )
        ).one()
    # a NUL in a record key or an upstream header does not stop its saga; escaped text is
    # kept as sent
    assert keys == sorted([good, keyed, headed, f"{escaped}\\u0000\U0001f600"])
    assert cause == "x\ufffdy"


async def test_a_reply_whose_step_name_no_column_can_hold_is_dead_lettered(
    engine: AsyncEngine,
) -> None:
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    envelope = Envelope(
        type="bench-payment.BenchStepDone.v1",
        causation_id="not-awaited",
        saga_id=uuid4(),
        saga_type=BENCH_SAGA.name,
    )
    headers = [(k, v.encode()) for k, v in envelope.headers().items()]
    headers.append(("ce_sagastep", b"s" * 65))
    await runtime.handle_replies([Record(SAGA_REPLIES, BenchStepDone().to_bytes(), headers)])
    await runtime.relay.drain()
    (letter,) = sent.messages
    assert letter.headers["dlq_reason"] == "INVALID_ENVELOPE"
    assert "saga_step" in letter.headers["dlq_error"]
