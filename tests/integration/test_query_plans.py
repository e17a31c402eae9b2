"""The hot statements on tables that grow with every saga find their rows through an index.

Each is prepared once per connection and then runs with PostgreSQL's generic plan, so the
plan is checked as generic: a sequential scan here costs more with every saga ever run."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import TextClause
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import driver_connection
from orchestrator.engine import batch_write
from orchestrator.engine.batch_write import SagaWrite
from schemas.sagas import orchestrator_outbox
from workers.billing import ledger
from workers.billing import locks as billing_locks
from workers.card_issuance import service as card_issuance
from workers.delivery import service as delivery
from workers.notification import service as notification
from workers.store import service as store

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


_MANY_ROWS = {
    "customer_wallets": """INSERT INTO customer_wallets
        (wallet_id, customer_id, currency, balance_minor, status, saga_id)
        SELECT 'W-plan-' || n, 'c-plan-' || n, 'KZT', 0, 'OPEN', gen_random_uuid()
        FROM generate_series(1, 5000) AS n""",
    "gift_cards": """INSERT INTO gift_cards (gift_card_id, code_hash, currency, initial_minor,
        balance_minor, status, purchaser_id, recipient_name, design, saga_id)
        SELECT 'G-plan-' || n, 'h-plan-' || n, 'KZT', 1, 1, 'ACTIVE', 'p', 'r', 'd',
            gen_random_uuid()
        FROM generate_series(1, 5000) AS n""",
    "stock": """INSERT INTO stock (sku, warehouse_id, available, reserved)
        SELECT 'SKU-plan-' || n, 'w', 1, 0 FROM generate_series(1, 5000) AS n""",
    "notification_channels": """INSERT INTO notification_channels
        (account_id, channel, address, status)
        SELECT 'A-plan-' || n, 'email', 'x', 'ACTIVE' FROM generate_series(1, 5000) AS n""",
    "delivery_points": """INSERT INTO delivery_points (point_id, kind, name, capacity)
        SELECT 'P-plan-' || n, 'pickup', 'p', 1 FROM generate_series(1, 5000) AS n""",
}


@pytest.mark.parametrize(
    ("table", "statement", "values"),
    [
        (
            "customer_wallets",
            billing_locks._LOCK_WALLETS,
            {"customers": ["c-1"], "ids": [uuid4()], "steps": ["debit"]},
        ),
        (
            "gift_cards",
            billing_locks._LOCK_GIFT_CARDS,
            {"cards": ["G-1"], "hashes": ["h"], "ids": [uuid4()], "steps": ["debit"]},
        ),
        ("stock", store._LOCK_BATCH_STOCK, {"skus": ["SKU-1"], "sagas": [uuid4()]}),
        (
            "notification_channels",
            notification._LOCK_BATCH_CHANNELS,
            {"customers": ["c-1"], "ids": [uuid4()], "steps": ["s"]},
        ),
        (
            "delivery_points",
            delivery._LOCK_BATCH_POINTS,
            {"points": ["P-1"], "couriers": False, "sagas": [uuid4()]},
        ),
    ],
)
async def test_a_batch_s_rows_are_locked_ahead_through_their_keys(
    engine: AsyncEngine, table: str, statement: TextClause, values: dict[str, Any]
) -> None:
    """An ``IN (subquery)`` under an ``OR`` would read the whole table for every batch."""
    compiled = statement.bindparams(**values).compile(dialect=postgresql.asyncpg.dialect())
    parameters = [compiled.params[name] for name in compiled.positiontup or ()]
    plan = await _generic_plan(
        engine,
        str(compiled),
        *parameters,
        setup=f"{_MANY_ROWS[table]}; ANALYZE {table}",
    )
    assert not any(f"Seq Scan on {table}" in line for line in plan), plan
