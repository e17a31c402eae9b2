"""Saga instances and history in PostgreSQL, with optimistic versioning."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.engine.machine import HistoryEntry
from orchestrator.errors import ConcurrentUpdate
from schemas.sagas import saga_instances

_T = saga_instances


def _values(instance: SagaInstance) -> dict[str, Any]:
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
    }


def to_instance(row: Row[Any]) -> SagaInstance:
    m = row._mapping
    return SagaInstance(
        id=m["id"],
        saga_type=m["saga_type"],
        business_key=m["business_key"],
        status=SagaStatus(m["status"]),
        step_index=m["step_index"],
        compensating=m["compensating"],
        pending_command_id=m["pending_command_id"],
        attempt=m["attempt"],
        next_action_at=m["next_action_at"],
        data=m["data"],
        reason=m["reason"],
        correlation_id=m["correlation_id"],
        version=m["version"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        ended_at=m["ended_at"],
    )


async def insert_new(conn: AsyncConnection, instances: Sequence[SagaInstance]) -> set[uuid.UUID]:
    """Insert sagas not already started for their business key; returns the ids inserted."""
    if not instances:
        return set()
    rows = json.dumps([_values(i) for i in instances], default=str)
    return {row[0] for row in await conn.execute(_INSERT_NEW, {"rows": rows})}


_RECORD = """
    id uuid, saga_type text, business_key text, status text, step_index int,
    compensating boolean, pending_command_id text, attempt int, next_action_at timestamptz,
    data jsonb, reason text, correlation_id text, version int, created_at timestamptz,
    updated_at timestamptz, ended_at timestamptz"""

_INSERT_NEW = text(
    f"""
    INSERT INTO saga_instances (id, saga_type, business_key, status, step_index, compensating,
        pending_command_id, attempt, next_action_at, data, reason, correlation_id, version,
        created_at, updated_at, ended_at)
    SELECT r.id, r.saga_type, r.business_key, r.status, r.step_index, r.compensating,
           r.pending_command_id, r.attempt, r.next_action_at, r.data, r.reason,
           r.correlation_id, r.version, r.created_at, r.updated_at, r.ended_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_RECORD})
    ON CONFLICT ON CONSTRAINT uq_saga_instances_business_key DO NOTHING
    RETURNING id
    """
)
_IDS = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_LOCK = select(_T).where(_T.c.id == any_(_IDS)).order_by(_T.c.id).with_for_update()


async def lock(
    conn: AsyncConnection, saga_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, SagaInstance]:
    """Load and row-lock sagas for this transaction (in id order, so lockers never deadlock)."""
    ids = sorted(set(saga_ids))
    if not ids:
        return {}
    rows = await conn.execute(_LOCK, {"ids": ids})
    return {row.id: to_instance(row) for row in rows}


async def lock_due(conn: AsyncConnection, now: datetime, limit: int) -> list[SagaInstance]:
    """Sagas whose timer is due, skipping those another process is working on."""
    rows = await conn.execute(
        select(_T)
        .where(and_(_T.c.next_action_at.is_not(None), _T.c.next_action_at <= now))
        .order_by(_T.c.next_action_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [to_instance(row) for row in rows]


async def get(conn: AsyncConnection, saga_id: uuid.UUID) -> SagaInstance | None:
    row = (await conn.execute(select(_T).where(_T.c.id == saga_id))).first()
    return to_instance(row) if row else None


async def save(conn: AsyncConnection, before: SagaInstance, after: SagaInstance) -> SagaInstance:
    """Write ``after`` if the row still has ``before``'s version; else ConcurrentUpdate."""
    saved = after.evolve(version=before.version + 1)
    values = _values(saved)
    del values["id"], values["created_at"]
    result = await conn.execute(
        update(_T)
        .where(and_(_T.c.id == before.id, _T.c.version == before.version))
        .values(**values)
    )
    if result.rowcount != 1:
        raise ConcurrentUpdate(f"saga {before.id} changed since version {before.version}")
    return saved


async def save_many(
    conn: AsyncConnection, changes: Sequence[tuple[SagaInstance, SagaInstance]]
) -> None:
    """Write many (before, after) pairs in one statement; ConcurrentUpdate if any row moved."""
    if not changes:
        return
    if len(changes) == 1:
        await save(conn, *changes[0])
        return
    rows = []
    for before, after in changes:
        values = _values(after.evolve(version=before.version + 1))
        values["old_version"] = before.version
        rows.append(values)
    result = await conn.execute(_BULK_SAVE, {"rows": json.dumps(rows, default=str)})
    saved = {row[0] for row in result}
    if len(saved) != len(changes):
        raise ConcurrentUpdate(f"{len(changes) - len(saved)} sagas changed under this batch")


_BULK_SAVE = text(
    f"""
    UPDATE saga_instances AS s SET
        status = r.status, step_index = r.step_index, compensating = r.compensating,
        pending_command_id = r.pending_command_id, attempt = r.attempt,
        next_action_at = r.next_action_at, data = r.data, reason = r.reason,
        correlation_id = r.correlation_id, version = r.version,
        updated_at = r.updated_at, ended_at = r.ended_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_RECORD}, old_version int)
    WHERE s.id = r.id AND s.version = r.old_version
    RETURNING s.id
    """
)


async def append_history(
    conn: AsyncConnection, entries: Sequence[tuple[uuid.UUID, HistoryEntry]]
) -> None:
    if not entries:
        return
    rows = [
        {
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
        for saga_id, e in entries
    ]
    await conn.execute(_APPEND_HISTORY, {"rows": json.dumps(rows, default=str)})


_APPEND_HISTORY = text(
    """
    INSERT INTO saga_history
        (saga_id, at, event, step, status, message_id, message_type, topic, detail, actor)
    SELECT r.saga_id, r.at, r.event, r.step, r.status, r.message_id, r.message_type, r.topic,
           r.detail, r.actor
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        saga_id uuid, at timestamptz, event text, step text, status text, message_id text,
        message_type text, topic text, detail text, actor text)
    """
)
