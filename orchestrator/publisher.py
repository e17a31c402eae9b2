"""The outbox's publisher: a producer of its own, straight on aiokafka.

Outbox rows already carry every header they need (the envelope), so FastStream's publish
path (a command per message, middlewares, a codec, a correlation id) would only add cost
to every message the engine sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from orchestrator.engine.outbox import OutboundMessage
from orchestrator.errors import KafkaUnavailable
from orchestrator.kafka import client_kwargs
from orchestrator.settings import Settings


class KafkaPublisher:
    """Publishes outbox messages and waits until the broker has every one (acks=all)."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        self._options: dict[str, Any] = {
            **client_kwargs(settings),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": settings.kafka_idempotent_producer,
            "linger_ms": 1,
            "max_request_size": settings.max_message_bytes + 64_000,
        }
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connects; aiokafka's producer has to be made inside the running loop."""
        if self._producer is None:
            self._producer = AIOKafkaProducer(**self._options)
            await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the outbox publisher is not started")
        sent = [
            await producer.send(
                m.topic,
                m.payload,
                key=m.key.encode() if m.key is not None else None,
                headers=[(name, value.encode()) for name, value in m.headers.items()],
            )
            for m in messages
        ]
        await asyncio.gather(*sent)
