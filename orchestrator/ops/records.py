"""Reading a selection of a topic's records, and publishing copies of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from orchestrator.errors import KafkaUnavailable, OrchestraError
from orchestrator.kafka import client_kwargs, end_offsets, max_request_size
from orchestrator.settings import Settings

IDLE_S = 2.0
FETCH_WAIT_MS = 50  # an offset lookup waits for the fetcher's wait: keep it short
LOOKUP_EARLY = timedelta(minutes=1)
"""A read from a time starts where the broker's time index puts this much earlier: the index
may go by the broker's clock (Tansu: the time it appended a record), the selection by each
record's own timestamp, set by its producer's clock."""


class UnknownPartition(OrchestraError):
    """The topic has no such partition."""


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


Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Record:
    """A record as read, its key and header values byte for byte; ``key`` and ``headers``
    are their readable forms (what is not UTF-8 shown as U+FFFD), for display and selection."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    raw_key: bytes | None
    value: bytes
    raw_headers: Headers

    @property
    def key(self) -> str | None:
        return None if self.raw_key is None else self.raw_key.decode("utf-8", "replace")

    @cached_property
    def headers(self) -> dict[str, str]:
        return {k: v.decode("utf-8", "replace") for k, v in self.raw_headers if v is not None}


class IncompleteRead(KafkaUnavailable):
    """A partition stopped answering before its end was read."""


async def read(settings: Settings, topic: str, selection: Selection) -> list[Record]:
    """Every selected record present when the read starts, in partition and offset order."""
    found = [record async for record in scan(settings, topic, selection)]
    return sorted(found, key=lambda r: (r.partition, r.offset))


async def scan(
    settings: Settings, topic: str, selection: Selection, *, complete: bool = False
) -> AsyncGenerator[Record, None]:
    """The selected records present when the scan starts, each partition's in offset order.

    Each partition is read from its first wanted offset up to its end (``kafka.end_offsets``)
    or the last wanted offset. A partition the broker lists as empty is known at once, without
    waiting out a fetch. A partition read to its end is paused. When no record comes for
    ``IDLE_S`` the scan ends (a broker's end offset may be optimistic) or, with ``complete``,
    raises IncompleteRead.
    """
    async with _consumer(settings) as consumer:
        try:
            todo = await _start_offsets(consumer, settings, topic, selection, complete)
            idle_since = time.monotonic()
            while todo:
                batch = await consumer.getmany(timeout_ms=300)
                progressed = False
                for tp, records in batch.items():
                    for raw in records:
                        if raw.offset >= todo.get(tp, -1):
                            continue
                        progressed = True
                        record = _record(raw)
                        if selection.wants(record):
                            yield record
                for tp, end in list(todo.items()):
                    if await consumer.position(tp) >= end:
                        consumer.pause(tp)
                        del todo[tp]
                if progressed:
                    idle_since = time.monotonic()
                elif todo and time.monotonic() - idle_since > IDLE_S:
                    if complete:
                        unread = ", ".join(str(tp.partition) for tp in sorted(todo))
                        raise IncompleteRead(f"{topic}: partition {unread} not read to its end")
                    break  # nothing more arrives: the broker's end offset was optimistic
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot read {topic}: {exc or type(exc).__name__}") from None


async def _start_offsets(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    topic: str,
    selection: Selection,
    complete: bool = False,
) -> dict[TopicPartition, int]:
    """Assigns the partitions there is something to read in, each at its first wanted offset;
    returns the offset each is read up to (exclusive). With ``complete``, a partition whose
    end cannot be settled is an error (``kafka.end_offsets``)."""
    known = await _partitions(consumer, settings, topic)
    missing = sorted(set(selection.partitions) - known)
    if missing:
        raise UnknownPartition(
            f"{topic} has no partition {', '.join(map(str, missing))}; "
            f"its partitions are {describe(known)}"
        )
    chosen = sorted(p for p in known if not selection.partitions or p in selection.partitions)
    partitions = [TopicPartition(topic, p) for p in chosen]
    starts = await consumer.beginning_offsets(partitions)
    listed = await consumer.end_offsets(partitions)
    filled = [tp for tp in partitions if listed[tp] > starts[tp]]
    ends = await end_offsets(consumer, filled, strict=complete, listed=listed) if filled else {}
    first = {tp: max(starts[tp], selection.from_offset or 0) for tp in filled}
    if selection.since is not None:
        at = await _offsets_at(consumer, filled, selection.since, ends)
        first = {tp: max(first[tp], at[tp]) for tp in filled}
    last = selection.to_offset
    todo = {
        tp: end if last is None else min(end, last + 1)
        for tp, end in ends.items()
        if last is None or first[tp] <= last
    }
    consumer.assign(list(todo))
    for tp in todo:
        consumer.seek(tp, first[tp])
    return todo


def _record(raw: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        raw.topic,
        raw.partition,
        raw.offset,
        raw.timestamp,
        raw.key,
        raw.value or b"",
        tuple((k, None if v is None else bytes(v)) for k, v in raw.headers),
    )


