"""One statement writes a whole batch: saga rows, their history and their outbox messages.

A single statement is atomic without BEGIN and COMMIT, so a batch costs one round trip
to PostgreSQL instead of six. The saga rows are either inserted (new sagas, skipped when
the business key already has one) or updated under an optimistic version check. History
lines and messages owned by a saga are written only if that saga's row was written, in
the same statement; the caller learns which sagas were written and retries the others
from a fresh read.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Table

from orchestrator.engine.instance import SagaInstance
from orchestrator.engine.machine import Decision, HistoryEntry
from orchestrator.engine.outbox import (
    OutboundMessage,
    OutboxRow,
    outbox_columns,
    owned_outbox_insert,
)


class SagaWrite(Enum):
    INSERT = "insert"
    """New sagas; one whose business key is taken is skipped."""
    UPDATE = "update"
    """(before, after) pairs; one whose row moved past ``before.version`` is skipped."""


@dataclass
class BatchWrite:
    """What a batch writes. ``owner`` None: written whatever happens to the saga rows."""

    inserts: list[SagaInstance] = field(default_factory=list)
    updates: list[tuple[SagaInstance, SagaInstance]] = field(default_factory=list)
    history: list[tuple[UUID, HistoryEntry, UUID | None]] = field(default_factory=list)
    messages: list[tuple[OutboundMessage, UUID | None]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.inserts or self.updates or self.history or self.messages)

    def add(self, decision: Decision, owned: bool) -> None:
        """The decision's history and messages; ``owned``: only if its saga row is written."""
        saga_id = decision.instance.id
        owner = saga_id if owned else None
        self.history.extend((saga_id, entry, owner) for entry in decision.history)
        self.messages.extend(
            (OutboundMessage.of(o.topic, o.key, o.envelope, o.body), owner)
            for o in decision.outgoing
        )


@dataclass(frozen=True)
class Written:
    sagas: set[UUID]
    """The sagas whose rows were written."""
    rows: list[OutboxRow]
    """The outbox rows written, to publish after the statement."""


_SAGA_RECORD = """
    id uuid, saga_type text, business_key text, status text, step_index int,
    compensating boolean, pending_command_id text, attempt int, next_action_at timestamptz,
    data jsonb, reason text, correlation_id text, version int, created_at timestamptz,
    updated_at timestamptz, ended_at timestamptz, request_digest text"""

_HISTORY_RECORD = """
    saga_id uuid, at timestamptz, event text, step text, status text, message_id text,
    message_type text, topic text, detail text, actor text, owner uuid"""

_INSERT_SAGAS = f"""
    INSERT INTO saga_instances (id, saga_type, business_key, status, step_index, compensating,
        pending_command_id, attempt, next_action_at, data, reason, correlation_id, version,
        created_at, updated_at, ended_at, request_digest)
    SELECT r.id, r.saga_type, r.business_key, r.status, r.step_index, r.compensating,
           r.pending_command_id, r.attempt, r.next_action_at, r.data, r.reason,
           r.correlation_id, r.version, r.created_at, r.updated_at, r.ended_at,
           r.request_digest
    FROM jsonb_to_recordset($1::jsonb) AS r({_SAGA_RECORD})
    ON CONFLICT ON CONSTRAINT uq_saga_instances_business_key DO NOTHING
    RETURNING id"""

_UPDATE_SAGAS = f"""
    UPDATE saga_instances AS s SET
        status = r.status, step_index = r.step_index, compensating = r.compensating,
        pending_command_id = r.pending_command_id, attempt = r.attempt,
        next_action_at = r.next_action_at, data = r.data, reason = r.reason,
        correlation_id = r.correlation_id, version = r.version,
        updated_at = r.updated_at, ended_at = r.ended_at
    FROM jsonb_to_recordset($1::jsonb) AS r({_SAGA_RECORD}, old_version int)
    WHERE s.id = ANY($8::uuid[]) AND s.id = r.id AND s.version = r.old_version
    RETURNING s.id"""


