"""Which outbox messages a broker already holds, read back before the sweeper publishes again.

The relay deletes an outbox row a few milliseconds after the broker acknowledged it; a crash
in between (or a publish slower than the sweep age) leaves the row for the sweeper. Publishing
it again would put a second copy on the topic: a second terminal record on a status topic,
where the contract promises exactly one. So before it publishes, the sweeper reads the tail of
every partition the rows' topics have, back to a little before the oldest row was written,
and leaves out the rows whose ``ce_id`` is there. Only the sweeper pays this, and only when it
finds rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.envelope import H_ID
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.errors import KafkaUnavailable
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings

CHUNK = 2_000
"""Records read per step backwards from a partition's end."""
READ_TIMEOUT_S = 15.0
"""A chunk not read back by then fails the sweep (the rows wait for the next one)."""
CLOCK_MARGIN_MS = 60_000
"""Read this much further back than the oldest row: the broker's and PostgreSQL's clocks."""


async def published_ids(
    settings: Settings, messages: Sequence[OutboundMessage], since_ms: int
) -> set[str]:
    """The ``ce_id`` of each of ``messages`` found on its topic among the records stamped
    at ``since_ms`` (milliseconds since the epoch) or later."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for message in messages:
        if H_ID in message.headers:
            wanted[message.topic].add(message.headers[H_ID])
    found: set[str] = set()
    if not wanted:
        return found
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, fetch_max_wait_ms=100, **client_kwargs(settings)
    )
    await consumer.start()
    try:
        for topic, ids in wanted.items():
            # the client's own wait: a metadata answer may leave out a topic until asked for
            # it by name, and a topic not checked would be published again
            partitions = await consumer._client._wait_on_metadata(topic)
            for partition in sorted(partitions):
                tp = TopicPartition(topic, partition)
                found |= await _scan(consumer, tp, ids - found, since_ms - CLOCK_MARGIN_MS)
    finally:
        await consumer.stop()
    return found


async def _scan(
    consumer: AIOKafkaConsumer, tp: TopicPartition, ids: set[str], since_ms: int
) -> set[str]:
    """The ``ids`` among ``tp``'s records, read backwards in chunks until one reaches back
    before ``since_ms`` (or the partition's start). The tail is read to the last record
    there is: the end offset a broker reports may lag its records."""
    consumer.assign([tp])
    begin = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    found: set[str] = set()
    upper = max(begin, end - CHUNK)
    oldest_ms = await _read(consumer, tp, upper, None, end, found)
    while upper > begin and not ids <= found:
        if oldest_ms is not None and oldest_ms < since_ms:
            break
        lower = max(begin, upper - CHUNK)
        oldest_ms = await _read(consumer, tp, lower, upper, upper, found)
        upper = lower
    return found & ids


async def _read(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    start: int,
    stop: int | None,
    at_least: int,
    found: set[str],
) -> int | None:
    """Add the ``ce_id`` of ``tp``'s records from ``start`` to ``stop`` (or, with None, to
    the end: past ``at_least``, up to a fetch that finds nothing) to ``found``; returns the
    oldest timestamp read. A read that does not come back fails: never "not there"."""
    loop = asyncio.get_running_loop()
    consumer.seek(tp, start)
    position, oldest_ms = start, None
    deadline = loop.time() + READ_TIMEOUT_S
    while stop is None or position < stop:
        batch = (await consumer.getmany(tp, timeout_ms=300, max_records=CHUNK)).get(tp, [])
        if not batch:
            if stop is None and position >= at_least:
                break
            if loop.time() > deadline:
                raise KafkaUnavailable(
                    f"cannot read {tp.topic}[{tp.partition}] back from offset {position}"
                )
            continue
        for record in batch:
            if stop is not None and record.offset >= stop:
                break
            stamp = record.timestamp
            oldest_ms = stamp if oldest_ms is None else min(oldest_ms, stamp)
            for name, value in record.headers or ():
                if name == H_ID and value is not None:
                    found.add(value.decode(errors="replace"))
        position = batch[-1].offset + 1
    return oldest_ms
