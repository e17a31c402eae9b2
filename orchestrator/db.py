"""The database: one pooled async engine per process, and schema creation at start."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator
from typing import Any

import structlog
from asyncpg.exceptions import PostgresError
from sqlalchemy import Connection, Index, MetaData, String, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateColumn, CreateIndex

from orchestrator.database_url import connect_options, place
from orchestrator.engine.retry import with_retries
from orchestrator.errors import OrchestraError
from orchestrator.settings import Settings
from schemas.messaging import WRITER_SETTING
from schemas.metadata import metadata

log = structlog.get_logger(__name__)

SCHEMA_LOCK_ID = 0x0C4E57A  # pg advisory lock key: one schema creator at a time
INDEX_LOCK_ID = SCHEMA_LOCK_ID + 1  # one builder of indexes at a time


class DatabaseUnavailable(OrchestraError):
    """PostgreSQL cannot be reached or refused the connection."""


def create_engine(settings: Settings, writer: int | None = None) -> AsyncEngine:
    """The process's pool; with ``writer``, every connection names it (``orchestrator.writers``)."""
    connect_args: dict[str, Any] = {
        "statement_cache_size": 512,
        **connect_options(make_url(settings.database_url)),
    }
    if writer is not None:
        connect_args["server_settings"] = {WRITER_SETTING: str(writer)}
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=False,
        hide_parameters=True,  # a statement's values never reach an error text or a log
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection the server closed while it sat in the pool (a restart, a failover,
    pg_terminate_backend) is replaced at checkout, without a round trip (no pre-ping): the
    driver has seen its socket close."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("closed by the server while pooled")


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """asyncpg's own connection, from the engine's pool, for the engine's hot statements:
    no SQLAlchemy execution layer (compiled-statement lookup, parameter and result
    processing) around each one. No transaction is begun: every statement commits on its
    own. After any error but the server's answer to a statement (a lost connection, a
    cancelled or cut-off operation), the connection leaves the pool: its protocol state is
    unknown, and the next user would meet "another operation is in progress"."""
    async with engine.connect() as conn:
        driver = await driver_of(conn)
        try:
            yield driver
        except BaseException as exc:
            if driver.is_closed() or not isinstance(exc, PostgresError):
                await conn.invalidate()
            raise


async def driver_of(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``; its statements join the transaction ``conn``
    has begun on the server, that is once ``conn`` has run a statement in it."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


class SchemaOutOfDate(OrchestraError):
    """A table lacks a column that cannot be added to it in place."""


async def create_schema(engine: AsyncEngine, tables: MetaData = metadata) -> None:
    """Create every missing table (concurrent starters serialise on an advisory lock), then
    add the new nullable columns to tables an earlier release created."""
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_ID})
            await conn.run_sync(tables.create_all)
            missing = await conn.run_sync(_missing_columns, tables)
            narrow = await conn.run_sync(_narrow_columns, tables)
            indexes = await conn.run_sync(_missing_indexes, tables)
        for table, definition in missing:
            await with_retries(
                functools.partial(_add_column, engine, table, definition),
                attempts=ADD_COLUMN_ATTEMPTS,
                what=f"adding a column to {table}",
            )
        for table, column, type_ in narrow:
            await with_retries(
                functools.partial(_widen_column, engine, table, column, type_),
                attempts=ADD_COLUMN_ATTEMPTS,
                what=f"widening {table}.{column}",
            )
        if indexes:
            await with_retries(
                functools.partial(_add_indexes, engine, indexes),
                what="building indexes",
            )
    except (OperationalError, DBAPIError, OSError) as exc:
        raise unreachable(engine, exc) from None


def unreachable(engine: AsyncEngine, exc: BaseException) -> DatabaseUnavailable:
    """The one-line error for a database ``engine`` could not use: where it looked, and why."""
    return DatabaseUnavailable(f"cannot reach PostgreSQL at {place(engine.url)}: {first_line(exc)}")


ADD_COLUMN_ATTEMPTS = 10
ADD_COLUMN_LOCK_TIMEOUT = "2s"
"""How long adding a column waits for its table: it locks the table against every reader and
writer, so running processes queue behind it only that long before it gives way and tries
again."""


