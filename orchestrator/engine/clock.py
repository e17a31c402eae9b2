"""The time sagas are decided by: the database's, so that processes whose clocks disagree still
agree on when a step times out.

A step's deadline is written by the process that sent the command and compared by whichever
process's timer runs next; with each process's own clock, one whose clock ran ahead fired
every deadline early (a clock ten minutes fast cancelled every saga in flight). The timer
reads the database's time in its transaction (``align``); the other paths, which must not pay
a round trip per batch, use this machine's clock corrected by the offset last measured (by a
timer tick, or the writer lease's check every few seconds).

The records a process publishes are stamped by the same clock: the outbox sweeper reads a
topic back from a little before a row's ``created_at`` (the database's time), and would miss
a record stamped by a machine clock running behind it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = structlog.get_logger(__name__)

SKEW_WARNING = timedelta(seconds=1)
"""An offset from the database's clock worth an operator's look (NTP not running?)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlignedClock:
    """This machine's clock, set right by the database's at every ``align``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._warned = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    async def align(self, conn: AsyncConnection) -> datetime:
        """The database's time now, read in ``conn``'s transaction; the offset kept."""
        before = utc_now()
        database_now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        after = utc_now()
        self.offset = database_now - (before + (after - before) / 2)
        if abs(self.offset) > SKEW_WARNING and abs(self.offset - self._warned) > SKEW_WARNING:
            self._warned = self.offset
            log.warning(
                "this machine's clock is off the database's; sagas follow the database",
                offset_s=round(self.offset.total_seconds(), 3),
            )
        return database_now
