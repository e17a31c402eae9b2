"""The database: one pooled async engine per process, and schema creation at start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from orchestrator.errors import OrchestraError
from orchestrator.settings import Settings
from schemas.metadata import metadata

SCHEMA_LOCK_ID = 0x0C4E57A  # pg advisory lock key: one schema creator at a time


class DatabaseUnavailable(OrchestraError):
    """PostgreSQL cannot be reached or refused the connection."""


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=False,
        connect_args={"statement_cache_size": 512},
    )


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """asyncpg's own connection, from the engine's pool, for the engine's hot statements:
    no SQLAlchemy execution layer (compiled-statement lookup, parameter and result
    processing) around each one. No transaction is begun: every statement commits on its
    own. A connection that broke meanwhile leaves the pool."""
    async with engine.connect() as conn:
        driver = await driver_of(conn)
        try:
            yield driver
        except BaseException:
            if driver.is_closed():
                await conn.invalidate()
            raise


async def driver_of(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``; its statements join the transaction ``conn``
    has begun on the server, that is once ``conn`` has run a statement in it."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def create_schema(engine: AsyncEngine) -> None:
    """Create every missing table; concurrent starters serialise on an advisory lock."""
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_ID})
            await conn.run_sync(metadata.create_all)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise DatabaseUnavailable(f"cannot reach PostgreSQL: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