def _missing_columns(conn: Connection, tables: MetaData) -> list[tuple[str, str]]:
    """The (table, column definition) pairs to add; SchemaOutOfDate for a missing column that
    must hold a value."""
    present = {
        (row.table_name, row.column_name)
        for row in conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            )
        )
    }
    missing = []
    for table in tables.sorted_tables:
        for column in table.columns:
            if (table.name, column.name) in present:
                continue
            if not column.nullable:
                raise SchemaOutOfDate(
                    f"table {table.name} has no column {column.name}, which cannot be added "
                    "to its rows in place: migrate the table or start on a new database"
                )
            missing.append((table.name, str(CreateColumn(column).compile(dialect=conn.dialect))))
    return missing


async def _add_column(engine: AsyncEngine, table: str, definition: str) -> None:
    """One column. The rows already there get the default as this session computes it, with
    no writer named (``orchestrator.writers``)."""
    await _alter(engine, f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {definition}")
    log.info("column added", table=table, column=definition.split()[0])


async def _alter(engine: AsyncEngine, statement: str) -> None:
    """One ALTER TABLE in a short transaction of its own, waiting for its table at most
    ``ADD_COLUMN_LOCK_TIMEOUT``, as this process's session names no writer."""
    async with engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL lock_timeout = '{ADD_COLUMN_LOCK_TIMEOUT}'"))
        await conn.execute(text(f"SET LOCAL {WRITER_SETTING} = ''"))
        await conn.execute(text(statement))


def _narrow_columns(conn: Connection, tables: MetaData) -> list[tuple[str, str, str]]:
    """The (table, column, type) of text columns an earlier release made shorter than they
    are now declared (``varchar(255)`` that is now ``text``, say)."""
    lengths = {
        (row.table_name, row.column_name): row.character_maximum_length
        for row in conn.execute(
            text(
                "SELECT table_name, column_name, character_maximum_length"
                " FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND data_type = 'character varying'"
            )
        )
    }
    narrow = []
    for table in tables.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, String) or (table.name, column.name) not in lengths:
                continue
            held, declared = lengths[(table.name, column.name)], column.type.length
            if held is not None and (declared is None or declared > held):
                narrow.append((table.name, column.name, column.type.compile(dialect=conn.dialect)))
    return narrow


async def _widen_column(engine: AsyncEngine, table: str, column: str, type_: str) -> None:
    """A longer text type, in place: PostgreSQL changes only the catalogue, rewriting no row,
    but locks the table meanwhile, so it waits for it only as long as adding a column does."""
    await _alter(engine, f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {type_}')
    log.info("column widened", table=table, column=column, type=type_)


def _missing_indexes(conn: Connection, tables: MetaData) -> list[Index]:
    """Indexes declared on tables an earlier release created, or left invalid by a build
    that did not finish."""
    valid = {
        row.relname
        for row in conn.execute(
            text(
                "SELECT c.relname FROM pg_index AS i"
                " JOIN pg_class AS c ON c.oid = i.indexrelid"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND i.indisvalid"
            )
        )
    }
    return [
        index
        for table in tables.sorted_tables
        for index in sorted(table.indexes, key=lambda i: str(i.name))
        if index.name not in valid
    ]


async def _add_indexes(engine: AsyncEngine, indexes: list[Index]) -> None:
    """Built CONCURRENTLY, so the tables' writers go on, by one starter at a time: one that
    finds another building goes on without them (they serve once built)."""
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        key = {"key": INDEX_LOCK_ID}
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), key):
            log.info("another process is building indexes", names=[i.name for i in indexes])
            return
        try:
            for index in indexes:
                await _build(conn, index)
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
        except BaseException:
            await conn.invalidate()  # the session, and its lock, end with the connection
            raise


async def _build(conn: AsyncConnection, index: Index) -> None:
    """An invalid index of that name can only be what a build cut off left (no other
    starter builds while this one holds the lock): it is dropped and built again."""
    statement = str(CreateIndex(index, if_not_exists=True).compile(dialect=conn.dialect))
    statement = re.sub(r"^CREATE (UNIQUE )?INDEX", r"CREATE \1INDEX CONCURRENTLY", statement)
    valid = text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    if await conn.scalar(valid, {"name": index.name}) is False:
        await conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}"))
    await conn.execute(text(statement))
    if not await conn.scalar(valid, {"name": index.name}):
        raise SchemaOutOfDate(f"index {index.name} could not be built; see PostgreSQL's log")
    log.info("index added", index=index.name)


def first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
