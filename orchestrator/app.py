"""The composition root: settings -> database, broker, runtimes and background loops."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import Table

from events import topics
from orchestrator import metrics, telemetry
from orchestrator.api.server import HttpServer
from orchestrator.db import create_engine, create_schema
from orchestrator.engine.clock import AlignedClock
from orchestrator.engine.definition import Saga
from orchestrator.engine.machine import RetryPolicy
from orchestrator.engine.outbox import OutboxRelay
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.errors import OrchestraError, error_of
from orchestrator.kafka import broker_security, ensure_topics
from orchestrator.published import published_ids
from orchestrator.publisher import KafkaPublisher
from orchestrator.sagas import ALL_SAGAS
from orchestrator.settings import Settings
from orchestrator.taken_check import KafkaTakenCheck
from orchestrator.wiring import (
    OrchestraBroker,
    broker_logger,
    subscribe_batches,
)
from orchestrator.writers import WriterLease, new_writer_id
from schemas import billing, card_issuance, notification
from schemas.card_service import api_outbox
from schemas.sagas import orchestrator_outbox
from workers.feeds import FeedRuntime
from workers.registry import WORKERS, WorkerSpec
from workers.runtime import ParticipantRuntime

log = structlog.get_logger(__name__)

ORCHESTRATOR = "orchestrator"
API = "api"
STOP_TASKS_S = 15.0
"""How long a graceful stop waits for a sweep or a timer tick under way."""
SERVICES: tuple[str, ...] = (ORCHESTRATOR, *WORKERS, API)


class UnknownService(OrchestraError):
    """A service name that this build does not have."""


def resolve_services(names: Sequence[str], known: Sequence[str] = SERVICES) -> tuple[str, ...]:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownService(
            f"unknown service {', '.join(map(repr, unknown))}; choose from {', '.join(known)}"
        )
    return tuple(dict.fromkeys(names)) or tuple(known)


KEYS_USED_BY: dict[str, tuple[str, ...]] = {
    API: ("ORCHESTRA_JWT_SECRET", "ORCHESTRA_THREEDS_KEY", "ORCHESTRA_CARD_NUMBER_SALT"),
    card_issuance.OWNER: ("ORCHESTRA_CARD_NUMBER_SALT",),
    billing.OWNER: ("ORCHESTRA_GIFTCARD_CODE_KEY",),
    notification.OWNER: ("ORCHESTRA_GIFTCARD_CODE_KEY",),
}
"""The secret settings each service reads: a process warns only of those it uses."""


class Application:
    """Every service this process runs, on one broker connection and one database pool."""

    def __init__(
        self,
        settings: Settings,
        services: Sequence[str] = (),
        sagas: Sequence[Saga[Any, Any]] = ALL_SAGAS,
        workers: Mapping[str, WorkerSpec] = WORKERS,
    ) -> None:
        self.settings = settings
        self.sagas = tuple(sagas)
        self.workers = dict(workers)
        self.services = resolve_services(services, (ORCHESTRATOR, *self.workers, API))
        self.writer = new_writer_id()
        self.engine = create_engine(settings, writer=self.writer)
        self.clock = AlignedClock()
        """The database's time, kept by the writer lease's checks: what deadlines and the
        records' timestamps go by."""
        self.lease = WriterLease(self.engine, self.writer, self.clock)
        self.broker = OrchestraBroker(
            settings.bootstrap_servers,
            security=broker_security(settings),
            client_id=f"{settings.group_prefix}",
            graceful_timeout=15.0,
            logger=broker_logger(settings.log_level),
            log_level=logging.DEBUG,
            description="Orchestra: saga orchestration on Kafka",
        )
        # every message the services send goes through an outbox and this producer; the
        # broker above only consumes
        self.publisher = KafkaPublisher(settings, f"{settings.group_prefix}-outbox", self.clock)
        self.relays: list[OutboxRelay] = []
        self.topics: set[str] = set()
        self.runtime: SagaRuntime | None = None
        self.taken_check: KafkaTakenCheck | None = None
        self.http: HttpServer | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        if ORCHESTRATOR in self.services:
            self._wire_orchestrator()
        for name in self.services:
            if name in self.workers:
                self._wire_worker(name)
        if API in self.services:
            self._wire_api()

    def _relay(self, outbox: Table) -> OutboxRelay:
        relay = OutboxRelay(
            self.engine,
            outbox,
            self.publisher,
            sweep_interval_s=self.settings.outbox_sweep_interval_s,
            others_after_s=self.settings.outbox_others_after_s,
            published=functools.partial(published_ids, self.settings),
            writer=self.writer,
        )
        self.relays.append(relay)
        return relay

    def _wire_orchestrator(self) -> None:
        s = self.settings
        policy = RetryPolicy(
            s.step_timeout_s,
            s.retry_budget,
            s.retry_backoff_s,
            s.retry_backoff_max_s,
            s.step_queue_timeout_s,
        )
        self.taken_check = KafkaTakenCheck(s)
        runtime = SagaRuntime(
            self.engine,
            self.sagas,
            policy,
            self._relay(orchestrator_outbox),
            s.max_message_bytes,
            self.clock,
            self.taken_check,
        )
        self.runtime = runtime
        subscribe_batches(
            self.broker,
            runtime.inbound_topics,
            f"{s.group_prefix}.orchestrator.ingress",
            s,
            runtime.handle_inbound,
            title="orchestrator/ingress",
            description="Upstream business events; each valid one starts a saga.",
        )
        subscribe_batches(
            self.broker,
            [topics.SAGA_REPLIES],
            f"{s.group_prefix}.orchestrator.replies",
            s,
            runtime.handle_replies,
            title="orchestrator/replies",
            description="Participants' replies; each moves its saga on.",
        )
        for saga in self.sagas:
            self.topics.update(
                {saga.inbound_topic, topics.dlq(saga.inbound_topic), saga.outcome_topic}
            )
            self.topics.update(participant.topic for participant in saga.participants)
        self.topics.update({topics.SAGA_REPLIES, topics.dlq(topics.SAGA_REPLIES)})

    def _wire_worker(self, name: str) -> None:
        spec = self.workers[name]
        s = self.settings
        runtime = ParticipantRuntime(
            name,
            spec.topic,
            self.engine,
            spec.commands,
            spec.build(s),
            self._relay(spec.outbox),
            spec.inbox,
            s.max_message_bytes,
        )
        subscribe_batches(
            self.broker,
            [spec.topic],
            f"{s.group_prefix}.{name}",
            s,
            runtime.handle_batch,
            title=f"{name}/commands",
            description=f"Commands to the {name} worker.",
        )
        self.topics.update({spec.topic, topics.dlq(spec.topic), topics.SAGA_REPLIES})
        for feed in spec.feeds:
            feed_runtime = FeedRuntime(name, feed, self.engine, runtime.relay, s.max_message_bytes)
            subscribe_batches(
                self.broker,
                [feed.topic],
                f"{s.group_prefix}.{name}.feed",
                s,
                feed_runtime.handle_batch,
                title=f"{name}/{feed.topic}",
                description=f"The {feed.topic} feed, applied by the {name} worker.",
            )
            self.topics.update({feed.topic, topics.dlq(feed.topic)})
        self.topics.update(spec.publishes)

    def _wire_api(self) -> None:
        from orchestrator.api.app import build_api

        s = self.settings
        api = build_api(s, self.engine, self._relay(api_outbox))
        self.http = HttpServer(api, s.http_host, s.http_port)
        self.topics.update(
            {
                topics.CARDS_ISSUE_REQUESTED,
                topics.CARDS_INVOICE_PAYMENT_REQUESTED,
                topics.dlq(topics.CARDS_ISSUE_REQUESTED),
                topics.dlq(topics.CARDS_INVOICE_PAYMENT_REQUESTED),
            }
        )

    async def start(self) -> None:
        telemetry.enable(self.settings.otel_exporter)
        await create_schema(self.engine)
        async with self.engine.connect() as conn:  # the database's clock from the first batch
            await self.clock.align(conn)
        await self.lease.hold()
        self._tasks.append(asyncio.create_task(self.lease.keep(self._stop), name="writer lease"))
        await ensure_topics(self.settings, sorted(self.topics))
        if self.settings.metrics_port:
            metrics.serve(self.settings.metrics_port)
        await self.publisher.start()
        await self.broker.start()
        if self.runtime is not None:
            self.runtime.hold_timeouts(self.settings.step_timeout_s)
        if self.http is not None:
            await self.http.start()
        for relay in self.relays:
            self._tasks.append(
                asyncio.create_task(
                    relay.run_sweeper(self._stop), name=f"sweeper of {relay.table.name}"
                )
            )
        if self.runtime is not None:
            self._tasks.append(asyncio.create_task(self._run_timers(self.runtime), name="timers"))
        sampler = metrics.Sampler(
            self.engine,
            [relay.table for relay in self.relays],
            list(self.broker.subscribers),
            [saga.name for saga in self.sagas],
        )
        self._tasks.append(asyncio.create_task(sampler.run(self._stop), name="metrics"))
        # What start-up built (modules, pools, compiled statements: ~140k objects) lives as
        # long as the process; frozen, a full collection no longer walks it (60-80 ms with
        # the event loop stopped, several times a minute under load).
        gc.freeze()
        log.info(
            "started", services=list(self.services), kafka=self.settings.kafka_bootstrap_servers
        )
        used = {key for service in self.services for key in KEYS_USED_BY.get(service, ())}
        if unset := sorted(used.intersection(self.settings.development_secrets())):
            log.warning("keys left at their public development defaults: set them", keys=unset)

    async def stop(self) -> None:
        """Graceful: in-flight batches finish and commit, consumers leave their groups, a
        sweep or a timer tick under way ends, and only then is what they published deleted
        and the publisher stopped."""
        self._stop.set()
        if self.http is not None:
            await self.http.stop()
        await self.broker.stop()
        await self._end_tasks()
        if self.taken_check is not None:
            await self.taken_check.close()
        for relay in self.relays:
            await relay.drain()
        await self.publisher.stop()
        await self.lease.release()
        await self.engine.dispose()
        telemetry.flush()
        log.info("stopped", services=list(self.services))

    async def _end_tasks(self) -> None:
        """Wait for the background tasks to see the stop; one still running after
        ``STOP_TASKS_S`` is cancelled (a sweep's rows then stay for the next process)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=STOP_TASKS_S)
        for task in late:
            log.warning("background task cancelled at stop", task=task.get_name())
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run_timers(self, runtime: SagaRuntime) -> None:
        interval = self.settings.timer_interval_s
        while not self._stop.is_set():
            fired = 0
            try:
                fired = await runtime.fire_due()
            except Exception as exc:  # the due sagas stay due; next tick tries again
                log.warning("timer tick failed", error=error_of(exc))
            if fired < 500:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=interval)
