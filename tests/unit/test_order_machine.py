"""Conditional steps and the point of no return, on the order checkout saga."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from events.base import Command, Compensated, StepFailed
from events.billing import BalanceDebited, CustomerChecked
from events.delivery import DeliveryBooked, DeliveryMethod
from events.envelope import Envelope
from events.notification import Notified, NotifyCustomer
from events.orders import DeliveryChoice, OrderItem, OrderStatusChanged, OrderSubmitted
from events.payment import BankCharged, PaymentDetails, PaymentMethod
from events.store import StockReserved
from orchestrator.engine.definition import NOTICE_STEP, Participant, Saga
from orchestrator.engine.instance import SagaStatus
from orchestrator.engine.machine import Decision, SagaMachine
from orchestrator.engine.participants import NOTIFICATION
from orchestrator.errors import DefinitionError
from orchestrator.ops.inspection import HistoryRow
from orchestrator.ops.trace import flow
from orchestrator.sagas.order_checkout import ORDER_CHECKOUT_SAGA
from orchestrator.sagas.paying import CUSTOMER_RECHECKS
from tests.unit.test_machine import POLICY, T0, answer, answered_each_time, kinds, reply_to


def order(method: PaymentMethod) -> OrderSubmitted:
    return OrderSubmitted(
        order_id="o-1",
        customer_id="c-1",
        currency="RUB",
        items=(
            OrderItem(sku="A", quantity=2, unit_price=Decimal("10.50")),
            OrderItem(sku="B", quantity=1, unit_price=Decimal("4")),
        ),
        payment=PaymentDetails(
            method=method,
            card_token="tok" if method == PaymentMethod.BANK_CARD else None,
            gift_card_id="G-1" if method == PaymentMethod.GIFT_CARD else None,
        ),
        delivery=DeliveryChoice(method=DeliveryMethod.PICKUP, point_id="PP-1", cost=Decimal(3)),
    )


@pytest.fixture
def machine() -> SagaMachine:
    return SagaMachine(ORDER_CHECKOUT_SAGA, POLICY)


def start(machine: SagaMachine, method: PaymentMethod) -> Decision:
    return machine.start(order(method), Envelope(type="orders.submitted.v1"), T0)


def status(decision: Decision) -> OrderStatusChanged:
    (body,) = [m.body for m in decision.outgoing if isinstance(m.body, OrderStatusChanged)]
    return body


def test_total_is_items_plus_delivery() -> None:
    assert order(PaymentMethod.WALLET).total_minor == 2 * 1050 + 400 + 300


@pytest.mark.parametrize(
    ("method", "payment_kind"),
    [
        (PaymentMethod.BANK_CARD, "ChargeBank"),
        (PaymentMethod.SBP, "ChargeBank"),
        (PaymentMethod.WALLET, "DebitBalance"),
        (PaymentMethod.GIFT_CARD, "DebitBalance"),
    ],
)
def test_only_the_payment_step_of_the_method_runs(
    machine: SagaMachine, method: PaymentMethod, payment_kind: str
) -> None:
    d = start(machine, method)
    assert kinds(d) == ["CheckCustomer"]
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    assert kinds(d) == [payment_kind]


def test_failure_compensates_only_the_steps_that_ran(machine: SagaMachine) -> None:
    d = start(machine, PaymentMethod.WALLET)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    d = answer(machine, d, BalanceDebited(account_id="wallet:W-1", balance_minor=0))
    d = answer(machine, d, StockReserved(picking_case_id="PICK-1"))
    d = answer(machine, d, StepFailed(reason="NO_DELIVERY_CAPACITY"))
    assert kinds(d) == ["ReleaseStock"]
    d = answer(machine, d, Compensated())
    assert kinds(d) == ["RefundBalance"]  # the bank step was skipped, so it is not undone
    d = answer(machine, d, Compensated())
    assert d.instance.status is SagaStatus.ABORTED
    assert (status(d).status, status(d).reason, status(d).total) == (
        "CANCELLED",
        "NO_DELIVERY_CAPACITY",
        Decimal("28.00"),
    )
    (notice,) = [m for m in d.outgoing if isinstance(m.body, NotifyCustomer)]
    assert notice.topic == NOTIFICATION.topic
    assert notice.envelope.saga_step == NOTICE_STEP
    assert notice.body.template == "payment-failed"
    assert notice.body.params["reason"] == "NO_DELIVERY_CAPACITY"
    assert [h.event for h in d.history][-2:] == ["ended", "notice-sent"]


def cancelled(machine: SagaMachine) -> Decision:
    d = start(machine, PaymentMethod.WALLET)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    d = answer(machine, d, StepFailed(reason="INSUFFICIENT_FUNDS"))
    assert d.instance.status is SagaStatus.ABORTED
    assert kinds(d) == ["OrderStatusChanged", "NotifyCustomer"]
    return d


CHANNEL_DOWN = StepFailed(reason="CHANNEL_UNAVAILABLE", retryable=True)


def test_a_notice_its_channel_could_not_deliver_for_now_is_sent_again(
    machine: SagaMachine,
) -> None:
    d = cancelled(machine)
    first = d.outgoing[-1]
    assert d.instance.pending_command_id == first.envelope.id
    assert d.instance.next_action_at is None  # nothing waits for a notice's answer
    d = answer(machine, d, CHANNEL_DOWN)
    assert d.outgoing == []
    assert [(h.event, h.step) for h in d.history] == [
        ("reply-received", NOTICE_STEP),
        ("retry-scheduled", NOTICE_STEP),
    ]
    assert d.instance.status is SagaStatus.ABORTED
    assert d.instance.next_action_at == T0 + timedelta(seconds=1)
    d = machine.on_due(d.instance, T0 + timedelta(seconds=1))
    assert kinds(d) == ["NotifyCustomer"]  # the outcome record is not published again
    again = d.outgoing[0]
    assert again.envelope.id != first.envelope.id
    assert again.envelope.saga_step == NOTICE_STEP
    assert again.body == first.body
    assert d.instance.pending_command_id == again.envelope.id
    d = answer(machine, d, Notified(delivered=True))
    assert (d.instance.status, d.instance.pending_command_id, d.instance.next_action_at) == (
        SagaStatus.ABORTED,
        None,
        None,
    )
    assert d.outgoing == []


def test_a_notice_is_given_up_on_past_the_retry_budget(machine: SagaMachine) -> None:
    d = cancelled(machine)
    for attempt in range(1, POLICY.budget + 1):
        d = answer(machine, d, CHANNEL_DOWN)
        assert d.instance.attempt == attempt
        assert d.instance.next_action_at is not None
        d = machine.on_due(d.instance, d.instance.next_action_at)
        assert kinds(d) == ["NotifyCustomer"]
    d = answer(machine, d, CHANNEL_DOWN)
    assert d.history[-1].event == "notice-undelivered"
    assert (d.instance.pending_command_id, d.instance.next_action_at) == (None, None)
    assert d.instance.status is SagaStatus.ABORTED


def test_a_notice_due_that_its_saga_no_longer_sends_is_dropped(machine: SagaMachine) -> None:
    """A scheduled resend of a saga whose client the definition no longer tells (its code
    changed since): the timer is cleared, not fired again and again."""
    d = start(machine, PaymentMethod.WALLET)
    d = answered_each_time(machine, d, StepFailed(reason="UNKNOWN_CUSTOMER"))  # told nothing
    due = d.instance.evolve(next_action_at=T0, attempt=1)
    fired = machine.on_due(due, T0)
    assert (fired.outgoing, fired.instance.next_action_at) == ([], None)


def test_a_notice_its_saga_can_no_longer_build_is_given_up_on(machine: SagaMachine) -> None:
    d = cancelled(machine)
    d = answer(machine, d, CHANNEL_DOWN)
    unreadable = d.instance.evolve(data={"changed": "since"})
    fired = machine.on_due(unreadable, d.instance.next_action_at or T0)
    assert (fired.outgoing, fired.instance.next_action_at) == ([], None)
    assert [h.event for h in fired.history] == ["notice-undelivered"]


def test_an_answer_to_an_earlier_notice_is_ignored(machine: SagaMachine) -> None:
    d = cancelled(machine)
    stale = reply_to(d, CHANNEL_DOWN)
    d = answer(machine, d, CHANNEL_DOWN)
    d = machine.on_due(d.instance, d.instance.next_action_at or T0)
    ignored = machine.on_reply(d.instance, CHANNEL_DOWN, stale, T0)
    assert ignored.instance == d.instance
    assert [h.event for h in ignored.history] == ["reply-ignored"]


def test_a_client_the_shop_does_not_know_gets_no_notice(machine: SagaMachine) -> None:
    d = start(machine, PaymentMethod.WALLET)
    d = answered_each_time(machine, d, StepFailed(reason="UNKNOWN_CUSTOMER"))
    assert d.instance.status is SagaStatus.ABORTED
    assert [type(m.body) for m in d.outgoing] == [OrderStatusChanged]


def test_a_client_not_known_yet_is_asked_about_again_and_then_pays(machine: SagaMachine) -> None:
    """An order sent right after its client's registration: billing does not know the client
    until the registration ends, so the check asks again rather than cancel the order."""
    d = start(machine, PaymentMethod.BANK_CARD)
    d = answer(machine, d, StepFailed(reason="UNKNOWN_CUSTOMER"))
    assert (d.instance.status, d.outgoing) == (SagaStatus.RUNNING, [])
    assert [h.event for h in d.history][-1] == "retry-scheduled"
    assert d.instance.next_action_at == T0 + POLICY.backoff(1)
    d = machine.on_due(d.instance, d.instance.next_action_at)
    assert kinds(d) == ["CheckCustomer"]
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    assert kinds(d) == ["ChargeBank"]


def test_a_client_still_not_known_after_the_rechecks_is_refused(machine: SagaMachine) -> None:
    d, checks = start(machine, PaymentMethod.BANK_CARD), 1
    unknown = StepFailed(reason="UNKNOWN_CUSTOMER")
    d = answer(machine, d, unknown)
    while not d.outgoing:
        assert d.instance.next_action_at is not None
        d = machine.on_due(d.instance, d.instance.next_action_at)
        assert kinds(d) == ["CheckCustomer"]
        checks += 1
        d = answer(machine, d, unknown, d.instance.updated_at)
    assert checks == 1 + CUSTOMER_RECHECKS
    assert (status(d).status, status(d).reason) == ("CANCELLED", "UNKNOWN_CUSTOMER")
    assert "ChargeBank" not in kinds(d)


def confirmed_until_notification(machine: SagaMachine) -> Decision:
    d = start(machine, PaymentMethod.BANK_CARD)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    d = answer(machine, d, BankCharged(payment_id="P-1", amount_minor=2800))
    d = answer(machine, d, StockReserved(picking_case_id="PICK-1"))
    d = answer(machine, d, DeliveryBooked(delivery_case_id="DLV-1"))
    assert kinds(d) == ["NotifyCustomer"]
    return d


def test_notification_is_retried_past_any_budget_and_never_compensated(
    machine: SagaMachine,
) -> None:
    d = confirmed_until_notification(machine)
    now = T0
    for _ in range(POLICY.budget * 3):
        now += timedelta(seconds=60)
        d = machine.on_due(d.instance, now)  # times out: retry scheduled
        assert d.instance.status is SagaStatus.RUNNING
        now += timedelta(seconds=60)
        d = machine.on_due(d.instance, now)  # the retry goes out
        assert kinds(d) == ["NotifyCustomer"]
    d = answer(machine, d, StepFailed(reason="CHANNEL_UNAVAILABLE"), now)
    assert d.instance.status is SagaStatus.RUNNING
    assert not d.outgoing
    d = machine.on_due(d.instance, now + timedelta(seconds=60))
    d = answer(machine, d, Notified(delivered=True), now)
    assert d.instance.status is SagaStatus.COMPLETED
    assert status(d).status == "CONFIRMED"


def test_manual_compensation_is_refused_past_the_point_of_no_return(
    machine: SagaMachine,
) -> None:
    d = confirmed_until_notification(machine)
    with pytest.raises(ValueError, match="point of no return"):
        machine.compensate(d.instance, T0, "ops", "changed my mind")


def test_bank_unavailable_is_retried_then_times_out(machine: SagaMachine) -> None:
    d = start(machine, PaymentMethod.BANK_CARD)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    now = T0
    for _ in range(3):
        d = answer(machine, d, StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True), now)
        now += timedelta(seconds=60)
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["ChargeBank"]
    d = answer(machine, d, StepFailed(reason="ACQUIRER_UNAVAILABLE", retryable=True), now)
    assert d.instance.status is SagaStatus.COMPENSATING
    assert kinds(d) == ["RefundBank"]  # it may have charged before the answer was lost
    d = answer(machine, d, Compensated(), now)
    assert (status(d).status, status(d).reason) == ("CANCELLED", "TIMEOUT")


def test_a_check_that_times_out_cancels_the_order(machine: SagaMachine) -> None:
    """check-customer reads only: nothing to leave behind, so no reason to wait on billing."""
    d = start(machine, PaymentMethod.BANK_CARD)
    d = machine.on_due(d.instance, T0 + timedelta(minutes=5))
    assert d.instance.status is SagaStatus.ABORTED
    assert (status(d).status, status(d).reason) == ("CANCELLED", "TIMEOUT")


def test_definition_refuses_a_compensatable_step_after_a_retriable_one() -> None:
    here = Participant("x", "x.commands")
    saga = ORDER_CHECKOUT_SAGA
    with pytest.raises(DefinitionError, match="point of no return"):
        Saga(
            "broken",
            state=saga.state,
            trigger=saga.trigger,
            inbound_topic="a",
            outcome_topic="b",
            begin=saga.begin,
            outcome=saga.outcome,
            outcome_key=saga.outcome_key,
            success_status="OK",
            failure_status="NO",
        ).step("tell", here, send=lambda _: Command(kind="x"), retriable=True).step(
            "pay", here, send=lambda _: Command(kind="y"), compensate=lambda _: Command(kind="z")
        )


def test_a_trace_draws_the_failure_notice_to_its_participant(machine: SagaMachine) -> None:
    started = start(machine, PaymentMethod.WALLET)
    rows = [HistoryRow(T0, "notice-sent", NOTICE_STEP, "CANCELLED", None, None, None, None, None)]
    drawn = flow(started.instance, rows, ORDER_CHECKOUT_SAGA)
    assert NOTIFICATION.name in drawn.participants
    assert NOTICE_STEP not in drawn.participants


def test_a_failure_notice_of_the_release_before_still_reads() -> None:
    """An orchestrator of the release before sends ``purpose`` and ``reason`` only."""
    from workers.notification.templates import template

    old = {"purpose": "orders", "amount": "7.00", "currency": "RUB", "reason": "OUT_OF_STOCK"}
    subject, body = template("payment-failed").render({"first_name": "Ivan", **old})
    assert "$" not in subject + body
    assert "did not go through: OUT_OF_STOCK (code OUT_OF_STOCK)." in body


def _confirmation(machine: SagaMachine, booked: DeliveryBooked) -> NotifyCustomer:
    d = start(machine, PaymentMethod.WALLET)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    d = answer(machine, d, BalanceDebited(account_id="wallet:W-1", balance_minor=0))
    d = answer(machine, d, StockReserved(picking_case_id="PICK-1"))
    d = answer(machine, d, booked)
    (notice,) = [m.body for m in d.outgoing]
    assert isinstance(notice, NotifyCustomer)
    return notice


def test_the_confirmation_names_the_pickup_point_delivery_gave(machine: SagaMachine) -> None:
    named = DeliveryBooked(delivery_case_id="DLV-1", point_name="Arbat 1")
    assert _confirmation(machine, named).params["delivery"] == "Arbat 1 (PP-1)"
    unnamed = DeliveryBooked(delivery_case_id="DLV-1")  # a delivery worker of a release before
    assert _confirmation(machine, unnamed).params["delivery"] == "PP-1"


def test_a_notification_refused_past_the_budget_is_tried_ever_less_often(
    machine: SagaMachine,
) -> None:
    """A bug in the participant (PARTICIPANT_ERROR) is not sent, and dead-lettered, every few
    seconds for good; it still goes through once fixed."""
    d = confirmed_until_notification(machine)
    now, waits, slowed = T0, [], []
    for _ in range(POLICY.budget + 3):
        d = answer(machine, d, StepFailed(reason="PARTICIPANT_ERROR"), now)
        assert d.instance.status is SagaStatus.RUNNING
        assert not d.outgoing
        assert d.instance.next_action_at is not None
        waits.append((d.instance.next_action_at - now).total_seconds())
        slowed.append(any(h.event == "retries-slowed" for h in d.history))
        now = d.instance.next_action_at
        d = machine.on_due(d.instance, now)
        assert kinds(d) == ["NotifyCustomer"]
    assert waits == [1, 2, 4, 8, 16, 32]  # within the budget (3): the backoff, up to 4 s
    assert slowed == [False, False, False, True, True, True]
    d = answer(machine, d, Notified(delivered=True), now)
    assert status(d).status == "CONFIRMED"


def test_a_notification_unavailable_for_now_keeps_its_backoff(machine: SagaMachine) -> None:
    d = confirmed_until_notification(machine)
    now = T0
    for _ in range(POLICY.budget + 3):
        d = answer(machine, d, StepFailed(reason="CHANNEL_UNAVAILABLE", retryable=True), now)
        assert d.instance.next_action_at is not None
        assert d.instance.next_action_at - now <= timedelta(seconds=POLICY.backoff_max_s)
        now = d.instance.next_action_at
        d = machine.on_due(d.instance, now)
