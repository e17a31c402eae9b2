"""A bug met by one record (a saga's code raising on it) dead-letters that record with the
error, and the other records of its batch go on: the partition does not stall. A process
whose clock is wrong decides no timer by it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.bench import BENCH_REQUESTED
from events.topics import SAGA_REPLIES
from orchestrator import metrics
from orchestrator.engine import clock
from orchestrator.engine.machine import SagaMachine
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.errors import SagaCodeFailed
from orchestrator.sagas.bench import BENCH_SAGA
from tests.integration.helpers import Sent, bench_reply_to, bench_request, bench_runtime, unique


def _fail_on(
    machine: SagaMachine, method: str, bad: Callable[[Any], bool], error: Exception
) -> None:
    """``machine.<method>`` raises ``error`` when its first argument is ``bad``."""
    real = getattr(machine, method)

    def failing(first: Any, *args: Any) -> Any:
        if bad(first):
            raise error
        return real(first, *args)

    setattr(machine, method, failing)


Started = tuple[Sent, SagaRuntime, UUID, UUID]


pytestmark = pytest.mark.usefixtures("bench_sagas_ended")


@pytest.fixture
async def two_sagas(engine: AsyncEngine) -> Started:
    """Two benchmark sagas started, each waiting on its first step's reply."""
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    await runtime.handle_inbound([bench_request(unique("a")), bench_request(unique("b"))])
    await runtime.relay.drain()
    first, second = (UUID(m.headers["ce_sagaid"]) for m in sent.messages)
    return sent, runtime, first, second


def _timer_failures() -> float:
    labels = {"saga_type": BENCH_SAGA.name}
    found = metrics.REGISTRY.get_sample_value("orchestra_saga_timer_failures_total", labels)
    return found or 0.0


async def _steps(engine: AsyncEngine, saga_ids: list[UUID]) -> dict[UUID, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, step_index FROM saga_instances WHERE id = ANY(:ids)"),
            {"ids": saga_ids},
        )
        return {row.id: row.step_index for row in rows}


async def test_a_start_that_raises_is_dead_lettered_and_the_others_start(
    engine: AsyncEngine,
) -> None:
    sent = Sent()
    runtime = bench_runtime(engine, sent)
    bad, good = unique("bug"), unique("fine")
    machine = runtime.machines[BENCH_SAGA.name]
    _fail_on(machine, "start", lambda trigger: trigger.order_id == bad, KeyError("pricing rule"))
    await runtime.handle_inbound([bench_request(bad), bench_request(good)])
    await runtime.relay.drain()

    (letter,) = [m for m in sent.messages if m.topic == f"{BENCH_REQUESTED}.dlq"]
    assert letter.key == bad
    assert letter.headers["dlq_reason"] == "HANDLER_ERROR"
    assert "KeyError" in letter.headers["dlq_error"]
    commands = [m for m in sent.messages if m.topic != f"{BENCH_REQUESTED}.dlq"]
    assert [m.headers["ce_sagastep"] for m in commands] == ["reserve-payment"]


async def test_a_reply_that_raises_is_dead_lettered_and_the_others_apply(
    engine: AsyncEngine, two_sagas: Started
) -> None:
    sent, runtime, bad_saga, good_saga = two_sagas
    first, second = sent.messages
    machine = runtime.machines[BENCH_SAGA.name]
    _fail_on(machine, "on_reply", lambda saga: saga.id == bad_saga, RuntimeError("step bug"))
    await runtime.handle_replies([bench_reply_to(first), bench_reply_to(second)])
    await runtime.relay.drain()

    assert await _steps(engine, [bad_saga, good_saga]) == {bad_saga: 0, good_saga: 1}
    letters = [m for m in sent.messages if m.topic == f"{SAGA_REPLIES}.dlq"]
    assert [m.headers["ce_sagaid"] for m in letters] == [str(bad_saga)]
    assert "RuntimeError: step bug" in letters[0].headers["dlq_error"]


async def test_a_reply_for_a_saga_nobody_holds_is_dead_lettered_and_the_others_apply(
    engine: AsyncEngine, two_sagas: Started
) -> None:
    sent, runtime, first_saga, _ = two_sagas
    first, second = sent.messages
    stray = replace(second, headers={**second.headers, "ce_sagaid": str(uuid4())})
    redriven = bench_reply_to(stray)  # a re-drive of an earlier letter: the record says so
    redriven = replace(redriven, headers=[*redriven.headers, ("redriven_from", b"r.dlq/0/3")])
    await runtime.handle_replies([bench_reply_to(first), redriven])
    await runtime.relay.drain()

    assert (await _steps(engine, [first_saga]))[first_saga] == 1
    (letter,) = [m for m in sent.messages if m.topic == f"{SAGA_REPLIES}.dlq"]
    assert letter.headers["dlq_reason"] == "UNKNOWN_SAGA"
    assert letter.headers["ce_sagaid"] == stray.headers["ce_sagaid"]
    assert stray.headers["ce_sagaid"] in letter.headers["dlq_error"]
    assert letter.headers["redriven_from"] == "r.dlq/0/3", "the record's own headers kept"


