"""Idempotent saga steps on the participant side, keyed by (saga id, step name).

The inbox stops a redelivered message; this stops a *retried* command (a new message
id for the same step, sent after a timeout) and orders a command against its own
compensation whichever arrives first.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Compensated, Reply, StepFailed
from events.envelope import Envelope
from events.replies import REPLY_ADAPTER
from orchestrator.errors import ConcurrentUpdate

DONE = "DONE"
REFUSED = "REFUSED"
UNDONE = "UNDONE"
ALREADY_COMPENSATED = "ALREADY_COMPENSATED"

Undo = Callable[[Reply], Awaitable[StepFailed | None]]


StepKey = tuple[UUID, str]


def step_key(envelope: Envelope) -> StepKey:
    if envelope.saga_id is None or not envelope.saga_step:
        raise ValueError("a saga command needs ce_sagaid and ce_sagastep")
    return envelope.saga_id, envelope.saga_step


def step_keys(envelopes: Iterable[Envelope]) -> list[StepKey]:
    """The steps of these commands, in key order; a command without one is left out (it is
    refused on its own)."""
    return sorted({step_key(e) for e in envelopes if e.saga_id is not None and e.saga_step})


def step_arrays(keys: Sequence[StepKey]) -> dict[str, list[Any]]:
    """``keys`` as a statement's ``:ids`` and ``:steps`` arrays."""
    return {"ids": [saga_id for saga_id, _ in keys], "steps": [step for _, step in keys]}


@dataclass(frozen=True)
class StepRecord:
    """A step's row: what was done and the reply given."""

    status: str
    reply: dict[str, Any] | None


TOMBSTONE = StepRecord(UNDONE, None)
"""A compensation that came first: the step may no longer run."""


@dataclass(frozen=True)
class _Batch:
    """One batch's step rows, read and locked in one statement (None: no row yet), and what
    its handlers wrote to them, written in one statement at the end of the batch."""

    conn: AsyncConnection
    table: Table
    records: dict[StepKey, StepRecord | None]
    existing: frozenset[StepKey]
    written: dict[StepKey, StepRecord] = field(default_factory=dict)


_batch: ContextVar[_Batch | None] = ContextVar("operations_batch", default=None)


_STEP_ROWS = """unnest(
                CAST(:ids AS uuid[]), CAST(:steps AS text[]), CAST(:statuses AS text[]),
                CAST(:replies AS text[])
            ) AS k(saga_id, step, status, reply)"""


def _step_rows(rows: list[tuple[StepKey, StepRecord]]) -> dict[str, list[Any]]:
    return {
        "ids": [saga_id for (saga_id, _), _ in rows],
        "steps": [step for (_, step), _ in rows],
        "statuses": [record.status for _, record in rows],
        "replies": [
            None if record.reply is None else orjson.dumps(record.reply).decode()
            for _, record in rows
        ],
    }


