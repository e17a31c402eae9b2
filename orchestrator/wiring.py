"""FastStream wiring: batch subscribers that hand raw records to the runtimes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from orchestrator.engine.isolation import error_of
from orchestrator.engine.records import RawRecord
from orchestrator.fetch_pacing import FetchPacing
from orchestrator.offsets import OffsetCommitter
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

BatchHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]

_BATCH_WAIT_MS = 1_000
"""How long one poll waits for a first record; it returns as soon as there is one."""

_FAILED_BATCH_PAUSE_S = 0.5
"""Pause after a batch whose handler failed (past its own retries), before it is read again."""


async def _message(message: KafkaMessage) -> KafkaMessage:
    """Decoder that leaves the records undecoded: the runtimes validate each one themselves,
    so a poison record is dead-lettered instead of failing the whole batch."""
    return message


def _records(message: KafkaMessage) -> Sequence[RawRecord]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple | list) else (raw,)


def subscribe_batches(
    broker: KafkaBroker,
    topics: Sequence[str],
    group_id: str,
    settings: Settings,
    handler: BatchHandler,
    title: str,
    description: str,
) -> None:
    """One consumer in ``group_id``; each batch is handled, then its offsets committed in
    the background (see ``offsets``).

    If the handler raises (its transaction rolled back), the consumer seeks back to the
    first record of the batch, so nothing is skipped.
    """
    committer = OffsetCommitter(group_id, settings.consumer_commit_interval_ms / 1000)
    if isinstance(broker, OrchestraBroker):
        broker.committers.append(committer)
    batches = _Batches(handler, committer)

    async def consume(message: Any) -> None:
        """FastStream's path (its test client): one parameter and no context, so nothing
        for the dependency injector to resolve."""
        records = _records(message)
        try:
            await handler(records)
        except Exception:
            await message.nack()
            raise
        if isinstance(message.consumer, AIOKafkaConsumer):
            await batches.commit(message.consumer)

    subscriber = broker.subscriber(
        *topics,
        batch=True,
        group_id=group_id,
        max_records=settings.consumer_max_batch,
        batch_timeout_ms=_BATCH_WAIT_MS,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        ack_policy=AckPolicy.MANUAL,
        decoder=_message,
        title=title,
        description=description,
    )
    subscriber(consume)
    pacing = FetchPacing.configured(settings)
    hold = not settings.consumer_prefetch
    subscriber.get_msg = functools.partial(  # type: ignore[method-assign]
        _next_batch, max_records=settings.consumer_max_batch, pacing=pacing, hold=hold
    )

    async def consume_one(records: tuple[ConsumerRecord[Any, Any], ...]) -> None:
        """The consume loop's path: the records go straight to the handler, without
        FastStream's per-message stages (context, middlewares, parser, filters), which
        cost as much as the handler itself on a small batch."""
        if not subscriber.running:
            return
        with subscriber.lock:
            await batches.handle(subscriber.consumer, records)
        if hold and subscriber.consumer is not None:
            _release(subscriber.consumer)

    subscriber.consume_one = consume_one  # type: ignore[method-assign,assignment]


class _Batches:
    """Handles a consumer's batches: commit the positions after a handled one, rewind to
    the batch's first records after a failed one."""

    def __init__(self, handler: BatchHandler, committer: OffsetCommitter) -> None:
        self.handler = handler
        self.committer = committer

    async def handle(
        self, consumer: AIOKafkaConsumer | None, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        try:
            await self.handler(records)
        except Exception as exc:
            log.error(
                "batch failed; its records will be consumed again",
                group=self.committer.group_id,
                records=len(records),
                error=error_of(exc),
                exc_info=True,
            )
            if consumer is not None:
                _rewind(consumer, records)
            await asyncio.sleep(_FAILED_BATCH_PAUSE_S)
            return
        if consumer is not None:
            await self.commit(consumer)

    async def commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
        except KafkaError as exc:  # revoked meanwhile: the next owner gets the records again
            log.info("offsets not committed", group=self.committer.group_id, error=str(exc)[:200])
            return
        committed = self.committer.handled(consumer, positions)
        if self.committer.closing:
            await committed


def _rewind(consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
    """Seek each partition of the batch back to its earliest record."""
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        if record.offset < earliest.get(partition, record.offset + 1):
            earliest[partition] = record.offset
    for partition, offset in earliest.items():
        consumer.seek(partition, offset)


async def _next_batch(
    consumer: AIOKafkaConsumer, max_records: int, pacing: FetchPacing | None, hold: bool
) -> tuple[ConsumerRecord[Any, Any], ...]:
    """The next batch, as soon as one record is there; with ``hold``, the consumer fetches
    nothing more until the batch is handled (``_release``).

    Replaces FastStream's own, which sleeps as long again after a poll that found nothing:
    a record arriving then waited up to that long on every hop of a saga.
    """
    batches = await consumer.getmany(timeout_ms=_BATCH_WAIT_MS, max_records=max_records)
    records = tuple(chain.from_iterable(batches.values()))
    if hold and records:
        _hold(consumer)
    if pacing is not None:
        pacing.after(consumer, len(records))
    return records


def _hold(consumer: AIOKafkaConsumer) -> None:
    """No fetch while a batch is handled.

    aiokafka fetches again as soon as it hands out a batch. Under load the broker answers
    that fetch at once with the few records that arrived in the meantime, so every large
    batch is followed by a small one, which costs a batch's fixed price (a database round
    trip) while the records that came after it wait for the next turn. Paused, the consumer
    fetches after the handler, and that fetch takes everything that arrived during it.
    """
    consumer.pause(*consumer.assignment())


def _release(consumer: AIOKafkaConsumer) -> None:
    paused = consumer.paused()
    if paused:
        consumer.resume(*paused)


class OrchestraBroker(KafkaBroker):
    """A KafkaBroker whose subscribers join their groups at the same time, and whose
    consumers commit their offsets in the background.

    FastStream starts subscribers one after another, and each group join waits about half
    the session timeout; with one consumer per service that adds up at start-up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committers: list[OffsetCommitter] = []

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        """Offsets of handled batches are committed before the consumers leave."""
        for committer in self.committers:
            await committer.flush()
        await super().stop(*args, **kwargs)


def broker_logger(level: str) -> logging.Logger:
    """FastStream's own logger: per-message lines at DEBUG, the rest at the process level."""
    logger = logging.getLogger("orchestra.faststream")
    logger.setLevel(max(logging.WARNING, getattr(logging, level)))
    return logger