async def test_a_timer_that_raises_puts_its_saga_off_and_the_others_fire(
    engine: AsyncEngine, two_sagas: Started
) -> None:
    sent, runtime, bad_saga, good_saga = two_sagas
    async with engine.begin() as conn:  # both steps timed out long ago: first in line
        await conn.execute(
            text(
                "UPDATE saga_instances SET next_action_at = '2000-01-01T00:00:00Z' "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": [bad_saga, good_saga]},
        )
    machine = runtime.machines[BENCH_SAGA.name]
    _fail_on(machine, "on_due", lambda saga: saga.id == bad_saga, RuntimeError("timer bug"))

    before = _timer_failures()
    await runtime.fire_due()
    await runtime.relay.drain()
    assert _timer_failures() == before + 1

    async with engine.connect() as conn:
        sagas = {
            row.id: row
            for row in await conn.execute(
                text(
                    "SELECT id, status, pending_command_id, next_action_at > now() AS later "
                    "FROM saga_instances WHERE id = ANY(:ids)"
                ),
                {"ids": [bad_saga, good_saga]},
            )
        }
        events = {
            row.saga_id: (row.event, row.detail)
            for row in await conn.execute(
                text(
                    "SELECT DISTINCT ON (saga_id) saga_id, event, detail FROM saga_history "
                    "WHERE saga_id = ANY(:ids) ORDER BY saga_id, id DESC"
                ),
                {"ids": [bad_saga, good_saga]},
            )
        }
    first_commands = {m.headers["ce_id"] for m in sent.messages[:2]}
    assert sagas[bad_saga].pending_command_id in first_commands, "left as it was"
    assert sagas[bad_saga].later, "due again later, not at every tick"
    assert events[bad_saga] == ("timer-failed", "RuntimeError: timer bug")
    assert sagas[good_saga].pending_command_id not in first_commands, "timed out and moved on"
    assert events[good_saga][0] != "timer-failed"


async def test_due_sagas_of_a_type_this_process_does_not_run_take_no_timer_places(
    engine: AsyncEngine, two_sagas: Started
) -> None:
    _, runtime, saga, _ = two_sagas
    retired = [uuid4() for _ in range(3)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO saga_instances (id, saga_type, business_key, status, step_index, "
                "pending_command_id, next_action_at, data, version) "
                "SELECT i, 'retired-saga', CAST(i AS text), 'RUNNING', 0, 'c-1', "
                "'1999-01-01T00:00:00Z', '{}', 0 FROM unnest(CAST(:ids AS uuid[])) AS i"
            ),
            {"ids": retired},
        )
        await conn.execute(
            text(
                "UPDATE saga_instances SET next_action_at = '2000-01-01T00:00:00Z' WHERE id = :id"
            ),
            {"id": saga},
        )

    try:
        fired = await runtime.fire_due(limit=len(retired))
        await runtime.relay.drain()
    finally:
        async with engine.begin() as conn:
            sql = "DELETE FROM saga_instances WHERE id = ANY(CAST(:ids AS uuid[]))"
            await conn.execute(text(sql), {"ids": retired})

    assert fired >= 1
    assert "timeout" in [
        event
        for (event,) in (
            await _rows(engine, "SELECT event FROM saga_history WHERE saga_id = :id", id=saga)
        )
    ]


async def _rows(engine: AsyncEngine, sql: str, **params: object) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (KeyError("pricing rule"), "KeyError: 'pricing rule'"),
        (ValueError("no such currency"), "ValueError: no such currency"),  # not a refusal
    ],
)
async def test_an_operator_action_the_sagas_code_raises_on_is_refused_and_changes_nothing(
    engine: AsyncEngine, two_sagas: Started, error: Exception, said: str
) -> None:
    _, runtime, bad_saga, _ = two_sagas
    machine = runtime.machines[BENCH_SAGA.name]
    _fail_on(machine, "retry_step", lambda saga: saga.id == bad_saga, error)
    before = await _rows(engine, "SELECT version FROM saga_instances WHERE id = :id", id=bad_saga)

    with pytest.raises(SagaCodeFailed, match=said):
        await runtime.manual(bad_saga, "retry", "alice", "bank is back")

    after = await _rows(engine, "SELECT version FROM saga_instances WHERE id = :id", id=bad_saga)
    assert after == before


async def test_a_process_whose_clock_runs_ahead_fires_no_step_early(
    engine: AsyncEngine, two_sagas: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another orchestrator on a machine whose clock is ten minutes fast: its timer goes by
    the database's time, so the steps the first one sent still wait for their replies."""
    sent, _, first, second = two_sagas
    ahead = timedelta(minutes=10)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC) + ahead)
    skewed = bench_runtime(engine, Sent())
    await skewed.fire_due()
    await skewed.relay.drain()
    async with engine.connect() as conn:
        pending = await conn.execute(
            text("SELECT pending_command_id FROM saga_instances WHERE id = ANY(:ids)"),
            {"ids": [first, second]},
        )
        assert {row.pending_command_id for row in pending} == {
            m.headers["ce_id"] for m in sent.messages[:2]
        }
    assert abs(skewed.clock.offset + ahead) < timedelta(seconds=5)
    assert abs(skewed.clock() - datetime.now(UTC)) < timedelta(seconds=5)
