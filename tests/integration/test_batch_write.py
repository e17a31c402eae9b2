"""The one-statement batch write: sagas started once per business key, and replies applied
without locks, read again when the saga moved between the read and the write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.bench import BenchStepDone
from events.envelope import Envelope
from events.topics import SAGA_REPLIES
from orchestrator.db import create_engine, create_schema
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine import runtime as runtime_module
from orchestrator.engine.batch_write import BatchWrite
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.sagas.bench import BENCH_SAGA
from schemas.sagas import orchestrator_outbox
from tests.integration.helpers import (
    Sent,
    bench_reply_to,
    bench_request,
    bench_runtime,
    enveloped,
    unique,
)


@pytest.fixture
async def engine(stack: EmbeddedStack) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(stack.settings())
    await create_schema(engine)
    yield engine
    async with engine.begin() as conn:  # the session's other tests wait for running sagas
        await conn.execute(
            text("DELETE FROM saga_instances WHERE saga_type = :t"), {"t": BENCH_SAGA.name}
        )
    await engine.dispose()


async def _started(engine: AsyncEngine, name: str) -> tuple[Sent, SagaRuntime, OutboundMessage]:
    """A runtime that started one saga; its first command."""
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    await runtime.handle_inbound([bench_request(unique(name))])
    await runtime.relay.drain()
    (command,) = sent.messages
    return sent, runtime, command


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def _events(engine: AsyncEngine, saga_id: UUID) -> list[str]:
    """The saga's history, oldest first: what happened, by name."""
    sql = "SELECT event FROM saga_history WHERE saga_id = :s ORDER BY id"
    return [event for (event,) in await _rows(engine, sql, s=saga_id)]


async def test_the_same_request_twice_in_one_batch_or_two_starts_one_saga(
    engine: AsyncEngine,
) -> None:
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    order_id = unique("once")
    await runtime.handle_inbound([bench_request(order_id), bench_request(order_id)])
    await runtime.handle_inbound([bench_request(order_id)])
    await runtime.relay.drain()
    sagas = await _rows(engine, "SELECT id FROM saga_instances WHERE business_key = :k", k=order_id)
    assert len(sagas) == 1
    history = await _rows(
        engine, "SELECT event FROM saga_history WHERE saga_id = :s", s=sagas[0][0]
    )
    assert [event for (event,) in history].count("started") == 1
    assert [m.headers["ce_sagaid"] for m in sent.messages] == [str(sagas[0][0])]


async def test_a_reply_meeting_a_saga_that_moved_is_applied_once_after_a_fresh_read(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent, runtime, command = await _started(engine, "moved")
    saga_id = UUID(command.headers["ce_sagaid"])

    writes = 0
    original = runtime_module.write_batch

    async def write_after_someone_else(driver: Any, outbox: Any, batch: BatchWrite) -> Any:
        nonlocal writes
        if saga_id not in {after.id for _, after in batch.updates}:
            # the session's services, running in this process, write too (their timers)
            return await original(driver, outbox, batch)
        writes += 1
        if writes == 1:  # another writer (a timer, an operator) commits in between
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE saga_instances SET version = version + 1 WHERE id = :s"),
                    {"s": saga_id},
                )
        return await original(driver, outbox, batch)

    monkeypatch.setattr(runtime_module, "write_batch", write_after_someone_else)
    await runtime.handle_replies([bench_reply_to(command)])
    await runtime.relay.drain()

    assert writes == 2
    ((step, version),) = await _rows(
        engine, "SELECT step_index, version FROM saga_instances WHERE id = :s", s=saga_id
    )
    assert (step, version) == (1, 2)  # started at 0, bumped by the other writer, the reply
    events = await _events(engine, saga_id)
    assert events.count("step-completed") == 1
    commands = [m.headers["ce_sagastep"] for m in sent.messages[1:]]
    assert commands == ["reserve-stock"]
    outbox = await _rows(  # other tests share the table: count this saga's rows only
        engine,
        f"SELECT count(*) FROM {orchestrator_outbox.name} WHERE headers->>'ce_sagaid' = :s",
        s=str(saga_id),
    )
    assert outbox == [(0,)]


