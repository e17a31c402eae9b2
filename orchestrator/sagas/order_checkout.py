"""Order checkout (seed 003, the orchestra): pay, reserve stock, book delivery, tell the client.

A failure compensates in reverse: delivery case cancelled, stock released, money back
where it came from. The notification comes after the point of no return: retried,
never compensated.
"""

from __future__ import annotations

from events import topics
from events.base import Reply, expect
from events.delivery import BookDelivery, CancelDelivery, DeliveryBooked, DeliveryMethod
from events.money import from_minor
from events.notification import NotifyCustomer
from events.orders import DeliveryChoice, OrderStatus, OrderStatusChanged, OrderSubmitted
from events.store import OrderLine, ReleaseStock, ReserveStock, StockReserved
from orchestrator.engine.definition import Saga, SagaResult
from orchestrator.engine.participants import DELIVERY, NOTIFICATION, STORE
from orchestrator.sagas.paying import Paying, with_payment_steps


class BookedDelivery(DeliveryChoice):
    """The order's delivery choice, with the name delivery gave the point when it booked it.
    Kept in ``delivery``, whose model ignores members it does not know, so an orchestrator of
    a release before 2026-11-28 (whose saga state refuses them) still reads the order."""

    point_name: str | None = None


class OrderCheckout(Paying):
    order_id: str
    lines: tuple[OrderLine, ...]
    delivery: BookedDelivery
    picking_case_id: str | None = None
    delivery_case_id: str | None = None


def begin(order: OrderSubmitted) -> OrderCheckout:
    return OrderCheckout(
        order_id=order.order_id,
        customer_id=order.customer_id,
        amount_minor=order.total_minor,
        currency=order.currency,
        payment=order.payment,
        purpose="orders",
        lines=tuple(OrderLine(sku=item.sku, quantity=item.quantity) for item in order.items),
        delivery=BookedDelivery.model_validate(order.delivery.model_dump()),
    )


def reserve_stock(saga: OrderCheckout) -> ReserveStock:
    return ReserveStock(order_id=saga.order_id, lines=saga.lines)


def with_picking_case(saga: OrderCheckout, reply: Reply) -> OrderCheckout:
    reply = expect(reply, StockReserved)
    return saga.model_copy(update={"picking_case_id": reply.picking_case_id})


def book_delivery(saga: OrderCheckout) -> BookDelivery:
    return BookDelivery(
        order_id=saga.order_id,
        method=saga.delivery.method,
        point_id=saga.delivery.point_id,
        address=saga.delivery.address,
    )


def with_delivery_case(saga: OrderCheckout, reply: Reply) -> OrderCheckout:
    reply = expect(reply, DeliveryBooked)
    named = saga.delivery.model_copy(update={"point_name": reply.point_name})
    return saga.model_copy(update={"delivery_case_id": reply.delivery_case_id, "delivery": named})


def delivered_to(saga: OrderCheckout) -> str:
    """Where the client is told the order goes: a courier's address, or the pickup point by
    its name and id (by its id alone from a delivery worker that gives no name)."""
    choice = saga.delivery
    if choice.method == DeliveryMethod.COURIER or not choice.point_id:
        return choice.address or "you"
    return f"{choice.point_name} ({choice.point_id})" if choice.point_name else choice.point_id


def notify(saga: OrderCheckout) -> NotifyCustomer:
    return NotifyCustomer(
        customer_id=saga.customer_id,
        template="order-confirmed",
        params={
            "order_id": saga.order_id,
            "total": str(from_minor(saga.amount_minor)),
            "currency": saga.currency,
            "delivery": delivered_to(saga),
        },
    )


def order_status(saga: OrderCheckout, result: SagaResult) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=saga.order_id,
        saga_id=result.saga_id,
        status=OrderStatus(result.status),
        reason=result.reason,
        total=from_minor(saga.amount_minor),
        currency=saga.currency,
    )


ORDER_CHECKOUT_SAGA: Saga[OrderCheckout, OrderSubmitted] = (
    with_payment_steps(
        Saga(
            "order-checkout",
            state=OrderCheckout,
            trigger=OrderSubmitted,
            inbound_topic=topics.ORDERS_SUBMITTED,
            outcome_topic=topics.ORDERS_STATUS,
            begin=begin,
            outcome=order_status,
            outcome_key=lambda saga: saga.order_id,
            success_status=OrderStatus.CONFIRMED,
            failure_status=OrderStatus.CANCELLED,
        )
    )
    .step(
        "reserve-stock",
        STORE,
        send=reserve_stock,
        on_success=with_picking_case,
        compensate=lambda _: ReleaseStock(),
    )
    .step(
        "book-delivery",
        DELIVERY,
        send=book_delivery,
        on_success=with_delivery_case,
        compensate=lambda _: CancelDelivery(),
    )
    .step("notify-client", NOTIFICATION, send=notify, retriable=True)
)
