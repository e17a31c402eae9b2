"""Idempotent saga steps on the participant side, keyed by (saga id, step name).

The inbox stops a redelivered message; this stops a *retried* command (a new message
id for the same step, sent after a timeout) and orders a command against its own
compensation whichever arrives first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from sqlalchemy import Row, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Compensated, Reply, StepFailed
from events.envelope import Envelope
from events.replies import REPLY_ADAPTER

DONE = "DONE"
REFUSED = "REFUSED"
UNDONE = "UNDONE"
ALREADY_COMPENSATED = "ALREADY_COMPENSATED"

Undo = Callable[[Reply], Awaitable[StepFailed | None]]


def step_key(envelope: Envelope) -> tuple[UUID, str]:
    if envelope.saga_id is None or not envelope.saga_step:
        raise ValueError("a saga command needs ce_sagaid and ce_sagastep")
    return envelope.saga_id, envelope.saga_step


class Operations:
    """The ``<owner>_operations`` table, used by every handler of one worker."""

    def __init__(self, table: Table) -> None:
        self.table = table
        key = (table.c.saga_id == bindparam("b_saga_id")) & (table.c.step == bindparam("b_step"))
        # built once: a statement built per command costs more to build and look up in
        # SQLAlchemy's compiled cache than to run
        self._lock_statement = select(table.c.status, table.c.reply).where(key).with_for_update()
        self._insert = pg_insert(table)
        self._tombstone = pg_insert(table).on_conflict_do_nothing()
        self._mark_undone = update(table).where(key).values(status=UNDONE, updated_at=func.now())

    async def run(
        self, conn: AsyncConnection, envelope: Envelope, action: Callable[[], Awaitable[Reply]]
    ) -> Reply:
        """Do the step once; a retry gets the first answer, a step already undone is refused."""
        saga_id, step = step_key(envelope)
        row = await self._lock(conn, saga_id, step)
        if row is not None:
            if row.status == UNDONE:
                return StepFailed(
                    reason=ALREADY_COMPENSATED, detail=f"step {step} was compensated first"
                )
            return REPLY_ADAPTER.validate_python(row.reply)
        reply = await action()
        if isinstance(reply, StepFailed) and reply.retryable:
            return reply
        status = REFUSED if isinstance(reply, StepFailed) else DONE
        await conn.execute(
            self._insert,
            {
                "saga_id": saga_id,
                "step": step,
                "status": status,
                "reply": reply.model_dump(mode="json"),
            },
        )
        return reply

    async def undo(self, conn: AsyncConnection, envelope: Envelope, action: Undo) -> Reply:
        """Undo the step if it took effect; leave a tombstone if it has not arrived yet."""
        saga_id, step = step_key(envelope)
        row = await self._lock(conn, saga_id, step)
        if row is None:
            await conn.execute(
                self._tombstone,
                {"saga_id": saga_id, "step": step, "status": UNDONE, "reply": None},
            )
            return Compensated()
        if row.status == DONE:
            refused = await action(REPLY_ADAPTER.validate_python(row.reply))
            if refused is not None:
                return refused
            await conn.execute(self._mark_undone, {"b_saga_id": saga_id, "b_step": step})
        return Compensated()

    async def _lock(self, conn: AsyncConnection, saga_id: UUID, step: str) -> Row[Any, Any] | None:
        result = await conn.execute(self._lock_statement, {"b_saga_id": saga_id, "b_step": step})
        return result.first()
