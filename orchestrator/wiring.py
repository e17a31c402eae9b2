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

from orchestrator.engine.records import RawRecord
from orchestrator.engine.retry import is_transient
from orchestrator.errors import error_of
from orchestrator.fetch_pacing import FetchPacing
from orchestrator.kafka import release_stale_leader
from orchestrator.offsets import OffsetCommitter
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

BatchHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]

_BATCH_WAIT_MS = 1_000
"""How long one poll waits for a first record; it returns as soon as there is one."""

_FAILED_BATCH_PAUSE_S = 0.5
"""Pause after a batch whose handler failed (past its own retries), before it is read again."""

JOIN_WARN_AFTER_S = 15.0
"""A consumer still joining its group after this long is logged (then every
``JOIN_WARN_EVERY_S``)."""

JOIN_WARN_EVERY_S = 30.0

STALE_LEADER_AFTER_S = 10.0
"""At least this long (and two session timeouts) of the same departed leader named in
every JoinGroup answer, with SyncGroup refused, before the group is released."""

_JOIN_POLL_S = 1.0

_REBALANCE_IN_PROGRESS = 27

JOIN_ABANDON_S = 1.0
"""How long a consumer whose start was cut short gets to close; then its connections are
closed under it (which ends a JoinGroup it waits on) and it gets as long again."""


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
        isolation_level="read_committed",  # an upstream's aborted transaction starts nothing
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
            transient = is_transient(exc)  # PostgreSQL away: said once a batch, no traceback
            (log.warning if transient else log.error)(
                "batch failed; its records will be consumed again",
                group=self.committer.group_id,
                records=len(records),
                error=error_of(exc),
                exc_info=not transient,
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
            log.info("offsets not committed", group=self.committer.group_id, error=error_of(exc))
            return
        committed = self.committer.handled(consumer, positions)
        if self.committer.closing:
            await committed


def _rewind(consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
    """Seek each partition of the batch still assigned back to its earliest record (one
    revoked meanwhile is read again by its next owner from the committed offset)."""
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        if record.offset < earliest.get(partition, record.offset + 1):
            earliest[partition] = record.offset
    assigned = consumer.assignment()
    for partition, offset in earliest.items():
        if partition in assigned:
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
        self.joining: set[int] = set()

    async def start(self) -> None:
        """Connect, then join every group at once; a group that takes long is logged
        (``_watch_joins``), and cancelling this stops the joins."""
        await self.connect()
        self.joining = {id(subscriber) for subscriber in self.subscribers}
        watch = asyncio.create_task(self._watch_joins())
        try:
            await asyncio.gather(*(self._start(subscriber) for subscriber in self.subscribers))
        finally:
            watch.cancel()
        for publisher in self.publishers:
            await publisher.start()
        self.running = True

    async def _start(self, subscriber: Any) -> None:
        await subscriber.start()
        self.joining.discard(id(subscriber))

    def not_joined(self) -> list[str]:
        """The groups of the subscribers still starting."""
        return [
            str(getattr(subscriber, "group_id", None))
            for subscriber in self.subscribers
            if id(subscriber) in self.joining
        ]

    async def _watch_joins(self) -> None:
        """A warning per subscriber that has not joined its group after ``JOIN_WARN_AFTER_S``,
        then every ``JOIN_WARN_EVERY_S``: a join can wait forever, and nothing else would say
        so. A group held by a departed leader (``release_stale_leader``) is released."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        warn_at = started + JOIN_WARN_AFTER_S
        observers: dict[int, _JoinObserver] = {}
        releasing: set[asyncio.Task[None]] = set()
        try:
            while True:
                await asyncio.sleep(_JOIN_POLL_S)
                now = loop.time()
                warn = now >= warn_at
                if warn:
                    warn_at = now + JOIN_WARN_EVERY_S
                for subscriber in self.subscribers:
                    if id(subscriber) not in self.joining:
                        continue
                    consumer = getattr(subscriber, "consumer", None)
                    coordinator = getattr(consumer, "_coordinator", None)
                    if coordinator is not None and id(subscriber) not in observers:
                        observers[id(subscriber)] = _JoinObserver(coordinator)
                    observer = observers.get(id(subscriber))
                    if warn:
                        log.warning(
                            "consumer has not joined its group yet",
                            group=getattr(subscriber, "group_id", None),
                            waiting_for=join_state(consumer, observer),
                            waited_s=round(now - started),
                        )
                    if observer is not None and observer.stale_leader(now):
                        observer.since = now  # one attempt per patience
                        releasing.add(asyncio.create_task(observer.release()))
                releasing = {task for task in releasing if not task.done()}
        finally:
            for task in releasing:
                task.cancel()

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        """Offsets of handled batches are committed before the consumers leave; consumers
        still joining their groups (a start cut short) are closed first, within a bound."""
        await asyncio.gather(
            *(
                _abandon(subscriber)
                for subscriber in self.subscribers
                if id(subscriber) in self.joining
            )
        )
        self.joining.clear()
        for committer in self.committers:
            await committer.flush()
        await super().stop(*args, **kwargs)


async def _abandon(subscriber: Any) -> None:
    """Close the consumer of a subscriber whose start did not finish: it holds no partitions,
    so there is nothing to commit; its coordinator may be waiting on a JoinGroup answer,
    which closing its connections ends."""
    consumer: AIOKafkaConsumer | None = subscriber.consumer
    subscriber.consumer = None
    if consumer is None:
        return
    closing = asyncio.ensure_future(consumer.stop())
    _, pending = await asyncio.wait({closing}, timeout=JOIN_ABANDON_S)
    if pending:
        await consumer._client.close()
        _, pending = await asyncio.wait({closing}, timeout=JOIN_ABANDON_S)
    if pending:
        closing.cancel()
        log.warning("consumer still joining did not close", group=subscriber.group_id)


def join_state(consumer: AIOKafkaConsumer | None, observer: _JoinObserver | None = None) -> str:
    """What a starting consumer waits for, as far as its client shows it."""
    coordinator = getattr(consumer, "_coordinator", None)
    if consumer is None or coordinator is None:
        return "the cluster's metadata (connecting)"
    if coordinator.coordinator_id is None:
        return "the group coordinator (FindCoordinator)"
    member = coordinator.member_id or "none yet"
    state = (
        f"an assignment: JoinGroup/SyncGroup with coordinator {coordinator.coordinator_id} "
        f"(member {member}, generation {coordinator.generation})"
    )
    if observer is not None and observer.leader_id is not None:
        state += (
            f"; the broker names {observer.leader_id} leader and answers SyncGroup "
            f"with error {observer.sync_error}"
        )
    return state


class _JoinObserver:
    """Watches a starting consumer's JoinGroup and SyncGroup answers for a group that will
    never form: the same other member named leader, and SyncGroup answered
    REBALANCE_IN_PROGRESS, for longer than a live leader could take (``stale_leader``)."""

    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator
        self.leader_id: str | None = None
        self.sync_error: int | None = None
        self.since = 0.0
        self.patience_s = max(STALE_LEADER_AFTER_S, 2 * coordinator._session_timeout_ms / 1000)
        send = coordinator._send_req

        async def observed(request: Any) -> Any:
            response = await send(request)
            self._saw(response)
            return response

        # aiokafka keeps the leader's id to itself: its own requests go through here
        coordinator._send_req = observed

    def _saw(self, response: Any) -> None:
        error = getattr(response, "error_code", None)
        if hasattr(response, "leader_id"):  # JoinGroup
            if error == 0 and response.leader_id != response.member_id:
                if response.leader_id != self.leader_id:
                    self.leader_id = response.leader_id
                    self.since = asyncio.get_running_loop().time()
            elif error == 0:
                self.leader_id = None
        elif hasattr(response, "member_assignment"):  # SyncGroup
            self.sync_error = error
            if error == 0:
                self.leader_id = None

    def stale_leader(self, now: float) -> bool:
        return (
            self.leader_id is not None
            and self.sync_error == _REBALANCE_IN_PROGRESS
            and now - self.since > self.patience_s
        )

    async def release(self) -> None:
        leader, group = self.leader_id, self.coordinator.group_id
        assert leader is not None
        log.warning("group held by a departed leader; releasing it", group=group, leader=leader)
        try:
            failed = await release_stale_leader(self.coordinator, leader)
        except Exception as exc:  # the join goes on as it was; the next patience tries again
            log.warning("releasing the group failed", group=group, error=error_of(exc))
            return
        if failed is None:
            log.warning("departed leader rejoined, to expire in a session timeout", group=group)
        else:
            log.warning("group not released", group=group, answer=failed)


def broker_logger(level: str) -> logging.Logger:
    """FastStream's own logger: per-message lines at DEBUG, the rest at the process level."""
    logger = logging.getLogger("orchestra.faststream")
    logger.setLevel(max(logging.WARNING, getattr(logging, level)))
    return logger