async def test_a_reply_for_a_saga_no_one_knows_writes_only_its_dead_letter(
    engine: AsyncEngine,
) -> None:
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    envelope = Envelope(
        type="bench-payment.BenchStepDone.v1",
        causation_id=str(uuid4()),
        saga_id=uuid4(),
        saga_type=BENCH_SAGA.name,
        saga_step="reserve-payment",
    )
    await runtime.handle_replies([enveloped(SAGA_REPLIES, envelope, BenchStepDone())])
    await runtime.relay.drain()
    assert [(m.topic, m.headers["dlq_reason"]) for m in sent.messages] == [
        (f"{SAGA_REPLIES}.dlq", "UNKNOWN_SAGA")
    ]
    assert await _rows(
        engine, "SELECT count(*) FROM saga_instances WHERE id = :s", s=envelope.saga_id
    ) == [(0,)]


async def test_an_answer_to_an_earlier_attempt_the_history_holds_moves_the_saga_on(
    engine: AsyncEngine,
) -> None:
    """The step sent again (an operator's retry here; a timeout alike), the first attempt's
    answer comes first: the saga's history has that command, so it settles the step. An
    answer naming the step but a command the saga never sent moves nothing."""
    sent, runtime, first = await _started(engine, "earlier")
    saga_id = UUID(first.headers["ce_sagaid"])
    operator = bench_runtime(engine, sent)
    await operator.manual(saga_id, "retry", "ops", "participant slow")
    await operator.relay.drain()
    step_now = "SELECT step_index FROM saga_instances WHERE id = :s"

    forged = OutboundMessage(
        first.topic, first.key, {**first.headers, "ce_id": str(uuid4())}, first.payload
    )
    await runtime.handle_replies([bench_reply_to(forged)])
    assert await _rows(engine, step_now, s=saga_id) == [(0,)]

    await runtime.handle_replies([bench_reply_to(first)])
    await runtime.relay.drain()
    assert await _rows(engine, step_now, s=saga_id) == [(1,)]
    assert sent.messages[-1].headers["ce_sagastep"] == "reserve-stock"


async def test_a_reply_a_stale_cached_saga_would_ignore_is_applied_after_a_fresh_read(
    engine: AsyncEngine,
) -> None:
    """The runtime keeps the sagas it wrote; an operator in another process re-sent the
    step meanwhile, so the cached saga awaits the old command. The reply to the new one
    must move the saga on, not be ignored."""
    sent, runtime, first = await _started(engine, "stale")
    saga_id = UUID(first.headers["ce_sagaid"])

    operator = bench_runtime(engine, sent)
    await operator.manual(saga_id, "retry", "ops", "participant restarted")
    await operator.relay.drain()
    retried = sent.messages[-1]
    assert retried.headers["ce_id"] != first.headers["ce_id"]

    await runtime.handle_replies([bench_reply_to(retried)])
    await runtime.relay.drain()
    ((step,),) = await _rows(
        engine, "SELECT step_index FROM saga_instances WHERE id = :s", s=saga_id
    )
    assert step == 1
    assert sent.messages[-1].headers["ce_sagastep"] == "reserve-stock"

    await runtime.handle_replies([bench_reply_to(first)])  # the answer to the superseded command
    await runtime.relay.drain()
    events = await _events(engine, saga_id)
    assert events.count("step-completed") == 1
    assert events[-1] == "reply-ignored"


async def test_a_reply_delivered_again_adds_nothing_to_the_history(engine: AsyncEngine) -> None:
    """A replayed or redelivered reply, taken or ignored the first time, is a reply the saga
    has had: its history does not grow with every replay (nor the late-effect alarms)."""
    sent, runtime, first = await _started(engine, "again")
    saga_id = UUID(first.headers["ce_sagaid"])
    operator = bench_runtime(engine, sent)
    await operator.manual(saga_id, "retry", "ops", "participant slow")
    await operator.relay.drain()
    retried = sent.messages[-1]
    answer, superseded = bench_reply_to(retried), bench_reply_to(first)

    for _ in range(3):
        await runtime.handle_replies([answer, superseded])
        await runtime.handle_replies([answer])
    await runtime.relay.drain()

    events = await _events(engine, saga_id)
    assert events.count("reply-received") == 1
    assert events.count("reply-ignored") == 1
    assert events.count("step-completed") == 1
    assert [m.headers["ce_sagastep"] for m in sent.messages[2:]] == ["reserve-stock"]
