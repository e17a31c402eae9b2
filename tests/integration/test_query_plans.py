"""The hot statements on tables that grow with every saga find their rows through an index.

Each is prepared once per connection and then runs with PostgreSQL's generic plan, so the
plan is checked as generic: a sequential scan here costs more with every saga ever run."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import driver_connection
from orchestrator.engine import batch_write
from orchestrator.engine.batch_write import SagaWrite
from schemas.sagas import orchestrator_outbox
from workers.billing import ledger
from workers.card_issuance import service as card_issuance

_MANY_SAGAS = """
    INSERT INTO saga_instances (id, saga_type, business_key, status, step_index, data, version)
    SELECT gen_random_uuid(), 'plan-check', 'key-' || n, 'COMPLETED', 0, '{}'::jsonb, 1
    FROM generate_series(1, 5000) AS n"""


async def _generic_plan(
    engine: AsyncEngine, statement: str, *values: Any, setup: str | None = None
) -> list[str]:
    """The plan, with ``setup`` run first in the same transaction, rolled back after."""
    async with driver_connection(engine) as driver:
        transaction = driver.transaction()
        await transaction.start()
        try:
            if setup is not None:
                await driver.execute(setup)
            await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            rows = await driver.fetch(f"EXPLAIN {statement}", *values)
        finally:
            await transaction.rollback()
    return [line for (line,) in rows]


async def test_a_reply_batch_finds_its_sagas_by_key(engine: AsyncEngine) -> None:
    """On a table of a few rows a scan is cheaper and PostgreSQL rightly takes it; the plan
    is checked on one of thousands, whatever the tests before left in it."""
    statement = batch_write._statement(SagaWrite.UPDATE, orchestrator_outbox.name)
    plan = await _generic_plan(
        engine,
        statement,
        *("[]", "[]", [], [], [], [], [], [uuid4()]),
        setup=f"{_MANY_SAGAS}; ANALYZE saga_instances",
    )
    assert any("on saga_instances" in line and "Index" in line for line in plan), plan
    assert not any("Seq Scan on saga_instances" in line for line in plan), plan


async def test_a_card_id_is_taken_from_the_available_ones_only(engine: AsyncEngine) -> None:
    compiled = card_issuance._PICK_ID.compile(dialect=postgresql.asyncpg.dialect())
    plan = await _generic_plan(engine, str(compiled), "VIRTUAL", 1)
    assert any("ix_card_inventory_available" in line for line in plan), plan


async def test_a_refund_finds_its_step_s_ledger_entries_by_key(engine: AsyncEngine) -> None:
    compiled = ledger._STEP_ENTRIES.compile(dialect=postgresql.asyncpg.dialect())
    plan = await _generic_plan(
        engine,
        str(compiled),
        uuid4(),
        "debit",
        setup="""INSERT INTO ledger_entries (movement_id, account, amount_minor, currency,
            saga_id, step, memo)
            SELECT 'm' || n, 'wallet:w' || n, 1, 'KZT', gen_random_uuid(), 'debit', 'plan'
            FROM generate_series(1, 5000) AS n; ANALYZE ledger_entries""",
    )
    assert any("ix_ledger_entries_saga_step" in line for line in plan), plan
