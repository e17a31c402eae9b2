"""Whether a participant has taken a command yet, as the broker tells it
(``orchestrator.engine.waiting``): its consumer group's committed offset on the command's
partition, against the first record stamped at or after the command was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import SAGA_REPLIES
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
REPLY_SLACK = timedelta(seconds=2)
"""A reply that reaches the replies topic this long after its step fell due still counts: a
participant may answer as the deadline passes (its reply follows its offsets' commit)."""
SNAPSHOTS_KEPT = timedelta(minutes=10)


class KafkaTakenCheck:
    """A participant has certainly not taken a command when its group has consumed the
    topic (it is deployed) but not yet up to the first record at the command's send time:
    the command is at that offset or after it. A group that never committed on the topic
    is not waited for: nothing says the participant will ever come."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.replies_group = f"{settings.group_prefix}.orchestrator.replies"
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None
        self._reply_ends: list[tuple[datetime, dict[TopicPartition, int]]] = []
        """The replies topic's end offsets, as each tick with late steps found them."""

    async def replies_behind(self, late: Sequence[Awaiting], now: datetime) -> set[UUID]:
        """A late saga waits until the orchestrators' replies group has committed past the
        end its saga's reply partition had ``REPLY_SLACK`` after the step fell due (as a
        later tick found it): a reply sent in time is handled before its step times out."""
        try:
            return await asyncio.wait_for(self._replies_behind(late, now), CHECK_S)
        except Exception as exc:
            log.warning(
                "cannot tell whether every reply was handled; late steps time out",
                error=error_of(exc),
            )
            await self.close()
            return set()

    async def _replies_behind(self, late: Sequence[Awaiting], now: datetime) -> set[UUID]:
        consumer, admin = await self._clients()
        partitions = sorted(consumer.partitions_for_topic(SAGA_REPLIES) or ())
        if not partitions:
            return set()
        replies = [TopicPartition(SAGA_REPLIES, p) for p in partitions]
        offsets = await admin.list_consumer_group_offsets(self.replies_group, partitions=replies)
        handled = {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}
        self._reply_ends = [e for e in self._reply_ends if e[0] > now - SNAPSHOTS_KEPT]
        self._reply_ends.append((now, await end_offsets(await self._ends_client(), replies)))
        behind: set[UUID] = set()
        for a in late:
            tp = TopicPartition(SAGA_REPLIES, partition_for(str(a.saga_id).encode(), partitions))
            since = (a.due_at or now) + REPLY_SLACK
            ends = next((ends for at, ends in self._reply_ends if at >= since), None)
            if ends is None or handled.get(tp, 0) < ends.get(tp, 0):
                behind.add(a.saga_id)
        return behind

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
        where: dict[UUID, TopicPartition] = {}
        group_of: dict[str, str] = {}
        for a in awaiting:
            partitions = sorted(consumer.partitions_for_topic(a.topic) or ())
            if partitions:
                where[a.saga_id] = TopicPartition(
                    a.topic, partition_for(str(a.saga_id).encode(), partitions)
                )
                group_of[a.topic] = f"{self.settings.group_prefix}.{a.participant}"
        reached: dict[TopicPartition, int] = {}
        consumed: set[str] = set()
        for topic, group in sorted(group_of.items()):
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
            reached.update({tp: o.offset for tp, o in offsets.items() if o.offset >= 0})
            consumed.update(tp.topic for tp, o in offsets.items() if o.offset >= 0)
        asked: dict[TopicPartition, dict[UUID, int]] = {}
        for a in awaiting:
            tp = where.get(a.saga_id)
            if tp is not None and tp.topic in consumed:  # else never deployed: not waited for
                stamp = int(a.sent_at.timestamp() * 1000) - EARLY_MS
                asked.setdefault(tp, {})[a.saga_id] = stamp
        first_untaken = await self._first_untaken(consumer, reached, asked)
        return {
            saga
            for tp, earliest in first_untaken.items()
            for saga, stamp in asked[tp].items()
            if stamp >= earliest
        }

    async def _first_untaken(
        self,
        consumer: AIOKafkaConsumer,
        reached: dict[TopicPartition, int],
        asked: dict[TopicPartition, dict[UUID, int]],
    ) -> dict[TopicPartition, int]:
        """For each partition, the earliest send stamp whose command the participant's group
        has certainly not reached. A later command sits at a later offset, so the stamps of
        a partition are searched by halves, every partition's at once: one broker request a
        round, not one a saga (one request for all would judge every saga of a partition by
        one saga's stamp)."""
        stamps = {tp: sorted(set(sagas.values())) for tp, sagas in asked.items()}
        bounds = {tp: (0, len(found)) for tp, found in stamps.items()}
        while searching := {tp: (lo + hi) // 2 for tp, (lo, hi) in bounds.items() if lo < hi}:
            first = await self._first_offsets(
                consumer, {tp: stamps[tp][mid] for tp, mid in searching.items()}
            )
            for tp, mid in searching.items():
                lo, hi = bounds[tp]
                short = reached.get(tp, 0) <= first[tp]  # or the command is not out yet
                bounds[tp] = (lo, mid) if short else (mid + 1, hi)
        return {tp: stamps[tp][lo] for tp, (lo, _) in bounds.items() if lo < len(stamps[tp])}

    async def _first_offsets(
        self, consumer: AIOKafkaConsumer, stamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The offset of the first record stamped at or after each time (the end if none)."""
        found = await consumer.offsets_for_times(stamps)
        missing = [tp for tp, at in found.items() if at is None or at.timestamp < 0]
        ends = await end_offsets(await self._ends_client(), missing) if missing else {}
        return {
            tp: ends[tp] if at is None or at.timestamp < 0 else at.offset
            for tp, at in found.items()
        }

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None or self._admin is None:
            consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(self.settings))
            admin = AIOKafkaAdminClient(**admin_kwargs(self.settings))
            self._consumer, self._admin = consumer, admin
            await consumer.start()
            await admin.start()
        return self._consumer, self._admin

    async def _ends_client(self) -> AIOKafkaConsumer:
        """A consumer of its own for end offsets: finding them assigns it their partitions,
        after which its metadata holds those topics alone; the shared one, left unassigned,
        keeps knowing every topic's partitions."""
        if self._ends is None:
            ends = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(self.settings))
            self._ends = ends
            await ends.start()
        return self._ends

    async def close(self) -> None:
        consumer, admin, ends = self._consumer, self._admin, self._ends
        self._consumer = self._admin = self._ends = None
        for stopping in (consumer, ends):
            if stopping is not None:
                await stopping.stop()
        if admin is not None:
            await admin.close()
