"""FastStream wiring: batch subscribers that hand raw records to the runtimes, and the publisher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from orchestrator.engine.outbox import OutboundMessage
from orchestrator.engine.records import RawRecord
from orchestrator.settings import Settings

BatchHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]


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

    broker.subscriber(
        *topics,
        batch=True,
        group_id=group_id,
        max_records=settings.consumer_max_batch,
        batch_timeout_ms=20,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw_records,
        title=title,
        description=description,
    )(consume)


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
