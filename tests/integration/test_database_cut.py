"""PostgreSQL cuts every connection of a running process (a failover, a restart, an operator's
pg_terminate_backend) while sagas are in flight: the batches under way are retried on new
connections, every saga still ends once, the money is right, and the process takes its
writer lock again, so other processes keep leaving its outbox rows to it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest
from asyncpg.exceptions import (
    CannotConnectNowError,
    CheckViolationError,
    DataError,
    DiskFullError,
    ExclusionViolationError,
    ForeignKeyViolationError,
    InternalClientError,
    NotNullViolationError,
    ObjectNotInPrerequisiteStateError,
    QueryCanceledError,
    TooManyConnectionsError,
    UniqueViolationError,
)
from asyncpg.exceptions import InterfaceError as DriverInterfaceError
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from events import topics
from orchestrator import serve as serving
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.db import create_engine, driver_connection, driver_of
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.retry import is_transient
from orchestrator.writers import LOCK_CLASS
from tests.integration import commerce as c

pytestmark = pytest.mark.slow

LEASE_BACK_S = 30.0


@pytest.fixture(scope="module")
def own_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as embedded:
        yield embedded


async def test_sagas_survive_their_database_connections_being_cut(
    own_stack: EmbeddedStack,
) -> None:
    app = Application(own_stack.settings(group_prefix="cut"))
    observer = create_engine(own_stack.settings())
    await app.start()
    try:
        async with UpstreamClient(own_stack.settings(), watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            customers = [c.customer() for _ in range(12)]
            for customer in customers:
                await client.send(topics.CUSTOMERS_REGISTERED, customer)
            await seen.wait([r.customer_id for r in customers])
            topups = [c.topup(r.customer_id, "100.00") for r in customers for _ in range(3)]
            for n, record in enumerate(topups):
                await client.send(topics.WALLETS_TOPUP_REQUESTED, record)
                if n == len(topups) // 2:
                    holder = await _lock_holder(observer, app.writer)
                    await _cut_every_connection_but_this(observer)
            done = await seen.wait([r.topup_id for r in topups])
            await seen.settle(2)  # a late duplicate would come now
        assert all(outcome["status"] == "COMPLETED" for outcome in done.values()), done
        assert all(len(seen.seen[r.topup_id]) == 1 for r in topups)
        balances = await _wallet_balances(observer, [r.customer_id for r in customers])
        assert balances == dict.fromkeys((r.customer_id for r in customers), 30_000)
        await _until_taken_again(observer, app.writer, holder)
    finally:
        await app.stop()
        await observer.dispose()


async def test_a_database_refusing_connections_for_a_while_dead_letters_nothing(
    own_stack: EmbeddedStack,
) -> None:
    """``ALLOW_CONNECTIONS false`` (an operator's maintenance, a failover under way) with every
    session cut: each batch meets "not accepting connections" until it is lifted, which is a
    fault to retry, not a record's fault to dead-letter."""
    app = Application(own_stack.settings(group_prefix="refusing"))
    database = make_url(own_stack.database_url).database
    admin = create_async_engine(
        make_url(own_stack.database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    dlq = topics.dlq(topics.CUSTOMERS_REGISTERED)
    await app.start()
    try:
        async with UpstreamClient(own_stack.settings(), watch=[*c.WATCHED, dlq]) as client:
            seen = c.Outcomes(client)
            customers = [c.customer() for _ in range(10)]
            async with admin.connect() as conn:
                for n, customer in enumerate(customers):  # refused, allowed, refused, ...
                    await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
                    await conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE datname = :db AND backend_type = 'client backend'"
                        ),
                        {"db": database},
                    )
                    await client.send(topics.CUSTOMERS_REGISTERED, customer)
                    await asyncio.sleep(0.2 + 0.1 * (n % 3))
                    await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
                    await asyncio.sleep(0.1 + 0.1 * (n % 2))
            done = await seen.wait([r.customer_id for r in customers])
            await seen.settle(2)
        assert all(outcome["status"] == "ACTIVE" for outcome in done.values()), done
        assert [r for r in seen.others if r.topic == dlq] == []
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        await app.stop()
        await admin.dispose()


async def _cut_every_connection_but_this(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        cut = await conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        )
        assert cut.scalar_one() > 0


async def _wallet_balances(engine: AsyncEngine, customers: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT customer_id, balance_minor FROM customer_wallets"
                " WHERE customer_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ids": customers},
        )
        return {row.customer_id: row.balance_minor for row in rows}


