"""Whether a participant has taken a command yet, as the broker tells it
(``orchestrator.engine.waiting``): its consumer group's committed offset on the command's
partition, against the first record stamped at or after the command was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orchestrator.engine.waiting import Awaiting
from orchestrator.errors import error_of
from orchestrator.kafka import admin_kwargs, client_kwargs, end_offsets
from orchestrator.publisher import partition_for
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

EARLY_MS = 50
"""Records are stamped by the clock the command's send time was read from (the database's,
as this process keeps it), a little later (after the commit); a timer reads the database's
own: looking from a little earlier, the command is at or after the offset found. A record
sent that little before the command may be found instead: if the participant consumed it
before it stopped, the step times out as it would have without the check."""
CHECK_S = 10.0
"""The longest the broker is asked for; past it the late steps time out as without it."""


class KafkaTakenCheck:
    """A participant has certainly not taken a command when its group has consumed the
    topic (it is deployed) but not yet up to the first record at the command's send time:
    the command is at that offset or after it. A group that never committed on the topic
    is not waited for: nothing says the participant will ever come."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def untaken(self, awaiting: Sequence[Awaiting]) -> set[UUID]:
        try:
            return await asyncio.wait_for(self._untaken(awaiting), CHECK_S)
        except Exception as exc:
            log.warning(
                "cannot tell whether participants took their commands; late steps time out",
                error=error_of(exc),
            )
            await self.close()
            return set()

    async def _untaken(self, awaiting: Sequence[Awaiting]) -> set[UUID]:
        consumer, admin = await self._clients()
        await consumer.topics()  # fresh metadata: partitions of every command topic
        where: dict[UUID, tuple[TopicPartition, str]] = {}
        topics_of: dict[str, set[TopicPartition]] = {}
        for a in awaiting:
            partitions = sorted(consumer.partitions_for_topic(a.topic) or ())
            if partitions:
                tp = TopicPartition(a.topic, partition_for(str(a.saga_id).encode(), partitions))
                group = f"{self.settings.group_prefix}.{a.participant}"
                where[a.saga_id] = (tp, group)
                topics_of.setdefault(group, set()).update(
                    TopicPartition(a.topic, p) for p in partitions
                )
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group, partitions_of_group in sorted(topics_of.items()):
            offsets = await admin.list_consumer_group_offsets(
                group, partitions=sorted(partitions_of_group)
            )
            committed[group] = {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}
        sent = {a.saga_id: a.sent_at for a in awaiting}
        asked = {
            tp: int(sent[saga].timestamp() * 1000) - EARLY_MS for saga, (tp, _) in where.items()
        }
        found = await consumer.offsets_for_times(asked) if asked else {}
        missing = [tp for tp, at in found.items() if at is None or at.timestamp < 0]
        ends = await end_offsets(consumer, missing) if missing else {}
        untaken: set[UUID] = set()
        for saga, (tp, group) in where.items():
            offsets = committed[group]
            if not any(known.topic == tp.topic for known in offsets):
                continue  # the participant never consumed its topic
            at = found.get(tp)
            first = ends[tp] if at is None or at.timestamp < 0 else at.offset
            if offsets.get(tp, 0) <= first:  # short of the command (or it is not out yet)
                untaken.add(saga)
        return untaken

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None or self._admin is None:
            consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(self.settings))
            admin = AIOKafkaAdminClient(**admin_kwargs(self.settings))
            self._consumer, self._admin = consumer, admin
            await consumer.start()
            await admin.start()
        return self._consumer, self._admin

    async def close(self) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
