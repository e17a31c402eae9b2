"""FastStream wiring: batch subscribers that hand raw records to the runtimes, and the publisher."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from orchestrator.engine.outbox import OutboundMessage
from orchestrator.engine.records import RawRecord
from orchestrator.settings import Settings

BatchHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]

_BATCH_WAIT_MS = 1_000
"""How long one poll waits for a first record; it returns as soon as there is one."""


async def _raw_records(message: KafkaMessage) -> Sequence[RawRecord]:
    """Decoder that hands the records over undecoded: the runtimes validate each one
    themselves, so a poison record is dead-lettered instead of failing the whole batch."""
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
    """One consumer in ``group_id``; each batch is handled, then its offsets committed.

    ``NACK_ON_ERROR``: if the handler raises (its transaction rolled back), the consumer
    seeks back to the first record of the batch, so nothing is skipped.
    """

    async def consume(records: Any) -> None:
        """One parameter and no context: nothing for the dependency injector to resolve."""
        await handler(records)

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
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw_records,
        title=title,
        description=description,
    )
    subscriber(consume)
    next_batch = functools.partial(_next_batch, max_records=settings.consumer_max_batch)
    subscriber.get_msg = next_batch  # type: ignore[method-assign]


async def _next_batch(
    consumer: AIOKafkaConsumer, max_records: int
) -> tuple[ConsumerRecord[Any, Any], ...]:
    """The next batch, as soon as one record is there.

    Replaces FastStream's own, which sleeps as long again after a poll that found nothing:
    a record arriving then waited up to that long on every hop of a saga.
    """
    batches = await consumer.getmany(timeout_ms=_BATCH_WAIT_MS, max_records=max_records)
    return tuple(chain.from_iterable(batches.values()))


class OrchestraBroker(KafkaBroker):
    """A KafkaBroker whose subscribers join their groups at the same time.

    FastStream starts subscribers one after another, and each group join waits about half
    the session timeout; with one consumer per service that adds up at start-up.
    """

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


class BrokerPublisher:
    """Publishes outbox messages through the FastStream broker and waits for every ack."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        pending = [
            await self.broker.publish(
                m.payload,
                m.topic,
                key=m.key.encode("utf-8") if m.key is not None else None,
                headers=m.headers,
                no_confirm=True,
            )
            for m in messages
        ]
        await asyncio.gather(*pending)


def broker_logger(level: str) -> logging.Logger:
    """FastStream's own logger: per-message lines at DEBUG, the rest at the process level."""
    logger = logging.getLogger("orchestra.faststream")
    logger.setLevel(max(logging.WARNING, getattr(logging, level)))
    return logger
