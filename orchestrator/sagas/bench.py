"""The standard benchmark saga: three steps in sequence, the last one failing for 10%."""

from __future__ import annotations

from events.bench import (
    BENCH_DELIVERY_COMMANDS,
    BENCH_PAYMENT_COMMANDS,
    BENCH_REQUESTED,
    BENCH_STATUS,
    BENCH_STORE_COMMANDS,
    BenchOrderPlaced,
    BenchOrderStatus,
    BenchStatus,
    CreateDelivery,
    RefundPayment,
    ReleaseStock,
    ReservePayment,
    ReserveStock,
)
from orchestrator.engine.definition import Participant, Saga, SagaResult, SagaState

PAYMENT = Participant("bench-payment", BENCH_PAYMENT_COMMANDS)
STORE = Participant("bench-store", BENCH_STORE_COMMANDS)
DELIVERY = Participant("bench-delivery", BENCH_DELIVERY_COMMANDS)


class BenchOrder(SagaState):
    order_id: str
    amount_minor: int


def outcome(order: BenchOrder, result: SagaResult) -> BenchOrderStatus:
    return BenchOrderStatus(
        order_id=order.order_id,
        saga_id=result.saga_id,
        status=BenchStatus(result.status),
        reason=result.reason,
    )


BENCH_SAGA: Saga[BenchOrder, BenchOrderPlaced] = (
    Saga(
        "bench-order",
        state=BenchOrder,
        trigger=BenchOrderPlaced,
        inbound_topic=BENCH_REQUESTED,
        outcome_topic=BENCH_STATUS,
        begin=lambda placed: BenchOrder(order_id=placed.order_id, amount_minor=placed.amount_minor),
        outcome=outcome,
        outcome_key=lambda order: order.order_id,
        success_status=BenchStatus.CONFIRMED,
        failure_status=BenchStatus.CANCELLED,
    )
    .step(
        "reserve-payment",
        PAYMENT,
        send=lambda o: ReservePayment(order_id=o.order_id, amount_minor=o.amount_minor),
        compensate=lambda o: RefundPayment(order_id=o.order_id),
    )
    .step(
        "reserve-stock",
        STORE,
        send=lambda o: ReserveStock(order_id=o.order_id),
        compensate=lambda o: ReleaseStock(order_id=o.order_id),
    )
    .step("create-delivery", DELIVERY, send=lambda o: CreateDelivery(order_id=o.order_id))
)
