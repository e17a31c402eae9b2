"""Publishing upstream records from the API, through the FastStream broker of its router."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from events.base import UpstreamRecord
from events.envelope import Envelope


class ApiPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def send(self, topic: str, record: UpstreamRecord, correlation_id: str | None) -> None:
        envelope = Envelope(
            type=record.event_type, source="orchestra/api", correlation_id=correlation_id
        )
        await self.broker.publish(
            record.model_dump_json().encode(),
            topic,
            key=record.record_key().encode(),
            headers=envelope.headers(),
        )
