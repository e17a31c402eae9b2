"""Retrying a unit of work on transient infrastructure faults, with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from asyncpg.exceptions import ConnectionDoesNotExistError, InternalClientError
from asyncpg.exceptions import InterfaceError as DriverInterfaceError
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    InvalidRequestError,
    OperationalError,
)

from orchestrator.errors import ConcurrentUpdate, error_of

T = TypeVar("T")
log = structlog.get_logger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    ConcurrentUpdate,
    OperationalError,
    InterfaceError,
    ConnectionDoesNotExistError,
    InternalClientError,  # the driver's state lost with its connection (terminated mid-call)
    ConnectionError,
    TimeoutError,
    OSError,
)
CLOSED_CONNECTION = "connection is closed"
"""asyncpg's own error, with no class of its own, for a statement on a connection the server
closed (a restart, a failover, pg_terminate_backend), and SQLAlchemy's when even the pool's
fresh connections were closed: another connection cures it. asyncpg's other InterfaceErrors
are the client's misuse, which no retry cures."""
RETRYABLE_SQLSTATES = frozenset(
    {
        *("40001", "40P01", "55P03"),
        *("55000", "55006"),
        *("53100", "53300"),
        *("57P01", "57P02", "57P03", "57P05"),
    }
)
"""Serialization failure, deadlock, lock not available; the database not accepting
connections (``ALLOW_CONNECTIONS false``, a database being dropped or copied), an object in
use; disk full, too many connections; the server shutting down, crashed, starting up, an
idle session ended. Not a statement cancelled (a timeout a record may meet on every attempt)
nor memory short (a batch too large): handled record by record, a record that fails alone is
dead-lettered instead of stalling its partition."""
RETRYABLE_SQLSTATE_CLASSES = ("08", "58")
"""Connection exceptions; system errors (I/O)."""
RACE_SQLSTATES = frozenset({"23505", "23P01"})
"""A unique or exclusion key that a concurrent writer won: re-reading decides again. The
other integrity violations (a check, a NOT NULL, a foreign key) come back on every attempt,
so they are the statement's fault, which the rare path dead-letters instead of stalling the
partition on it."""


def is_transient(exc: BaseException) -> bool:
    """Faults that another attempt can cure: lost connections, lock conflicts, races.

    SQLAlchemy's errors wrap the driver's; the hot statements run on asyncpg directly
    (``db.driver_connection``) and raise its own, which carry the SQLSTATE themselves."""
    if isinstance(exc, DriverInterfaceError | InvalidRequestError) and (
        CLOSED_CONNECTION in str(exc).lower()
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    origin = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    if isinstance(sqlstate, str) and (
        sqlstate in RETRYABLE_SQLSTATES
        or sqlstate in RACE_SQLSTATES
        or sqlstate.startswith(RETRYABLE_SQLSTATE_CLASSES)
    ):
        return True
    return isinstance(exc, TRANSIENT) or isinstance(
        getattr(origin, "__cause__", None), InternalClientError
    )


async def with_retries(
    work: Callable[[], Awaitable[T]],
    attempts: int = 5,
    backoff_s: float = 0.05,
    backoff_max_s: float = 2.0,
    what: str = "unit of work",
) -> T:
    """Run ``work``; on a transient fault roll back (the caller's transaction) and try again.

    After the last attempt the exception propagates, so the consumer does not commit its
    offset and the records are delivered again: nothing is skipped.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            delay = min(backoff_max_s, backoff_s * 2 ** (attempt - 1))
            log.warning(
                "transient fault, retrying",
                what=what,
                attempt=attempt,
                delay_s=delay,
                error=error_of(exc),
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