async def _offsets_at(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    since: datetime,
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Each partition's first offset stamped at ``since`` (less ``LOOKUP_EARLY``) or later,
    its end when none is: a read from a time need not walk the partition from its start."""
    early_ms = int(LOOKUP_EARLY.total_seconds() * 1000)
    at_ms = max(0, int(since.timestamp() * 1000) - early_ms)
    found = await consumer.offsets_for_times(dict.fromkeys(partitions, at_ms))
    return {
        # a broker without the record answers None (Kafka) or a timestamp of -1 (Tansu)
        tp: ends[tp] if at is None or at.timestamp < 0 else at.offset
        for tp, at in found.items()
    }


async def partitions(settings: Settings, topic: str) -> set[int]:
    """The topic's partitions; UnknownTopic when there is no such topic."""
    async with _consumer(settings) as consumer:
        return await _partitions(consumer, settings, topic)


def describe(numbers: set[int]) -> str:
    """``0-7``, or ``0, 2, 5`` when not contiguous."""
    ordered = sorted(numbers)
    if len(ordered) > 2 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered))


@contextlib.asynccontextmanager
async def _consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS, **client_kwargs(settings)
    )
    try:
        await consumer.start()
    except BaseException as exc:  # a timeout's cancel too: the consumer is closed either way
        await consumer.stop()
        if isinstance(exc, KafkaConnectionError | KafkaError | OSError):
            raise KafkaUnavailable(f"cannot reach Kafka: {exc or type(exc).__name__}") from None
        raise
    try:
        yield consumer
    finally:
        # let the consumer's background task start: stopping it before it ran raises
        # CancelledError out of stop() (aiokafka 0.14)
        await asyncio.sleep(0)
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, settings: Settings, topic: str) -> set[int]:
    known = consumer.partitions_for_topic(topic)
    if known is None:
        await consumer._client.force_metadata_update()
        known = consumer.partitions_for_topic(topic)
    if not known:
        raise UnknownTopic(f"no topic {topic!r} on {settings.kafka_bootstrap_servers}")
    return set(known)


@dataclass(frozen=True)
class NotSent:
    """A record the producer or the broker refused; it stays where it was read."""

    record: Record
    reason: str


async def publish(
    settings: Settings,
    records: Sequence[Record],
    target: Callable[[Record], str],
    headers: Callable[[Record], Headers],
    progress: Callable[[int], None] | None = None,
) -> list[NotSent]:
    """Sends a copy of each record; one that cannot be sent (too large for the producer's
    ``max_request_size`` or refused by the broker) does not stop the others. Returns those
    not sent, in the order given."""
    producer = AIOKafkaProducer(
        acks="all", max_request_size=max_request_size(settings), **client_kwargs(settings)
    )
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka: {exc or type(exc).__name__}") from None
    try:
        refused: dict[int, NotSent] = {}
        pending: dict[int, asyncio.Future[object]] = {}
        limit = f"ORCHESTRA_MAX_MESSAGE_BYTES={settings.max_message_bytes}"
        for n, record in enumerate(records):
            if len(record.value) > settings.max_message_bytes:  # its consumer would refuse it
                refused[n] = NotSent(record, f"larger than {limit}")
                if progress is not None:
                    progress(n + 1)
                continue
            try:
                pending[n] = await producer.send(
                    target(record),
                    record.value,
                    key=record.raw_key,
                    headers=list(headers(record)),
                )
            except MessageSizeTooLargeError as exc:
                refused[n] = NotSent(record, f"{_reason(exc)} ({limit})")
            except KafkaError as exc:
                if _broker_gone(exc):
                    raise _unavailable(exc, n - len(refused)) from None
                refused[n] = NotSent(record, _reason(exc))
            if progress is not None:
                progress(n + 1)
        answers = await asyncio.gather(*pending.values(), return_exceptions=True)
        for n, answer in zip(pending, answers, strict=True):
            if isinstance(answer, KafkaError) and _broker_gone(answer):
                acknowledged = sum(not isinstance(a, BaseException) for a in answers)
                raise _unavailable(answer, acknowledged) from None
            if isinstance(answer, KafkaError):
                refused[n] = NotSent(records[n], _reason(answer))
            elif isinstance(answer, BaseException):
                raise answer
        return [refused[n] for n in sorted(refused)]
    finally:
        await producer.stop()


def _broker_gone(exc: KafkaError) -> bool:
    """An error of the connection, not of the record: the records after it would each wait
    out the request timeout and fail the same way."""
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)


def _unavailable(exc: KafkaError, sent: int) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"Kafka stopped answering ({_reason(exc)}) after {sent} records; the others may not "
        "have been sent: run the command again once Kafka is back (consumers are idempotent, "
        "so a record sent twice takes effect once)"
    )


def _reason(exc: KafkaError) -> str:
    """The error's own text; a broker's answer, which has none, with its description."""
    description = getattr(exc, "description", "")
    if exc.args or not description:
        return str(exc) or type(exc).__name__
    return f"{exc}: {description}"
