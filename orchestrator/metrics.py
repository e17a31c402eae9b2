"""Prometheus metrics: saga counts by type and ending, step latency, in-flight sagas,
outbox backlog, consumer lag. One registry per process, served by the API at ``/metrics``
and, where set, on ``ORCHESTRA_METRICS_PORT``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from events.dlq import DeadLetterReason
from orchestrator.engine.definition import Saga
from orchestrator.engine.instance import SagaStatus
from orchestrator.engine.machine import Decision
from orchestrator.errors import HttpUnavailable, error_of
from schemas.sagas import saga_instances

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry()
SAGAS_STARTED = Counter(
    "orchestra_sagas_started_total", "Sagas started", ["saga_type"], registry=REGISTRY
)
SAGAS_ENDED = Counter(
    "orchestra_sagas_ended_total",
    "Sagas ended: completed, compensated (every undo ran) or failed (needs an operator)",
    ["saga_type", "outcome"],
    registry=REGISTRY,
)
LATE_EFFECTS = Counter(
    "orchestra_late_effects_total",
    "Steps nothing undoes that ran after their saga was rolled back around them (an older "
    "orchestrator gave them up): each needs an operator to settle its effect",
    ["saga_type", "step"],
    registry=REGISTRY,
)
STEPS_QUEUED = Counter(
    "orchestra_steps_queued_total",
    "Late steps that waited for their participant to take the command (down, or behind) "
    "instead of timing out",
    ["saga_type", "step"],
    registry=REGISTRY,
)
RETRIES_SLOWED = Counter(
    "orchestra_retries_slowed_total",
    "Retries put off longer because a step retried until it succeeds was refused past the "
    "retry budget (a bug, or a refusal that needs a fix): each a saga waiting for the fix",
    ["saga_type", "step"],
    registry=REGISTRY,
)
NOTICES_UNDELIVERED = Counter(
    "orchestra_notices_undelivered_total",
    "Failure notices given up on (their participant could not deliver them within the retry "
    "budget): each a client not told of the result",
    ["saga_type"],
    registry=REGISTRY,
)
TIMER_FAILURES = Counter(
    "orchestra_saga_timer_failures_total",
    "Timers whose decision raised; the saga was put off (a bug or data its code cannot read)",
    ["saga_type"],
    registry=REGISTRY,
)
STEP_LATENCY = Histogram(
    "orchestra_step_latency_seconds",
    "From a command sent to its reply applied",
    ["saga_type", "step", "direction"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "orchestra_dead_letters_total",
    "Records refused to <topic>.dlq, by the topic they came from and the reason",
    ["topic", "reason"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "orchestra_sagas_in_flight", "Sagas running or compensating", ["saga_type"], registry=REGISTRY
)
OUTBOX_BACKLOG = Gauge(
    "orchestra_outbox_backlog",
    "Messages committed but not yet published",
    ["outbox"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "orchestra_consumer_lag",
    "Records behind the fetch high-water mark, per consumed topic",
    ["topic"],
    registry=REGISTRY,
)
ENDINGS = {
    SagaStatus.COMPLETED: "completed",
    SagaStatus.ABORTED: "compensated",
    SagaStatus.FAILED: "failed",
}


@dataclass(frozen=True)
class StepTiming:
    saga_type: str
    step: str
    compensating: bool
    seconds: float


def declare(definitions: Iterable[Saga[Any, Any]]) -> None:
    """Counters an alert watches start at 0 for every saga type and step they count: a series
    born at 1 would hide its first increase."""
    for saga in definitions:
        TIMER_FAILURES.labels(saga.name)
        if saga.on_failure is not None:
            NOTICES_UNDELIVERED.labels(saga.name)
        for step in saga.steps:
            STEPS_QUEUED.labels(saga.name, step.name)
            if step.retriable:
                RETRIES_SLOWED.labels(saga.name, step.name)
            if step.may_outlive_rollback:
                LATE_EFFECTS.labels(saga.name, step.name)


def declare_dead_letters(topics: Iterable[str]) -> None:
    """``orchestra_dead_letters_total`` at 0 for every reason of every topic a process reads."""
    for topic in topics:
        for reason in DeadLetterReason:
            DEAD_LETTERS.labels(topic, reason.value)


_ALERTS: dict[str, tuple[Counter, bool, str]] = {
    "late-effect": (
        LATE_EFFECTS,
        True,
        "a step nothing undoes ran after its saga was rolled back; settle it by hand",
    ),
    "notice-undelivered": (
        NOTICES_UNDELIVERED,
        False,
        "a failure notice was given up on; its client was not told",
    ),
    "retries-slowed": (
        RETRIES_SLOWED,
        True,
        "a step retried until it succeeds keeps being refused; fix its participant",
    ),
}
"""History events an operator must hear of: the counter (labelled by saga type, and by step
if so marked) and the warning."""


def observe(decisions: Iterable[Decision], timings: Sequence[StepTiming] = ()) -> None:
    """Count what committed transactions did (called after commit, so retries count once)."""
    for decision in decisions:
        saga_type = decision.instance.saga_type
        for entry in decision.history:
            if entry.event == "started":
                SAGAS_STARTED.labels(saga_type).inc()
            elif entry.event in ("ended", "failed-again") and entry.status in ENDINGS:
                SAGAS_ENDED.labels(saga_type, ENDINGS[entry.status]).inc()
            elif (alert := _ALERTS.get(entry.event)) is not None:
                counter, by_step, message = alert
                labels = (saga_type, entry.step or "") if by_step else (saga_type,)
                counter.labels(*labels).inc()
                log.warning(
                    message,
                    saga_id=str(decision.instance.id),
                    saga_type=saga_type,
                    step=entry.step,
                    detail=entry.detail,
                )
            elif entry.event == "timer-failed":
                TIMER_FAILURES.labels(saga_type).inc()
            elif entry.event == "command-queued":
                STEPS_QUEUED.labels(saga_type, entry.step or "").inc()
    for timing in timings:
        direction = "compensation" if timing.compensating else "forward"
        STEP_LATENCY.labels(timing.saga_type, timing.step, direction).observe(timing.seconds)


def render() -> bytes:
    return generate_latest(REGISTRY)


def serve(port: int) -> None:
    """A separate scrape endpoint, for processes that do not run the HTTP API."""
    try:
        start_http_server(port, registry=REGISTRY)
    except OSError as exc:
        raise HttpUnavailable(
            f"the metrics endpoint cannot listen on port {port}: {exc.strerror or exc}"
        ) from None


class Sampler:
    """Samples the gauges every few seconds: in-flight sagas, outbox backlog, lag."""

    def __init__(
        self,
        engine: AsyncEngine,
        outboxes: Sequence[Table],
        subscribers: Sequence[Any],
        saga_types: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.outboxes = outboxes
        self.subscribers = subscribers
        self.saga_types = saga_types
        """Reported as 0 when none is in flight, so the series never goes missing."""

    async def run(self, stop: asyncio.Event, interval_s: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except Exception as exc:  # a sample missed is not worth stopping for
                log.warning("metrics sample failed", error=error_of(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def sample(self) -> None:
        async with self.engine.connect() as conn:
            running = await conn.execute(
                select(saga_instances.c.saga_type, func.count().label("n"))
                .where(saga_instances.c.status.in_(["RUNNING", "COMPENSATING"]))
                .group_by(saga_instances.c.saga_type)
            )
            counts: dict[str, int] = {row.saga_type: row.n for row in running}
            IN_FLIGHT.clear()
            for saga_type in sorted({*self.saga_types, *counts}):
                IN_FLIGHT.labels(saga_type).set(counts.get(saga_type, 0))
            for table in self.outboxes:
                count = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                OUTBOX_BACKLOG.labels(table.name).set(count)
        for topic, lag in (await self._lag()).items():
            CONSUMER_LAG.labels(topic).set(lag)

    async def _lag(self) -> dict[str, int]:
        behind: dict[str, int] = {}
        for subscriber in self.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                if high is None:
                    continue
                position = await consumer.position(tp)
                behind[tp.topic] = behind.get(tp.topic, 0) + max(0, high - position)
        return behind