@functools.cache
def _statement(mode: SagaWrite, outbox: str) -> str:
    """Fixed per (mode, outbox): prepared once per connection (asyncpg's statement cache)."""
    sagas = _INSERT_SAGAS if mode is SagaWrite.INSERT else _UPDATE_SAGAS
    return f"""
        WITH written AS ({sagas}
        ), history AS (
            INSERT INTO saga_history
                (saga_id, at, event, step, status, message_id, message_type, topic, detail,
                 actor)
            SELECT h.saga_id, h.at, h.event, h.step, h.status, h.message_id, h.message_type,
                   h.topic, h.detail, h.actor
            FROM jsonb_to_recordset($2::jsonb) AS h({_HISTORY_RECORD})
            WHERE h.owner IS NULL OR h.owner IN (SELECT id FROM written)
        ), outbox AS ({owned_outbox_insert(outbox, 3, "uuid", "SELECT id FROM written")}
        )
        SELECT ARRAY(SELECT id FROM written) AS sagas, ARRAY(SELECT id FROM outbox ORDER BY id)
        """


def _row_values(instance: SagaInstance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "saga_type": instance.saga_type,
        "business_key": instance.business_key,
        "status": instance.status.value,
        "step_index": instance.step_index,
        "compensating": instance.compensating,
        "pending_command_id": instance.pending_command_id,
        "attempt": instance.attempt,
        "next_action_at": instance.next_action_at,
        "data": instance.data,
        "reason": instance.reason,
        "correlation_id": instance.correlation_id,
        "version": instance.version,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
        "ended_at": instance.ended_at,
        "request_digest": instance.request_digest,
    }


def _history_values(saga_id: UUID, e: HistoryEntry) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "at": e.at,
        "event": e.event,
        "step": e.step,
        "status": e.status.value,
        "message_id": e.message_id,
        "message_type": e.message_type,
        "topic": e.topic,
        "detail": e.detail,
        "actor": e.actor,
    }


def updated(before: SagaInstance, after: SagaInstance) -> SagaInstance:
    """``after`` as an update of ``before`` leaves its row: the next version."""
    return after.evolve(version=before.version + 1)


def _json(value: Any) -> str:
    """orjson, many times faster; the standard library for what it refuses (ints over 64 bits)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str)


def _saga_rows(batch: BatchWrite) -> str:
    if batch.inserts:
        return _json([_row_values(i) for i in batch.inserts])
    rows = []
    for before, after in batch.updates:
        values = _row_values(updated(before, after))
        values["old_version"] = before.version
        rows.append(values)
    return _json(rows)


def _history_rows(batch: BatchWrite) -> str:
    return _json(
        [
            _history_values(saga_id, entry) | {"owner": owner}
            for saga_id, entry, owner in batch.history
        ]
    )


async def write_batch(driver: Any, outbox: Table, batch: BatchWrite) -> Written:
    """Write ``batch`` in one statement on asyncpg's connection (``db.driver_connection``,
    or ``db.driver_of`` inside a transaction): atomic without a transaction too."""
    if batch.inserts and batch.updates:
        raise ValueError("a batch write either inserts or updates sagas, not both")
    mode = SagaWrite.INSERT if batch.inserts else SagaWrite.UPDATE
    columns = outbox_columns([m for m, _ in batch.messages])
    # updates also name their rows as an array: the planner finds them through the primary
    # key instead of joining the whole table against the batch (its estimate of 100 rows)
    by_id = [[after.id for _, after in batch.updates]] if mode is SagaWrite.UPDATE else []
    sagas, ids = await driver.fetchrow(
        _statement(mode, outbox.name),
        _saga_rows(batch),
        _history_rows(batch),
        [owner for _, owner in batch.messages],
        columns["topics"],
        columns["keys"],
        columns["headers"],
        columns["payloads"],
        *by_id,
    )
    written = set(sagas)
    kept = [m for m, owner in batch.messages if owner is None or owner in written]
    # ids come from the outbox's sequence in insertion order, which is ``m.n`` order
    return Written(written, [OutboxRow(id_, m) for id_, m in zip(ids, kept, strict=True)])
