"""Session fixtures: one embedded broker and PostgreSQL for the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import logging as orchestra_logging
from orchestrator.db import create_engine, create_schema
from orchestrator.embedded import EmbeddedStack
from orchestrator.sagas.bench import BENCH_SAGA


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    orchestra_logging.configure("WARNING", "console")
    with EmbeddedStack() as embedded:
        yield embedded


@pytest.fixture
async def engine(stack: EmbeddedStack) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database, every table created."""
    engine = create_engine(stack.settings())
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def running_app(stack: EmbeddedStack) -> AsyncIterator[object]:
    """Every service in this process, in one set of consumer groups, for the whole session."""
    from orchestrator.app import Application

    app = Application(stack.settings(group_prefix="session", step_timeout_s=20.0))
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def bench_sagas_ended(engine: AsyncEngine) -> AsyncIterator[None]:
    """The benchmark sagas a test starts are ended afterwards: no participant ever answers
    them here, and later tests wait for every saga to settle."""
    async with engine.connect() as conn:
        since = (await conn.execute(text("SELECT now()"))).scalar_one()
    yield
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE saga_instances SET status = 'ABORTED', next_action_at = NULL, "
                "pending_command_id = NULL, ended_at = now() "
                "WHERE saga_type = :type AND created_at >= :since AND ended_at IS NULL"
            ),
            {"type": BENCH_SAGA.name, "since": since},
        )
