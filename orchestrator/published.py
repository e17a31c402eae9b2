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

from collections import defaultdict
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.envelope import H_ID
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings

CHUNK = 2_000
"""Records read per step backwards from a partition's end."""
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
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # the same as ops.records.read
        for topic, ids in wanted.items():
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                tp = TopicPartition(topic, partition)
                found |= await _scan(consumer, tp, ids - found, since_ms - CLOCK_MARGIN_MS)
    finally:
        await consumer.stop()
    return found


async def _scan(
    consumer: AIOKafkaConsumer, tp: TopicPartition, ids: set[str], since_ms: int
) -> set[str]:
    """The ``ids`` among ``tp``'s records, read backwards in chunks until one reaches back
    before ``since_ms`` (or the partition's start)."""
    consumer.assign([tp])
    begin = (await consumer.beginning_offsets([tp]))[tp]
    upper = (await consumer.end_offsets([tp]))[tp]
    found: set[str] = set()
    while upper > begin and not ids <= found:
        lower = max(begin, upper - CHUNK)
        consumer.seek(tp, lower)
        oldest_ms = None
        position = lower
        while position < upper:
            batch = (await consumer.getmany(tp, timeout_ms=1_000, max_records=CHUNK)).get(tp, [])
            if not batch:
                break
            for record in batch:
                if record.offset >= upper:
                    break
                stamp = record.timestamp
                oldest_ms = stamp if oldest_ms is None else min(oldest_ms, stamp)
                for name, value in record.headers or ():
                    if name == H_ID and value is not None:
                        found.add(value.decode(errors="replace"))
            position = batch[-1].offset + 1
        if oldest_ms is not None and oldest_ms < since_ms:
            break
        upper = lower
    return found & ids
