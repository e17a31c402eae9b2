"""Reading sagas for operators: filtered lists, one saga, its history."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.engine import store
from orchestrator.engine.instance import SagaInstance
from orchestrator.errors import OrchestraError
from schemas.sagas import saga_history, saga_instances


class SagaNotFound(OrchestraError):
    """No saga matches the id or business key given."""


@dataclass(frozen=True)
class SagaFilter:
    saga_type: str | None = None
    status: str | None = None
    older_than: timedelta | None = None
    business_key: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    event: str
    step: str | None
    status: str
    message_id: str | None
    message_type: str | None
    topic: str | None
    detail: str | None
    actor: str | None


async def list_sagas(engine: AsyncEngine, wanted: SagaFilter) -> list[SagaInstance]:
    query = select(saga_instances).order_by(saga_instances.c.updated_at.desc())
    if wanted.saga_type:
        query = query.where(saga_instances.c.saga_type == wanted.saga_type)
    if wanted.status:
        query = query.where(saga_instances.c.status == wanted.status.upper())
    if wanted.business_key:
        query = query.where(saga_instances.c.business_key == wanted.business_key)
    if wanted.older_than is not None:
        query = query.where(saga_instances.c.created_at <= func.now() - wanted.older_than)
    async with engine.connect() as conn:
        rows = await conn.execute(query.limit(wanted.limit))
        return [store.to_instance(row) for row in rows]


async def one_saga(engine: AsyncEngine, ident: str) -> SagaInstance:
    """By saga id or by business key (a key may be a UUID too), when that names one saga."""
    saga_id: uuid.UUID | None = None
    with contextlib.suppress(ValueError):
        saga_id = uuid.UUID(ident)
    condition = saga_instances.c.business_key == ident
    if saga_id is not None:
        condition = or_(condition, saga_instances.c.id == saga_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(saga_instances).where(condition).limit(3))).all()
    if not rows:
        raise SagaNotFound(f"no saga with id or business key {ident!r}")
    if len(rows) == 1:
        return store.to_instance(rows[0])
    by_id = [row for row in rows if row.id == saga_id]
    by_key = ", ".join(f"{row.saga_type} {row.id}" for row in rows if row.id != saga_id)
    if by_id:
        raise SagaNotFound(
            f"{ident!r} is the id of saga {by_id[0].saga_type} {by_id[0].id} and the business "
            f"key of {by_key}; refusing to guess which one is meant"
        )
    raise SagaNotFound(f"{ident!r} names several sagas ({by_key}); give the saga id")


async def saga_types(engine: AsyncEngine) -> set[str]:
    """The saga types with at least one saga."""
    async with engine.connect() as conn:
        return set((await conn.scalars(select(saga_instances.c.saga_type).distinct())).all())


async def history(engine: AsyncEngine, saga_id: uuid.UUID) -> list[HistoryRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(saga_history)
            .where(saga_history.c.saga_id == saga_id)
            .order_by(saga_history.c.id)
        )
        return [
            HistoryRow(
                at=row.at,
                event=row.event,
                step=row.step,
                status=row.status,
                message_id=row.message_id,
                message_type=row.message_type,
                topic=row.topic,
                detail=row.detail,
                actor=row.actor,
            )
            for row in rows
        ]
