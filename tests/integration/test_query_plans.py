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
from workers.card_issuance import service as card_issuance


async def _generic_plan(engine: AsyncEngine, statement: str, *values: Any) -> list[str]:
    async with driver_connection(engine) as driver, driver.transaction():
        await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await driver.fetch(f"EXPLAIN {statement}", *values)
    return [line for (line,) in rows]


async def test_a_reply_batch_finds_its_sagas_by_key(engine: AsyncEngine) -> None:
    statement = batch_write._statement(SagaWrite.UPDATE, orchestrator_outbox.name)
    plan = await _generic_plan(engine, statement, "[]", "[]", [], [], [], [], [], [uuid4()])
    assert any("on saga_instances" in line and "Index" in line for line in plan), plan
    assert not any("Seq Scan on saga_instances" in line for line in plan), plan


async def test_a_card_id_is_taken_from_the_available_ones_only(engine: AsyncEngine) -> None:
    compiled = card_issuance._PICK_ID.compile(dialect=postgresql.asyncpg.dialect())
    plan = await _generic_plan(engine, str(compiled), "VIRTUAL", 1)
    assert any("ix_card_inventory_available" in line for line in plan), plan