async def _lock_holder(engine: AsyncEngine, writer: int) -> int | None:
    """The backend that holds ``writer``'s lock, if any."""
    async with engine.connect() as conn:
        held = await conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :cls AND objid = :writer AND objsubid = 2"
            ),
            {"cls": LOCK_CLASS, "writer": writer},
        )
        return held.scalar_one_or_none()


async def _until_taken_again(engine: AsyncEngine, writer: int, before: int | None) -> None:
    """Until another backend than ``before`` (cut) holds the lock: lost, then taken again."""
    assert before is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEASE_BACK_S
    while (now := await _lock_holder(engine, writer)) in (None, before):
        assert loop.time() < deadline, f"writer {writer}'s lock not taken again: {now}"
        await asyncio.sleep(0.2)


async def test_a_pooled_connection_the_server_closed_is_replaced(own_stack: EmbeddedStack) -> None:
    """Both ways the engine runs statements, asyncpg's own (the hot ones) and SQLAlchemy's,
    get a working connection from a pool whose connections the server has all closed."""
    engine, observer = create_engine(own_stack.settings()), create_engine(own_stack.settings())
    try:
        async with driver_connection(engine) as driver, engine.connect() as conn:
            await driver.fetchval("SELECT 1")  # two connections now sit in the pool
            await conn.execute(text("SELECT 1"))
            pooled = [driver, await driver_of(conn)]
        await _cut_every_connection_but_this(observer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not all(each.is_closed() for each in pooled):  # the driver sees the sockets close
            assert loop.time() < deadline, "the server's close never reached the driver"
            await asyncio.sleep(0.05)
        async with driver_connection(engine) as driver:
            assert await driver.fetchval("SELECT 1") == 1
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
        await observer.dispose()


def test_a_closed_or_restarting_server_is_a_fault_to_retry() -> None:
    assert is_transient(DriverInterfaceError("connection is closed"))
    assert is_transient(CannotConnectNowError("the database system is starting up"))
    assert is_transient(InvalidRequestError("This connection is closed"))
    assert not is_transient(DriverInterfaceError("cannot perform operation: another operation"))


def test_a_database_refusing_connections_or_short_of_resources_is_a_fault_to_retry() -> None:
    assert is_transient(ObjectNotInPrerequisiteStateError("not accepting connections"))
    assert is_transient(TooManyConnectionsError("too many clients"))
    assert is_transient(DiskFullError("could not extend file"))
    assert not is_transient(QueryCanceledError("canceling statement due to statement timeout"))
    assert is_transient(InternalClientError("cannot switch to state 12"))
    wrapped = DBAPIError("SELECT 1", {}, ObjectNotInPrerequisiteStateError("not accepting"))
    assert is_transient(wrapped)
    assert not is_transient(DBAPIError("SELECT 1", {}, DataError("invalid input syntax")))


def test_only_a_key_a_concurrent_writer_won_is_an_integrity_fault_to_retry() -> None:
    assert is_transient(UniqueViolationError("duplicate key value"))
    assert is_transient(ExclusionViolationError("conflicting key value"))
    assert not is_transient(CheckViolationError("violates check constraint"))
    assert not is_transient(NotNullViolationError("null value in column"))
    assert not is_transient(ForeignKeyViolationError("violates foreign key constraint"))


async def test_a_stop_while_the_database_is_frozen_ends_within_its_limit(
    own_stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while PostgreSQL does not answer at all (SIGSTOP: a hung server, a network cut
    without resets): the stop waits its limit, then the process ends with a clear error."""
    monkeypatch.setattr(serving, "STOP_LIMIT_S", 3.0)
    settings = own_stack.settings(group_prefix="frozen")
    ready = asyncio.Event()
    running = asyncio.create_task(serving.serve(settings, ["payment"], ready))
    await asyncio.wait_for(ready.wait(), timeout=60)
    frozen = own_stack.processes()["postgres"]
    for process in frozen:
        process.suspend()
    try:
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler takes it
        with pytest.raises(serving.StopCutShort, match="outboxes for the next start"):
            await asyncio.wait_for(running, timeout=30)
        assert time.monotonic() - signalled < 10
    finally:
        for process in frozen:
            process.resume()
