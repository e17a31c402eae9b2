"""A small upstream client: publish contract records, read outcome topics (demo, tests, bench)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import Context
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import BaseModel

from events.base import UpstreamRecord
from events.envelope import Envelope
from orchestrator.errors import KafkaUnavailable
from orchestrator.kafka import broker_security, ensure_topics
from orchestrator.settings import Settings
from orchestrator.wiring import broker_logger


class OutcomeRecord(BaseModel):
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]


async def _headers_left_as_bytes(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    parse: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[Any]],
) -> Any:
    """FastStream's batch parser, without the header values it decodes strictly (one not
    UTF-8 raised, and its batch was lost): ``collect`` reads them from the records."""
    message = await parse(tuple(dataclasses.replace(r, headers=[]) for r in records))
    message.raw_message = records
    return message


class UpstreamClient:
    """Publishes like an upstream system; collects every record of the watched topics."""

    def __init__(
        self, settings: Settings, watch: Sequence[str] = (), publishes: Sequence[str] = ()
    ) -> None:
        """``publishes``: topics made (and Kafka reached) before the broker starts, so that an
        unreachable Kafka is one error, with no producer left half started."""
        self.broker = KafkaBroker(
            settings.bootstrap_servers,
            security=broker_security(settings),
            client_id="orchestra-client",
            logger=broker_logger(settings.log_level),
            log_level=10,
        )
        self.settings = settings
        self.watch = tuple(watch)
        self.publishes = tuple(publishes)
        self._known_topics: set[str] = set()
        self.received: asyncio.Queue[OutcomeRecord] = asyncio.Queue()
        if watch:

            async def collect(body: Any, message: KafkaMessage = Context("message")) -> None:
                raw = message.raw_message
                for record in raw if isinstance(raw, tuple | list) else (raw,):
                    self.received.put_nowait(
                        OutcomeRecord(
                            topic=record.topic,
                            key=record.key.decode("utf-8", "replace") if record.key else None,
                            value=record.value or b"",
                            headers={
                                k: v.decode("utf-8", "replace")
                                for k, v in record.headers
                                if v is not None
                            },
                        )
                    )

            async def raw(_: Any) -> None:
                return None

            self.broker.subscriber(
                *watch,
                batch=True,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
                decoder=raw,
                parser=_headers_left_as_bytes,
                include_in_schema=False,
            )(collect)

    async def __aenter__(self) -> UpstreamClient:
        await self._ensure([*self.watch, *self.publishes])
        try:
            await self.broker.start()
        except (KafkaError, OSError) as exc:
            await self.broker.stop()
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: "
                f"{exc or type(exc).__name__}"
            ) from None
        return self

    async def _ensure(self, names: Sequence[str]) -> None:
        """Create topics explicitly before first use (an auto-created one gets other partitions)."""
        missing = [name for name in names if name not in self._known_topics]
        if missing:
            await ensure_topics(self.settings, missing)
            self._known_topics.update(missing)

    async def __aexit__(self, *_: object) -> None:
        await self.broker.stop()

    async def send(self, topic: str, record: UpstreamRecord, with_headers: bool = True) -> str:
        """Publishes the record; returns its ``ce_id`` (empty without headers)."""
        envelope = Envelope(type=record.event_type, source="orchestra/client")
        headers = envelope.headers() if with_headers else None
        await self._ensure([topic])
        await self.broker.publish(
            record.model_dump_json().encode(),
            topic,
            key=record.record_key().encode(),
            headers=headers,
        )
        return envelope.id if with_headers else ""

    async def send_raw(self, topic: str, key: str | None, value: bytes) -> None:
        await self._ensure([topic])
        await self.broker.publish(value, topic, key=key.encode() if key else None)
