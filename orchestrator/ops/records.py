"""Reading a selection of a topic's records, and publishing copies of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from orchestrator.errors import KafkaUnavailable, OrchestraError
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings

IDLE_S = 2.0


class UnknownTopic(OrchestraError):
    """The topic does not exist on the broker."""


@dataclass(frozen=True)
class Selection:
    """Which records: partitions, an offset range (inclusive), a time range (by each
    record's own timestamp), a key. Everything unset selects everything."""

    partitions: tuple[int, ...] = ()
    from_offset: int | None = None
    to_offset: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    key: str | None = None

    def wants(self, record: Record) -> bool:
        if self.to_offset is not None and record.offset > self.to_offset:
            return False
        if self.since is not None and record.timestamp_ms < self.since.timestamp() * 1000:
            return False
        if self.until is not None and record.timestamp_ms > self.until.timestamp() * 1000:
            return False
        return self.key is None or record.key == self.key


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: bytes
    headers: dict[str, str]


async def read(settings: Settings, topic: str, selection: Selection) -> list[Record]:
    """Every selected record present when the read starts, in partition and offset order."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(settings))
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka: {exc or type(exc).__name__}") from None
    try:
        known = consumer.partitions_for_topic(topic)
        if known is None:
            await consumer._client.force_metadata_update()
            known = consumer.partitions_for_topic(topic)
        if not known:
            raise UnknownTopic(f"no topic {topic!r} on {settings.kafka_bootstrap_servers}")
        chosen = sorted(p for p in known if not selection.partitions or p in selection.partitions)
        partitions = [TopicPartition(topic, p) for p in chosen]
        if not partitions:
            return []
        consumer.assign(partitions)
        for tp in partitions:
            if selection.from_offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, selection.from_offset)
        ends = await consumer.end_offsets(partitions)
        found: list[Record] = []
        idle_since = time.monotonic()
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=300)
            if not batch:
                if time.monotonic() - idle_since > IDLE_S:
                    break  # nothing more arrives: the broker's end offset was optimistic
                continue
            idle_since = time.monotonic()
            for records in batch.values():
                for raw in records:
                    if raw.offset >= ends[TopicPartition(raw.topic, raw.partition)]:
                        continue
                    record = Record(
                        raw.topic,
                        raw.partition,
                        raw.offset,
                        raw.timestamp,
                        raw.key.decode("utf-8", "replace") if raw.key is not None else None,
                        raw.value or b"",
                        {k: v.decode("utf-8", "replace") for k, v in raw.headers if v is not None},
                    )
                    if selection.wants(record):
                        found.append(record)
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def publish(
    settings: Settings,
    records: Sequence[Record],
    target: Callable[[Record], str],
    headers: Callable[[Record], dict[str, str]],
    progress: Callable[[int], None] | None = None,
) -> int:
    producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka: {exc or type(exc).__name__}") from None
    try:
        pending = []
        for n, record in enumerate(records, start=1):
            pending.append(
                await producer.send(
                    target(record),
                    record.value,
                    key=record.key.encode() if record.key is not None else None,
                    headers=[(k, v.encode()) for k, v in headers(record).items()],
                )
            )
            if progress is not None:
                progress(n)
        await asyncio.gather(*pending)
        return len(pending)
    finally:
        await producer.stop()
