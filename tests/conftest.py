"""Session fixtures: one embedded broker and PostgreSQL for the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import logging as orchestra_logging
from orchestrator.db import create_engine, create_schema
from orchestrator.embedded import EmbeddedStack


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
