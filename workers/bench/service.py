"""Minimal benchmark participants: no business tables, but the real inbox and outbox."""

from __future__ import annotations

from events.base import Compensated, Reply, StepFailed
from events.bench import (
    BENCH_DELIVERY_COMMANDS,
    BENCH_PAYMENT_COMMANDS,
    BENCH_STORE_COMMANDS,
    DELIVERY_UNAVAILABLE,
    BenchCommand,
    BenchStepDone,
    CreateDelivery,
    RefundPayment,
    ReleaseStock,
    delivery_fails,
)
from events.envelope import Envelope
from schemas.messaging import inbox_table, outbox_table
from workers.registry import WorkerSpec
from workers.runtime import Decider


def decide(envelope: Envelope, command: object) -> Reply:
    if isinstance(command, RefundPayment | ReleaseStock):
        return Compensated()
    if isinstance(command, CreateDelivery) and delivery_fails(command.order_id):
        return StepFailed(reason=DELIVERY_UNAVAILABLE, detail="no courier slot")
    return BenchStepDone()


def _spec(name: str, topic: str) -> WorkerSpec:
    return WorkerSpec(
        name,
        topic,
        BenchCommand,
        inbox_table(name),
        outbox_table(name),
        lambda _s: Decider(decide),
    )


BENCH_WORKERS: dict[str, WorkerSpec] = {
    spec.name: spec
    for spec in (
        _spec("bench-payment", BENCH_PAYMENT_COMMANDS),
        _spec("bench-store", BENCH_STORE_COMMANDS),
        _spec("bench-delivery", BENCH_DELIVERY_COMMANDS),
    )
}
