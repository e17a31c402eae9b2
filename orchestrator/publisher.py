"""The outbox's publisher: a producer of its own, straight on aiokafka.

Outbox rows already carry every header they need (the envelope), so FastStream's publish
path (a command per message, middlewares, a codec, a correlation id) would only add cost
to every message the engine sends.

Messages go into record batches the publisher builds itself, one open batch per partition,
not through ``send()``, which pays per message for a future, a metadata wait and an
accumulator entry. A batch handed to the producer stays open until the producer takes it
for a request (aiokafka's documented contract for open batches), so messages that come
meanwhile still join it, as they would with ``send()``. One future per batch tells the
callers when the broker acknowledged it.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner

from orchestrator.engine.clock import utc_now
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.errors import KafkaUnavailable, MessageTooLarge, error_of
from orchestrator.kafka import client_kwargs, max_request_size
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

_MAX_BATCH_BYTES = 512 * 1024
"""A record batch grows up to this; a larger message goes alone in its own batch. Below
Kafka's default ``message.max.bytes`` (1 MiB), so brokers accept every batch."""

_REFUSED_FOR_SIZE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


@dataclass
class _Partition:
    """The batches of one partition: the open one, and those not yet handed over."""

    open: Any = None
    acked: asyncio.Future[None] | None = None
    waiting: deque[tuple[Any, asyncio.Future[None]]] = field(default_factory=deque)
    handing: asyncio.Task[None] | None = None


class KafkaPublisher:
    """Publishes outbox messages and waits until the broker has every one (acks=all)."""

    def __init__(
        self, settings: Settings, client_id: str, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._clock = clock
        """What records are stamped with: the database's time where the process keeps it
        (``AlignedClock``), which is what the sweeper reads the topics back by."""
        self._options: dict[str, Any] = {
            **client_kwargs(settings),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": settings.kafka_idempotent_producer,
            "linger_ms": 0,
            "max_batch_size": _MAX_BATCH_BYTES,
            "max_request_size": max_request_size(settings),
        }
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._running = False
        """Between ``start`` and ``stop``: a producer renewed meanwhile (``_renew``) that could
        not connect is made again by the next publish."""

    async def start(self) -> None:
        """Connects; aiokafka's producer has to be made inside the running loop."""
        if self._producer is None:
            producer = AIOKafkaProducer(**self._options)
            try:
                await producer.start()
            except BaseException as exc:
                await producer.stop()
                if not isinstance(exc, KafkaError) or isinstance(exc, KafkaConnectionError):
                    raise  # no broker at all is said as such where it is caught
                refused = f"Kafka refused the publisher: {exc or type(exc).__name__}"
                if self._options["enable_idempotence"]:
                    refused += (
                        " (ORCHESTRA_KAFKA_IDEMPOTENT_PRODUCER=true: a broker without "
                        "idempotent producers refuses it)"
                    )
                raise KafkaUnavailable(refused) from None
            self._producer = producer
        self._running = True

    async def stop(self) -> None:
        self._running = False
        handing = [p.handing for p in self._partitions.values() if p.handing is not None]
        await asyncio.gather(*handing, return_exceptions=True)
        self._partitions.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Returns once the broker acknowledged every message; raises if one failed
        (MessageTooLarge if a batch was refused for its size)."""
        if self._producer is None and self._running:
            await self.start()
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the outbox publisher is not started")
        acks: set[asyncio.Future[None]] = set()
        partitions: dict[str, list[int]] = {}
        stamp = int(self._clock().timestamp() * 1000)
        for m in messages:
            if m.topic not in partitions:
                partitions[m.topic] = await self._partitions_of(producer, m.topic)
            key = m.key.encode() if m.key is not None else None
            partition = partition_for(key, partitions[m.topic])
            acks.add(self._append(producer, m, key, partition, stamp))
        try:
            await asyncio.gather(*acks)
        except _REFUSED_FOR_SIZE as exc:
            if self._options["enable_idempotence"]:
                await self._renew(producer)
            raise MessageTooLarge(error_of(exc)) from exc

    async def _renew(self, producer: AIOKafkaProducer) -> None:
        """A new producer (a new producer id) after a batch refused for its size: an
        idempotent producer counted the refused batch's sequence numbers, and the broker,
        which did not, would refuse every later batch of that partition as out of order."""
        current, self._producer = self._producer, None
        if current is None or current is not producer:
            self._producer = current
            return  # renewed already by another publish
        handing = [p.handing for p in self._partitions.values() if p.handing is not None]
        await asyncio.gather(*handing, return_exceptions=True)
        self._partitions.clear()
        await current.stop()
        if not self._running:
            return  # stopped meanwhile
        try:
            await self.start()
        except (KafkaError, KafkaUnavailable, OSError) as exc:
            log.warning("outbox producer not renewed; the next publish tries", error=error_of(exc))

    def _append(
        self,
        producer: AIOKafkaProducer,
        m: OutboundMessage,
        key: bytes | None,
        partition: int,
        stamp: int,
    ) -> asyncio.Future[None]:
        state = self._partitions.setdefault((m.topic, partition), _Partition())
        headers = [(name, value.encode()) for name, value in m.headers.items()]
        if (
            state.open is not None
            and state.acked is not None
            and state.open.append(key=key, value=m.payload, timestamp=stamp, headers=headers)
            is not None
        ):
            return state.acked
        batch = producer.create_batch()
        batch.append(key=key, value=m.payload, timestamp=stamp, headers=headers)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.open, state.acked = batch, acked
        state.waiting.append((batch, acked))
        if state.handing is None or state.handing.done():
            state.handing = asyncio.create_task(self._hand_over(producer, m.topic, partition))
        return acked

    async def _hand_over(self, producer: AIOKafkaProducer, topic: str, partition: int) -> None:
        """Hands the partition's batches to the producer in order; each waits until the
        previous one has left for the broker."""
        state = self._partitions[(topic, partition)]
        while state.waiting:
            batch, acked = state.waiting.popleft()
            try:
                sent = await producer.send_batch(batch, topic, partition=partition)
            except Exception as exc:
                batch.close()
                if state.open is batch:
                    state.open = state.acked = None
                if not acked.done():
                    acked.set_exception(exc)
                continue
            sent.add_done_callback(functools.partial(_settle, acked))
            if self._options["enable_idempotence"] and state.open is batch:
                # aiokafka numbers an idempotent batch's records when it drains it, before it
                # closes it: a record joining in between would go out unnumbered, and the
                # broker would refuse every later batch of the partition as out of order
                state.open = state.acked = None

    async def _partitions_of(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        known = producer.client.cluster.partitions_for_topic(topic)
        return sorted(known if known else await producer.partitions_for(topic))


_PARTITIONER = DefaultPartitioner()


def partition_for(key: bytes | None, partitions: list[int]) -> int:
    """The partition the producer itself would pick: murmur2 of the key, as Java's; a
    message without a key goes to any one."""
    if len(partitions) == 1:
        return partitions[0]
    return int(_PARTITIONER(key, partitions, partitions))


def _settle(acked: asyncio.Future[None], sent: asyncio.Future[Any]) -> None:
    if acked.done():
        return
    error = None if sent.cancelled() else sent.exception()
    if error is None:
        acked.set_result(None)
    else:
        acked.set_exception(error)
