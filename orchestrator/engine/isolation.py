"""A batch that fails for a reason no retry cures is handled again record by record.

The record that then fails alone (a bug its content meets, a value no column takes) is
refused, that is dead-lettered with the error, and the other records go on: one bad
record neither stalls its partition nor holds back the records after it. Transient faults
still propagate, so the consumer fetches the batch again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from orchestrator.engine.records import RawRecord
from orchestrator.engine.retry import is_transient

log = structlog.get_logger(__name__)

Handle = Callable[[Sequence[RawRecord]], Awaitable[None]]
Refuse = Callable[[RawRecord, str], Awaitable[None]]


async def isolating(
    records: Sequence[RawRecord], handle: Handle, refuse: Refuse, what: str
) -> None:
    """``handle(records)``; on a lasting failure ``handle([record])`` for each, and
    ``refuse(record, error)`` for one failing alone. ``handle`` must write nothing when it
    fails (one transaction, or one statement)."""
    try:
        await handle(records)
        return
    except Exception as exc:
        if is_transient(exc):
            raise
        log.error("batch failed; handling its records one by one", what=what, error=error_of(exc))
    for record in records:
        try:
            await handle([record])
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error("record failed; dead-lettered", what=what, offset=record.offset)
            await refuse(record, error_of(exc))


def error_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
