"""Which outbox messages the broker already holds, read back before the sweeper publishes again.

The relay deletes an outbox row a few milliseconds after the broker acknowledged it; a crash
in between leaves the row for the sweeper. Publishing it again would put a second copy on the
topic: a second terminal record on a status topic, where the contract promises exactly one.
So the sweeper first reads back the partitions the rows' keys go to (as the publisher picks
them), from a little before the oldest row was written (a lookup by time, so only that
stretch is read), and leaves out the rows whose ``ce_id`` is there. Only the sweeper pays for
this, and only when it finds rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from events.envelope import H_ID
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.errors import KafkaUnavailable
from orchestrator.ops.records import Selection, partitions, scan
from orchestrator.publisher import partition_for
from orchestrator.settings import Settings

CLOCK_MARGIN = timedelta(seconds=15)
"""Read this much further back than the oldest row. A record is stamped after its row was
written, never before, with the database's time as its process last measured it
(``AlignedClock``, every few seconds): the margin covers what that measure missed."""
READ_TIMEOUT_S = 20.0
"""A read-back not done by then fails the sweep; the rows wait for the next one."""


async def published_ids(
    settings: Settings, messages: Sequence[OutboundMessage], since: datetime
) -> set[str]:
    """The ``ce_id`` of each of ``messages`` found on its topic among the records stamped
    at ``since`` or later (less the clock margin)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    keys: dict[str, set[str | None]] = defaultdict(set)
    for message in messages:
        if H_ID in message.headers:
            wanted[message.topic].add(message.headers[H_ID])
            keys[message.topic].add(message.key)
    found: set[str] = set()
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            for topic, ids in wanted.items():
                chosen = await _partitions_of(settings, topic, keys[topic])
                selection = Selection(partitions=chosen, since=since - CLOCK_MARGIN)
                async with contextlib.aclosing(
                    scan(settings, topic, selection, complete=True)
                ) as records:
                    async for record in records:
                        if record.headers.get(H_ID) in ids:
                            found.add(record.headers[H_ID])
    except TimeoutError:
        raise KafkaUnavailable(f"outbox rows not read back within {READ_TIMEOUT_S:.0f} s") from None
    return found


async def _partitions_of(settings: Settings, topic: str, keys: set[str | None]) -> tuple[int, ...]:
    """The partitions the publisher sends these keys to (all of them, for a message without)."""
    known = sorted(await partitions(settings, topic))
    if None in keys:
        return tuple(known)
    return tuple(sorted({partition_for(key.encode(), known) for key in keys if key is not None}))
