"""A worker's saga steps (``workers.operations``): once per step, a compensation that comes
first refuses the late command, a retry gets the first reply. The same whether each command
reads and writes its own row or a batch's rows are read and written together."""

from __future__ import annotations

import contextlib
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.base import Compensated, Reply, StepFailed
from events.envelope import Envelope
from events.payment import BankCharged
from orchestrator.errors import ConcurrentUpdate
from schemas.payment import payment_operations
from workers.operations import ALREADY_COMPENSATED, Operations

BATCHED = [False, True]


def command(saga_id: UUID, step: str = "charge") -> Envelope:
    return Envelope(type="test.command.v1", saga_id=saga_id, saga_step=step)


class Effects:
    """Counts what the steps did, as a worker's business tables would show it."""

    def __init__(self) -> None:
        self.done = 0
        self.undone = 0

    async def act(self) -> Reply:
        self.done += 1
        return BankCharged(payment_id=f"P-{self.done}", amount_minor=100)

    async def refuse(self) -> Reply:
        return StepFailed(reason="PAYMENT_DECLINED", detail="no")

    async def undo(self, done: Reply) -> StepFailed | None:
        assert isinstance(done, BankCharged)
        self.undone += 1
        return None


def in_batch(
    operations: Operations, conn: AsyncConnection, batched: bool, *envelopes: Envelope
) -> contextlib.AbstractAsyncContextManager[None]:
    return operations.batched(conn, envelopes) if batched else contextlib.nullcontext()


async def rows(engine: AsyncEngine, saga_id: UUID) -> list[tuple[str, str, object]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT step, status, reply FROM payment_operations WHERE saga_id = :s"),
            {"s": saga_id},
        )
        return [tuple(row) for row in result]  # type: ignore[misc]


@pytest.fixture
def operations(engine: AsyncEngine) -> Operations:
    return Operations(payment_operations)


@pytest.mark.parametrize("batched", BATCHED)
async def test_a_step_runs_once_and_a_retry_gets_its_first_reply(
    engine: AsyncEngine, operations: Operations, batched: bool
) -> None:
    saga_id, effects = uuid4(), Effects()
    first, retry = command(saga_id), command(saga_id)
    async with engine.begin() as conn, in_batch(operations, conn, batched, first, retry):
        replies = [await operations.run(conn, e, effects.act) for e in (first, retry)]
    async with engine.begin() as conn, in_batch(operations, conn, batched, retry):
        replies.append(await operations.run(conn, retry, effects.act))

    assert effects.done == 1
    assert replies == [BankCharged(payment_id="P-1", amount_minor=100)] * 3
    assert await rows(engine, saga_id) == [
        ("charge", "DONE", {"kind": "BankCharged", "payment_id": "P-1", "amount_minor": 100})
    ]


@pytest.mark.parametrize("batched", BATCHED)
async def test_a_compensation_first_leaves_a_tombstone_that_refuses_the_command(
    engine: AsyncEngine, operations: Operations, batched: bool
) -> None:
    saga_id, effects = uuid4(), Effects()
    undo, late = command(saga_id), command(saga_id)
    async with engine.begin() as conn, in_batch(operations, conn, batched, undo, late):
        compensated = await operations.undo(conn, undo, effects.undo)
        refused = await operations.run(conn, late, effects.act)
    async with engine.begin() as conn, in_batch(operations, conn, batched, late):
        refused_later = await operations.run(conn, late, effects.act)

    assert compensated == Compensated()
    for reply in (refused, refused_later):
        assert isinstance(reply, StepFailed)
        assert reply.reason == ALREADY_COMPENSATED
    assert (effects.done, effects.undone) == (0, 0)
    assert await rows(engine, saga_id) == [("charge", "UNDONE", None)]


