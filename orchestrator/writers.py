"""Which process wrote an outbox row, and whether that process is still alive to publish it.

Every connection of a services process carries the process's writer id (the PostgreSQL
setting ``orchestra.writer``), and every outbox row records it (the ``writer`` column's
default). The process holds a session advisory lock on that id for as long as it runs;
PostgreSQL drops the lock when the process's connection goes: at once after a crash or a
kill -9, only once its TCP keepalive gives up after a lost host (whose rows then wait for the
sweepers' fallback age). A sweeper takes the rows of its own process and of writers whose
lock is gone, and leaves a live process's rows to that process, which may be publishing them
right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import first_line
from orchestrator.engine.clock import AlignedClock
from orchestrator.errors import OrchestraError

log = structlog.get_logger(__name__)

LOCK_CLASS = 0x4F524357
"""The first key of every writer's advisory lock (``ORCW``); the second is the writer id."""

LIVE_WRITERS = (
    "ARRAY(SELECT objid::bigint::integer FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = {LOCK_CLASS} AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)
"""The ids of the writers whose process holds its lock on this database now."""

CHECK_INTERVAL_S = 5.0


class WriterTaken(OrchestraError):
    """Another live process holds this writer id."""


def new_writer_id() -> int:
    return secrets.randbelow(2**31 - 2) + 1


class WriterLease:
    """The advisory lock that tells other processes this writer is alive, on a connection
    of its own for the process's lifetime."""

    def __init__(self, engine: AsyncEngine, writer: int, clock: AlignedClock | None = None) -> None:
        self.engine = engine
        self.writer = writer
        self.clock = clock
        """Set right at every check of the lock's connection, if given."""
        self._conn: AsyncConnection | None = None

    async def hold(self) -> None:
        conn = await self.engine.connect()
        try:
            taken = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:cls, :writer)"),
                {"cls": LOCK_CLASS, "writer": self.writer},
            )
            await conn.commit()
        except BaseException:  # the lock may have been granted: this connection goes
            await _discard(conn)
            raise
        if not taken:
            await conn.close()
            raise WriterTaken(f"writer id {self.writer} is held by another process; start again")
        self._conn = conn

    async def keep(self, stop: asyncio.Event) -> None:
        """Check the lock's connection every ``CHECK_INTERVAL_S``; take the lock again on a new
        connection when it broke (meanwhile other sweepers may take this process's rows, and
        read them back before they publish)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=CHECK_INTERVAL_S)
            if stop.is_set():
                return
            try:
                await self._check()
            except Exception as exc:
                log.warning("writer lock lost; taking it again", error=first_line(exc))
                await self.release()
                with contextlib.suppress(Exception):
                    await self.hold()

    async def _check(self) -> None:
        if self._conn is None:
            await self.hold()
            return
        if self.clock is None:
            await self._conn.execute(text("SELECT 1"))
        else:
            await self.clock.align(self._conn)
        await self._conn.commit()

    async def release(self) -> None:
        """Unlock (the connection goes back to the pool) or, on a broken one, close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(
                text("SELECT pg_advisory_unlock(:cls, :writer)"),
                {"cls": LOCK_CLASS, "writer": self.writer},
            )
            await conn.commit()
            await conn.close()
        except Exception:
            await _discard(conn)
        except BaseException:
            await _discard(conn)
            raise


async def _discard(conn: AsyncConnection) -> None:
    """Close the connection for good, not back into the pool: the session, and any lock it
    holds, ends with it."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()
