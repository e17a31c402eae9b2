"""Feeds: upstream topics that change a worker's state without starting a saga.

``store.stock-received`` and ``delivery.points-updated`` are applied here, one
transaction per batch; each record is applied once by its business key, and a record
that fails validation is dead-lettered with its reason, as is one that fails to apply
(``isolation``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.base import UpstreamRecord
from events.dlq import DeadLetter
from orchestrator import metrics
from orchestrator.engine.isolation import isolating
from orchestrator.engine.outbox import OutboxRelay, OutboxRow, write_outbox
from orchestrator.engine.records import (
    RawRecord,
    dead_letter_message,
    parse_record,
    report_dead_letters,
)
from orchestrator.engine.retry import with_retries

log = structlog.get_logger(__name__)

ApplyFeed = Callable[[AsyncConnection, Sequence[Any]], Awaitable[int]]
"""Applies valid records in order; returns how many took effect (the rest were repeats)."""


@dataclass(frozen=True)
class FeedSpec:
    topic: str
    record: type[UpstreamRecord]
    apply: ApplyFeed


class FeedRuntime:
    def __init__(
        self,
        owner: str,
        spec: FeedSpec,
        engine: AsyncEngine,
        relay: OutboxRelay,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.owner = owner
        self.spec = spec
        self.engine = engine
        self.relay = relay
        self.adapter: TypeAdapter[Any] = TypeAdapter(spec.record)
        self.max_message_bytes = max_message_bytes
        metrics.declare_dead_letters([spec.topic])

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        await isolating(records, self._handle, self.relay, f"{self.spec.topic} feed")

    async def _handle(self, records: Sequence[RawRecord]) -> None:
        rows = await with_retries(lambda: self._tx(records), what=f"{self.spec.topic} feed")
        self.relay.publish_soon(rows)

    async def _tx(self, records: Sequence[RawRecord]) -> list[OutboxRow]:
        letters: list[DeadLetter] = []
        bodies: list[UpstreamRecord] = []
        for record in records:
            parsed = parse_record(
                record,
                self.adapter,
                self.max_message_bytes,
                default_type=self.spec.record.event_type,
                require_envelope=False,
            )
            if isinstance(parsed, DeadLetter):
                letters.append(parsed)
            else:
                bodies.append(parsed.body)
        async with self.engine.begin() as conn:
            applied = await self.spec.apply(conn, bodies) if bodies else 0
            rows = await write_outbox(
                conn, self.relay.table, [dead_letter_message(letter) for letter in letters]
            )
        report_dead_letters(letters)
        if applied < len(bodies):
            log.info("repeated records ignored", topic=self.spec.topic, count=len(bodies) - applied)
        return rows
