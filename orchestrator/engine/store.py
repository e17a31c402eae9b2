"""Reading saga instances; ``batch_write`` writes them, with their history and outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.instance import SagaInstance, SagaStatus, SentCommand
from orchestrator.engine.waiting import Awaiting
from schemas.sagas import saga_history, saga_instances

_T = saga_instances


def to_instance(row: Row[Any]) -> SagaInstance:
    return from_mapping(row._mapping)


def from_mapping(m: Mapping[Any, Any]) -> SagaInstance:
    """A saga from its row: SQLAlchemy's row mapping or asyncpg's record."""
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
        request_digest=m["request_digest"],
    )


_IDS = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_LOCK = select(_T).where(_T.c.id == any_(_IDS)).order_by(_T.c.id).with_for_update()
_LOAD = f"SELECT {', '.join(c.name for c in _T.c)} FROM {_T.name} WHERE id = ANY($1::uuid[])"


_DIGESTS = (
    f"SELECT id, saga_type, business_key, request_digest FROM {_T.name}"
    " WHERE (saga_type, business_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
)


async def request_digests(
    driver: Any, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[uuid.UUID, str | None]]:
    """The id and ``request_digest`` of the sagas with these (type, business key)s."""
    pairs = sorted(set(keys))
    if not pairs:
        return {}
    rows = await driver.fetch(_DIGESTS, [t for t, _ in pairs], [k for _, k in pairs])
    return {
        (row["saga_type"], row["business_key"]): (row["id"], row["request_digest"]) for row in rows
    }


_KNOWN = (
    f"SELECT saga_id, message_id, step, event FROM {saga_history.name}"
    " WHERE saga_id = ANY($1::uuid[]) AND message_id = ANY($2::text[])"
    " AND event IN ('command-sent', 'compensation-sent',"
    " 'reply-received', 'reply-ignored', 'late-effect')"
)


@dataclass(frozen=True)
class Known:
    """What the sagas' histories hold of some messages: the commands they sent, and the
    replies they have had already (whether taken or ignored)."""

    commands: dict[tuple[uuid.UUID, str], SentCommand] = field(default_factory=dict)
    replies: set[tuple[uuid.UUID, str]] = field(default_factory=set)


async def known_messages(driver: Any, asked: Iterable[tuple[uuid.UUID, str]]) -> Known:
    """Which of ``asked`` (a saga id, a message id) that saga's history holds, as a command
    it sent or a reply it had: what a reply that does not answer the command awaited
    answers, if anything, and whether it is a reply seen before (redelivered, replayed)."""
    pairs = set(asked)
    if not pairs:
        return Known()
    rows = await driver.fetch(
        _KNOWN, sorted({saga for saga, _ in pairs}), sorted({message for _, message in pairs})
    )
    known = Known()
    for row in rows:
        pair = (row["saga_id"], row["message_id"])
        if pair not in pairs:
            continue
        if row["event"] in ("command-sent", "compensation-sent"):
            known.commands[pair] = SentCommand(row["step"], row["event"] == "compensation-sent")
        else:
            known.replies.add(pair)
    return known


_AWAITING = f"""
SELECT i.id, i.pending_command_id, h.topic, h.at, i.next_action_at,
    EXISTS (SELECT 1 FROM {saga_history.name} q WHERE q.saga_id = i.id
        AND q.message_id = i.pending_command_id AND q.event = 'command-queued') AS queued,
    EXISTS (SELECT 1 FROM {saga_history.name} t WHERE t.saga_id = i.id
        AND t.message_id = i.pending_command_id AND t.event = 'command-taken') AS taken
FROM {_T.name} i
JOIN {saga_history.name} h ON h.saga_id = i.id AND h.message_id = i.pending_command_id
    AND h.event IN ('command-sent', 'compensation-sent')
WHERE i.next_action_at IS NOT NULL AND i.next_action_at <= $1
    AND i.pending_command_id IS NOT NULL AND i.saga_type = ANY($2::text[])
ORDER BY i.next_action_at
LIMIT $3
"""


async def awaiting(
    driver: Any,
    now: datetime,
    participants: Mapping[str, str],
    saga_types: Iterable[str],
    limit: int,
) -> list[Awaiting]:
    """Sagas whose step's answer is late by ``now``, without locking them, with the
    participant (``participants``: topic to name; "" for another topic) their command went
    to (``orchestrator.engine.waiting``)."""
    rows = await driver.fetch(_AWAITING, now, sorted(saga_types), limit)
    return [
        Awaiting(
            row["id"],
            row["pending_command_id"],
            row["topic"],
            participants.get(row["topic"], ""),
            row["at"],
            row["queued"],
            row["taken"],
            row["next_action_at"],
        )
        for row in rows
    ]


async def lock(
    conn: AsyncConnection, saga_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, SagaInstance]:
    """Load and row-lock sagas for this transaction (in id order, so lockers never deadlock)."""
    ids = sorted(set(saga_ids))
    if not ids:
        return {}
    rows = await conn.execute(_LOCK, {"ids": ids})
    return {row.id: to_instance(row) for row in rows}


async def load(driver: Any, saga_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, SagaInstance]:
    """Read sagas without locking them, on asyncpg's connection (``db.driver_connection``):
    writers check the version instead."""
    ids = sorted({i for i in saga_ids if i is not None})
    if not ids:
        return {}
    return {row["id"]: from_mapping(row) for row in await driver.fetch(_LOAD, ids)}


async def lock_due(
    conn: AsyncConnection,
    now: datetime,
    limit: int,
    saga_types: Iterable[str],
    retries_only: bool = False,
) -> list[SagaInstance]:
    """Sagas of these types whose timer is due, skipping those another process is working on
    (a type this process does not run must not take its places); with ``retries_only``,
    only those due to send a step again, not those whose step's answer is late."""
    due = [
        _T.c.next_action_at.is_not(None),
        _T.c.next_action_at <= now,
        _T.c.saga_type.in_(sorted(saga_types)),
    ]
    if retries_only:
        due.append(_T.c.pending_command_id.is_(None))
    rows = await conn.execute(
        select(_T)
        .where(and_(*due))
        .order_by(_T.c.next_action_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [to_instance(row) for row in rows]
