"""A database an earlier release created gets the nullable columns and the indexes added
since, at start; a missing column that must hold a value is a clear error, not a failed
statement later."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table, Text, text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import SchemaOutOfDate, create_engine, create_schema
from orchestrator.embedded import EmbeddedStack
from schemas.sagas import orchestrator_outbox
from tests.integration.helpers import unique


async def _older_outbox(engine: AsyncEngine) -> str:
    """An outbox as the release before the ``writer`` column created it."""
    name = unique("old_outbox").replace("-", "_")
    async with engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE {name} (LIKE {orchestrator_outbox.name} INCLUDING ALL)")
        )
        await conn.execute(text(f"ALTER TABLE {name} DROP COLUMN writer"))
    return name


async def test_a_new_nullable_column_is_added_with_its_default(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    """The rows already there name no writer (not the upgrading process); new rows do."""
    name = await _older_outbox(engine)
    insert = text(f"INSERT INTO {name} (topic, headers, payload) VALUES ('t', '{{}}', '')")
    async with engine.begin() as conn:
        await conn.execute(insert)
    tables = MetaData()
    orchestrator_outbox.to_metadata(tables, name=name)
    upgrading = create_engine(stack.settings(), writer=7)
    try:
        await create_schema(upgrading, tables)
        await create_schema(upgrading, tables)  # the next start finds it there
    finally:
        await upgrading.dispose()
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL orchestra.writer = '42'"))
        await conn.execute(insert)
        writers = await conn.execute(text(f"SELECT writer FROM {name} ORDER BY id"))
        assert writers.scalars().all() == [None, 42]


async def test_a_key_column_an_earlier_release_made_short_is_widened_in_place(
    engine: AsyncEngine,
) -> None:
    """An outbox of the releases that held keys of at most 255 characters: a dead letter of a
    record with a longer Kafka key could not be written, and its partition stalled."""
    name = await _older_outbox(engine)
    async with engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {name} ALTER COLUMN key TYPE varchar(255)"))
        await conn.execute(
            text(f"INSERT INTO {name} (topic, key, headers, payload) VALUES ('t', 'k', '{{}}', '')")
        )
    tables = MetaData()
    orchestrator_outbox.to_metadata(tables, name=name)
    await create_schema(engine, tables)
    await create_schema(engine, tables)  # the next start finds it wide
    long_key = "K" * 300
    async with engine.begin() as conn:
        await conn.execute(
            text(f"INSERT INTO {name} (topic, key, headers, payload) VALUES ('t', :k, '{{}}', '')"),
            {"k": long_key},
        )
        keys = await conn.execute(text(f"SELECT key FROM {name} ORDER BY id"))
        assert keys.scalars().all() == ["k", long_key]


async def test_a_missing_column_that_needs_a_value_is_a_clear_error(engine: AsyncEngine) -> None:
    name = await _older_outbox(engine)
    tables = MetaData()
    table = orchestrator_outbox.to_metadata(tables, name=name)
    table.append_column(Column("required", Integer, nullable=False))
    with pytest.raises(SchemaOutOfDate, match=f"table {name} has no column required"):
        await create_schema(engine, tables)


async def _table_without_its_index(engine: AsyncEngine, *setup: str) -> tuple[str, MetaData]:
    """A table an earlier release created (then ``setup``, with ``{name}`` and ``{index}``), and
    the declaration of this release, which adds an index."""
    name = unique("old_table").replace("-", "_")
    index = f"ix_{name}_saga"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (id bigint PRIMARY KEY, saga text)"))
        for statement in setup:
            await conn.execute(text(statement.format(name=name, index=index)))
    tables = MetaData()
    Table(
        name,
        tables,
        Column("id", BigInteger, primary_key=True),
        Column("saga", Text),
        Index(index, "saga"),
    )
    return index, tables


async def test_an_index_declared_since_is_built(engine: AsyncEngine) -> None:
    index, tables = await _table_without_its_index(engine)
    await create_schema(engine, tables)
    await create_schema(engine, tables)
    assert await _valid(engine, index)


async def test_an_index_a_cut_off_build_left_invalid_is_built_again(engine: AsyncEngine) -> None:
    index, tables = await _table_without_its_index(
        engine,
        "CREATE INDEX {index} ON {name} (saga)",
        # what a CREATE INDEX CONCURRENTLY cut off leaves
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass('{index}')",
    )
    await create_schema(engine, tables)
    assert await _valid(engine, index)


async def _valid(engine: AsyncEngine, index: str) -> bool:
    async with engine.connect() as conn:
        valid = await conn.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:i)"),
            {"i": index},
        )
        return valid.scalar_one() is True
