"""Waiting for a saga the API started: the saga's own row is the source of truth."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.engine import store
from orchestrator.engine.instance import SagaInstance
from schemas.sagas import saga_instances

POLL_S = 0.05


async def find(engine: AsyncEngine, saga_type: str, business_key: str) -> SagaInstance | None:
    async with engine.connect() as conn:
        return await find_on(conn, saga_type, business_key)


async def find_on(conn: AsyncConnection, saga_type: str, business_key: str) -> SagaInstance | None:
    row = (
        await conn.execute(
            select(saga_instances).where(
                saga_instances.c.saga_type == saga_type,
                saga_instances.c.business_key == business_key,
            )
        )
    ).first()
    return None if row is None else store.to_instance(row)


async def wait_for_end(
    engine: AsyncEngine, saga_type: str, business_key: str, timeout_s: float
) -> SagaInstance | None:
    """The saga once it has ended, or as it is when ``timeout_s`` runs out (None if unseen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        instance = await find(engine, saga_type, business_key)
        if (instance is not None and instance.status.terminal) or time.monotonic() >= deadline:
            return instance
        await asyncio.sleep(POLL_S)