@pytest.mark.parametrize("batched", BATCHED)
async def test_a_done_step_is_undone_once_in_the_same_batch_or_a_later_one(
    engine: AsyncEngine, operations: Operations, batched: bool
) -> None:
    effects = Effects()
    same, later = uuid4(), uuid4()
    async with (
        engine.begin() as conn,
        in_batch(operations, conn, batched, command(same), command(later)),
    ):
        await operations.run(conn, command(same), effects.act)
        await operations.run(conn, command(later), effects.act)
        await operations.undo(conn, command(same), effects.undo)
    async with engine.begin() as conn, in_batch(operations, conn, batched, command(later)):
        await operations.undo(conn, command(later), effects.undo)
        await operations.undo(conn, command(later), effects.undo)

    assert (effects.done, effects.undone) == (2, 2)
    for saga_id in (same, later):
        [(_, status, reply)] = await rows(engine, saga_id)
        assert status == "UNDONE"
        assert isinstance(reply, dict)


@pytest.mark.parametrize("batched", BATCHED)
async def test_a_refusal_is_kept_and_a_retryable_failure_is_not(
    engine: AsyncEngine, operations: Operations, batched: bool
) -> None:
    saga_id, effects = uuid4(), Effects()

    async def unavailable() -> Reply:
        return StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True)

    declined, flaky = command(saga_id, "charge"), command(saga_id, "bind")
    async with engine.begin() as conn, in_batch(operations, conn, batched, declined, flaky):
        await operations.run(conn, declined, effects.refuse)
        await operations.run(conn, flaky, unavailable)
    async with engine.begin() as conn, in_batch(operations, conn, batched, declined, flaky):
        again = await operations.run(conn, declined, effects.act)
        cured = await operations.run(conn, flaky, effects.act)

    assert isinstance(again, StepFailed)
    assert again.reason == "PAYMENT_DECLINED"
    assert isinstance(cured, BankCharged)
    assert sorted((step, status) for step, status, _ in await rows(engine, saga_id)) == [
        ("bind", "DONE"),
        ("charge", "REFUSED"),
    ]


async def test_a_batch_that_fails_writes_none_of_its_steps(
    engine: AsyncEngine, operations: Operations
) -> None:
    saga_id, effects = uuid4(), Effects()

    async def batch() -> None:
        async with engine.begin() as conn, operations.batched(conn, [command(saga_id)]):
            await operations.run(conn, command(saga_id), effects.act)
            raise RuntimeError("a later command of the batch failed")

    with pytest.raises(RuntimeError):
        await batch()
    assert await rows(engine, saga_id) == []


async def test_a_step_written_by_another_consumer_meanwhile_fails_the_batch(
    engine: AsyncEngine, operations: Operations
) -> None:
    """A consumer that lost its partition may still be handling the same command: the
    batch written second fails (and is decided again from the first one's row)."""
    saga_id, effects = uuid4(), Effects()

    async def overtaken_batch() -> None:
        async with engine.begin() as conn, operations.batched(conn, [command(saga_id)]):
            await operations.run(conn, command(saga_id), effects.act)
            async with engine.begin() as other:
                await operations.run(other, command(saga_id), effects.act)

    with pytest.raises(ConcurrentUpdate):
        await overtaken_batch()
    async with engine.begin() as conn, operations.batched(conn, [command(saga_id)]):
        reply = await operations.run(conn, command(saga_id), effects.act)
    assert reply == BankCharged(payment_id="P-2", amount_minor=100)
    assert len(await rows(engine, saga_id)) == 1


async def test_a_compensation_that_loses_to_the_step_itself_undoes_it_when_decided_again(
    engine: AsyncEngine, operations: Operations
) -> None:
    """The command arrives at another consumer (one that lost its partition) while this
    batch compensates the step: the tombstone cannot win, and the step is undone instead."""
    saga_id, effects = uuid4(), Effects()
    undo = command(saga_id)

    async def overtaken_batch() -> None:
        async with engine.begin() as conn, operations.batched(conn, [undo]):
            await operations.undo(conn, undo, effects.undo)
            async with engine.begin() as other:
                await operations.run(other, command(saga_id), effects.act)

    with pytest.raises(ConcurrentUpdate):
        await overtaken_batch()
    async with engine.begin() as conn, operations.batched(conn, [undo]):
        assert await operations.undo(conn, undo, effects.undo) == Compensated()

    assert (effects.done, effects.undone) == (1, 1)
    [(_, status, _)] = await rows(engine, saga_id)
    assert status == "UNDONE"