class Operations:
    """The ``<owner>_operations`` table, used by every handler of one worker."""

    def __init__(self, table: Table) -> None:
        self.table = table
        key = (table.c.saga_id == bindparam("b_saga_id")) & (table.c.step == bindparam("b_step"))
        # built once: a statement built per command costs more to build and look up in
        # SQLAlchemy's compiled cache than to run
        self._lock_statement = select(table.c.status, table.c.reply).where(key).with_for_update()
        self._lock_many = text(
            f"""
            SELECT o.saga_id, o.step, o.status, o.reply FROM {table.name} AS o
            JOIN unnest(CAST(:ids AS uuid[]), CAST(:steps AS text[])) AS k(saga_id, step)
              ON o.saga_id = k.saga_id AND o.step = k.step
            ORDER BY o.saga_id, o.step COLLATE "C"
            FOR UPDATE OF o
            """
        ).columns(table.c.saga_id, table.c.step, table.c.status, table.c.reply)
        self._insert_many = text(
            f"""
            INSERT INTO {table.name} (saga_id, step, status, reply)
            SELECT k.saga_id, k.step, k.status, CAST(k.reply AS jsonb) FROM {_STEP_ROWS}
            ON CONFLICT DO NOTHING
            RETURNING saga_id, step
            """
        ).columns(table.c.saga_id, table.c.step)
        self._update_many = text(
            f"""
            UPDATE {table.name} AS o
            SET status = k.status, reply = CAST(k.reply AS jsonb), updated_at = now()
            FROM {_STEP_ROWS}
            WHERE o.saga_id = k.saga_id AND o.step = k.step
            """
        )
        self._insert = pg_insert(table)
        self._mark_undone = update(table).where(key).values(status=UNDONE, updated_at=func.now())

    @contextlib.asynccontextmanager
    async def batched(
        self, conn: AsyncConnection, envelopes: Iterable[Envelope]
    ) -> AsyncIterator[None]:
        """A batch's steps in two statements instead of two per command: within the block,
        ``run`` and ``undo`` on ``conn`` find the rows of these commands' steps read and
        locked at its start (in key order: two batches take them in the same order), and their
        writes go out together when it ends. For a batch in one transaction whose handlers
        all complete or all roll back, not for savepoints that roll back alone."""
        keys = step_keys(envelopes)
        records: dict[StepKey, StepRecord | None] = dict.fromkeys(keys)
        if keys:
            result = await conn.execute(self._lock_many, step_arrays(keys))
            records |= {(r.saga_id, r.step): StepRecord(r.status, r.reply) for r in result}
        existing = frozenset(key for key, record in records.items() if record is not None)
        batch = _Batch(conn, self.table, records, existing)
        token = _batch.set(batch)
        try:
            yield
        finally:
            _batch.reset(token)
        await self._write_batch(batch)

    async def _write_batch(self, batch: _Batch) -> None:
        """New rows in one statement, changed rows in another, each in key order. A new row
        someone else wrote meanwhile (a consumer that lost its partition) fails the batch, to
        be decided again from that row, as the single insert's key conflict does: a
        tombstone too, since the row it lost to may be a step done, to be undone now."""
        written = sorted(batch.written.items(), key=lambda item: item[0])
        new = [(k, r) for k, r in written if k not in batch.existing]
        changed = [(k, r) for k, r in written if k in batch.existing]
        if new:
            result = await batch.conn.execute(self._insert_many, _step_rows(new))
            inserted = {(row.saga_id, row.step) for row in result}
            lost = [key for key, _ in new if key not in inserted]
            if lost:
                raise ConcurrentUpdate(f"{self.table.name}: steps written concurrently: {lost[:3]}")
        if changed:
            await batch.conn.execute(self._update_many, _step_rows(changed))

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
        record = StepRecord(status, reply.model_dump(mode="json"))
        await self._write(
            conn,
            (saga_id, step),
            record,
            self._insert,
            {"saga_id": saga_id, "step": step, "status": status, "reply": record.reply},
        )
        return reply

    async def undo(self, conn: AsyncConnection, envelope: Envelope, action: Undo) -> Reply:
        """Undo the step if it took effect; leave a tombstone if it has not arrived yet."""
        saga_id, step = step_key(envelope)
        row = await self._lock(conn, saga_id, step)
        if row is None:
            await self._write(
                conn,
                (saga_id, step),
                TOMBSTONE,
                self._insert,
                {"saga_id": saga_id, "step": step, "status": UNDONE, "reply": None},
            )
            return Compensated()
        if row.status == DONE:
            refused = await action(REPLY_ADAPTER.validate_python(row.reply))
            if refused is not None:
                return refused
            await self._write(
                conn,
                (saga_id, step),
                StepRecord(UNDONE, row.reply),
                self._mark_undone,
                {"b_saga_id": saga_id, "b_step": step},
            )
        return Compensated()

    def _batch_of(self, conn: AsyncConnection, key: StepKey) -> _Batch | None:
        batch = _batch.get()
        if batch is None or batch.conn is not conn or batch.table is not self.table:
            return None
        return batch if key in batch.records else None

    async def _write(
        self,
        conn: AsyncConnection,
        key: StepKey,
        record: StepRecord,
        statement: Any,
        parameters: dict[str, Any],
    ) -> None:
        """``statement`` now, or, for a step of the batch, ``record`` at the batch's end."""
        batch = self._batch_of(conn, key)
        if batch is None:
            await conn.execute(statement, parameters)
        else:
            batch.records[key] = record
            batch.written[key] = record

    async def _lock(self, conn: AsyncConnection, saga_id: UUID, step: str) -> StepRecord | None:
        batch = self._batch_of(conn, (saga_id, step))
        if batch is not None:
            return batch.records[(saga_id, step)]
        result = await conn.execute(self._lock_statement, {"b_saga_id": saga_id, "b_step": step})
        row = result.first()
        return None if row is None else StepRecord(row.status, row.reply)
