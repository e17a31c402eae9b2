"""A batch that fails for a reason no retry cures is handled again record by record.

The record that then fails alone (a bug its content meets, a value no column takes) is
refused, that is dead-lettered with the error, and the other records go on: one bad
record neither stalls its partition nor holds back the records after it. Transient faults
still propagate, so the consumer fetches the batch again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from events.dlq import DeadLetterReason
from orchestrator import metrics
from orchestrator.engine.outbox import OutboxRelay, OutboxRow, write_outbox
from orchestrator.engine.records import RawRecord, dead_letter_message, record_letter
from orchestrator.engine.retry import is_transient, with_retries
from orchestrator.errors import error_of

log = structlog.get_logger(__name__)

Handle = Callable[[Sequence[RawRecord]], Awaitable[None]]


async def isolating(
    records: Sequence[RawRecord], handle: Handle, relay: OutboxRelay, what: str
) -> None:
    """``handle(records)``; on a lasting failure ``handle([record])`` for each, and one
    failing alone is refused through ``relay``'s outbox. ``handle`` must write nothing when
    it fails (one transaction, or one statement)."""
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
            await _refuse(relay, record, error_of(exc), what)
            log.error(
                "record failed; dead-lettered",
                what=what,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )


async def _refuse(relay: OutboxRelay, record: RawRecord, error: str, what: str) -> None:
    """The record's dead letter (``HANDLER_ERROR``, with the error) into the outbox, then out."""
    message = dead_letter_message(record_letter(record, DeadLetterReason.HANDLER_ERROR, error))

    async def tx() -> list[OutboxRow]:
        async with relay.engine.begin() as conn:
            return await write_outbox(conn, relay.table, [message])

    relay.publish_soon(await with_retries(tx, what=f"{what}: dead letter"))
    metrics.DEAD_LETTERS.labels(record.topic, DeadLetterReason.HANDLER_ERROR.value).inc()
