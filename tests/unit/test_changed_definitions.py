"""A saga definition changed under sagas in flight: a step added where it belongs keeps every
saga at the step it was at, and what is known at the start not to succeed runs no step."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from events.base import Compensated, StepFailed
from events.billing import (
    CURRENCY_MISMATCH,
    UNKNOWN_CUSTOMER,
    BalanceDebited,
    CheckCustomer,
    CustomerChecked,
    WalletCredited,
)
from events.delivery import DeliveryBooked
from events.envelope import Envelope
from events.giftcards import GiftCardPurchaseRequested, GiftCardPurchaseStatus
from events.notification import NotifyCustomer
from events.orders import DeliveryChoice
from events.payment import BankCharged, BankPaymentDetails, PaymentDetails, PaymentMethod
from events.store import OrderLine, StockReserved
from events.wallets import TopUpRequested, TopUpStatusChanged
from orchestrator.engine.definition import Saga
from orchestrator.engine.instance import SagaStatus
from orchestrator.engine.machine import NO_STEP, Decision, SagaMachine
from orchestrator.engine.participants import BILLING, NOTIFICATION, PAYMENT
from orchestrator.errors import DefinitionError
from orchestrator.sagas import ALL_SAGAS, wallet_topup
from orchestrator.sagas.bench import BENCH_SAGA
from orchestrator.sagas.giftcards import GIFT_CARD_PURCHASE_SAGA
from orchestrator.sagas.order_checkout import ORDER_CHECKOUT_SAGA
from orchestrator.sagas.paying import (
    BANK_RETRIES,
    charge_bank,
    check_customer,
    payment_failed,
    refund_bank,
)
from orchestrator.sagas.wallet_topup import WALLET_TOPUP_SAGA
from tests.unit.test_machine import POLICY, T0, answer, answered_each_time, kinds
from tests.unit.test_order_machine import order

CARD = BankPaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok")


def released_topup() -> Saga[Any, Any]:
    """The top-up as released before its check: charge, credit, tell."""
    return (
        Saga(
            "wallet-topup",
            state=wallet_topup.WalletTopUp,
            trigger=TopUpRequested,
            inbound_topic=WALLET_TOPUP_SAGA.inbound_topic,
            outcome_topic=WALLET_TOPUP_SAGA.outcome_topic,
            begin=wallet_topup.begin,
            outcome=wallet_topup.topup_status,
            outcome_key=lambda saga: saga.topup_id,
            success_status=WALLET_TOPUP_SAGA.success_status,
            failure_status=WALLET_TOPUP_SAGA.failure_status,
        )
        .notify_failure(NOTIFICATION, payment_failed)
        .step(
            "charge-bank", PAYMENT, send=charge_bank, compensate=refund_bank, retries=BANK_RETRIES
        )
        .step("credit-wallet", BILLING, send=wallet_topup.credit_wallet)
        .step("notify-client", NOTIFICATION, send=wallet_topup.notify, retriable=True)
    )


def topup() -> TopUpRequested:
    return TopUpRequested(
        topup_id="t-1", customer_id="c-1", amount=Decimal(100), currency="RUB", payment=CARD
    )


def start(machine: SagaMachine) -> Decision:
    return machine.start(topup(), Envelope(type="wallets.topup-requested.v1"), T0)


def topup_status(decision: Decision) -> TopUpStatusChanged:
    (status,) = [m.body for m in decision.outgoing if isinstance(m.body, TopUpStatusChanged)]
    return status


@pytest.fixture
def new() -> SagaMachine:
    return SagaMachine(WALLET_TOPUP_SAGA, POLICY)


def test_a_step_added_before_others_runs_in_its_place_for_new_sagas(new: SagaMachine) -> None:
    d = start(new)
    assert kinds(d) == ["CheckCustomer"]
    d = answer(new, d, CustomerChecked(wallet_id="W-1"))
    assert kinds(d) == ["ChargeBank"]
    d = answer(new, d, BankCharged(payment_id="P-1", amount_minor=10_000))
    assert kinds(d) == ["CreditWallet"]
    d = answer(new, d, WalletCredited(wallet_id="W-1", balance_minor=10_000))
    assert kinds(d) == ["NotifyCustomer"]


def test_a_client_the_shop_does_not_know_is_refused_before_any_charge(new: SagaMachine) -> None:
    d = answered_each_time(new, start(new), StepFailed(reason=UNKNOWN_CUSTOMER))
    assert d.instance.status is SagaStatus.ABORTED
    assert (topup_status(d).status, topup_status(d).reason) == ("CANCELLED", UNKNOWN_CUSTOMER)
    assert kinds(d) == ["TopUpStatusChanged"]  # nothing to refund, nobody to tell


def test_the_check_asks_for_the_top_ups_currency_and_no_other_check_names_one(
    new: SagaMachine,
) -> None:
    """An older billing refuses a member it does not know: only the top-up's check sends one."""
    (check,) = [m.body for m in start(new).outgoing]
    assert check == CheckCustomer(customer_id="c-1", currency="RUB")
    assert "currency" not in CheckCustomer(customer_id="c-1").model_dump(mode="json")


def test_a_top_up_in_another_currency_than_the_wallet_is_refused_before_any_charge(
    new: SagaMachine,
) -> None:
    d = answer(new, start(new), StepFailed(reason=CURRENCY_MISMATCH))
    assert (topup_status(d).status, topup_status(d).reason) == ("CANCELLED", CURRENCY_MISMATCH)
    assert "ChargeBank" not in kinds(d)


def test_a_saga_started_before_the_change_keeps_its_step_and_never_runs_the_new_one(
    new: SagaMachine,
) -> None:
    old = SagaMachine(released_topup(), POLICY)
    d = start(old)
    assert kinds(d) == ["ChargeBank"]
    d = answer(new, d, BankCharged(payment_id="P-1", amount_minor=10_000))
    assert kinds(d) == ["CreditWallet"]
    d = answer(new, d, StepFailed(reason="BALANCE_LIMIT_REACHED"))
    assert kinds(d) == ["RefundBank"]
    d = answer(new, d, Compensated())
    assert d.instance.status is SagaStatus.ABORTED
    assert kinds(d) == ["TopUpStatusChanged", "NotifyCustomer"]


def test_a_saga_recorded_by_the_new_definition_reads_its_step_by_slot(new: SagaMachine) -> None:
    d = answer(new, start(new), CustomerChecked(wallet_id="W-1"))
    assert d.instance.step_index == WALLET_TOPUP_SAGA.steps[1].slot == 0  # charge-bank
    d = answer(new, start(new), StepFailed(reason="TIMEOUT", retryable=True))
    assert d.instance.step_index == 3  # check-customer, its backoff scheduled
    again = new.on_due(d.instance, d.instance.next_action_at or T0)
    assert kinds(again) == ["CheckCustomer"]


def _three() -> Saga[Any, Any]:
    return (
        released_topup()
        .step("first", BILLING, send=check_customer, reads_only=True, before="charge-bank")
        .step(
            "last", BILLING, send=wallet_topup.credit_wallet, retriable=True, before="notify-client"
        )
    )


def test_before_places_a_step_in_the_order_and_gives_it_the_next_slot() -> None:
    saga = _three()
    assert [(s.name, s.slot) for s in saga.steps] == [
        ("first", 3),
        ("charge-bank", 0),
        ("credit-wallet", 1),
        ("last", 4),
        ("notify-client", 2),
    ]
    assert saga.position(4) == 3
    assert saga.step_at(5) is None


@pytest.mark.parametrize(
    ("before", "retriable", "why"),
    [
        ("no-such-step", False, "has no step 'no-such-step'"),
        (None, False, "follows a retriable step"),
        ("credit-wallet", True, "it cannot come before 'credit-wallet'"),
    ],
)
def test_a_step_that_cannot_go_where_it_is_put_is_refused(
    before: str | None, retriable: bool, why: str
) -> None:
    with pytest.raises(DefinitionError, match=why):
        released_topup().step(
            "check", BILLING, send=wallet_topup.credit_wallet, before=before, retriable=retriable
        )


def gift_card(currency: str) -> GiftCardPurchaseRequested:
    return GiftCardPurchaseRequested(
        purchase_id="g-1",
        customer_id="c-1",
        recipient_name="Ann",
        recipient_email="ann@example.com",
        amount=Decimal(50),
        currency=currency,
        payment=PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok"),
    )


def test_a_gift_card_in_a_currency_billing_does_not_keep_is_refused_before_payment() -> None:
    machine = SagaMachine(GIFT_CARD_PURCHASE_SAGA, POLICY)
    d = machine.start(gift_card("GBP"), Envelope(type="giftcards.purchase-requested.v1"), T0)
    assert d.instance.status is SagaStatus.ABORTED
    assert kinds(d) == ["GiftCardPurchaseStatus", "NotifyCustomer"]
    status, notice = (m.body for m in d.outgoing)
    assert isinstance(status, GiftCardPurchaseStatus)
    assert (status.status, status.reason) == ("CANCELLED", "UNSUPPORTED_CURRENCY")
    assert isinstance(notice, NotifyCustomer)
    assert notice.params["why"] == "we do not take payments in this currency"
    assert [h.event for h in d.history] == ["started", "refused", "ended", "notice-sent"]
    assert d.instance.step_index == NO_STEP


def test_a_gift_card_in_a_kept_currency_goes_to_its_steps() -> None:
    machine = SagaMachine(GIFT_CARD_PURCHASE_SAGA, POLICY)
    d = machine.start(gift_card("RUB"), Envelope(type="giftcards.purchase-requested.v1"), T0)
    assert kinds(d) == ["CheckCustomer"]


class ReleasedOrderCheckout(BaseModel):
    """The order's state as the release before 2026-11-28 reads it: strict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    amount_minor: int
    currency: str
    payment: PaymentDetails
    purpose: str
    order_id: str
    lines: tuple[OrderLine, ...]
    delivery: DeliveryChoice
    picking_case_id: str | None = None
    delivery_case_id: str | None = None


def test_an_order_this_release_wrote_is_read_by_an_orchestrator_rolled_back() -> None:
    machine = SagaMachine(ORDER_CHECKOUT_SAGA, POLICY)
    d = machine.start(order(PaymentMethod.WALLET), Envelope(type="orders.submitted.v1"), T0)
    d = answer(machine, d, CustomerChecked(wallet_id="W-1"))
    d = answer(machine, d, BalanceDebited(account_id="wallet:W-1", balance_minor=0))
    d = answer(machine, d, StockReserved(picking_case_id="PICK-1"))
    d = answer(machine, d, DeliveryBooked(delivery_case_id="DLV-1", point_name="Arbat 1"))
    assert d.instance.data["delivery"]["point_name"] == "Arbat 1"
    released = ReleasedOrderCheckout.model_validate(d.instance.data)
    assert released.delivery_case_id == "DLV-1"


@pytest.mark.parametrize("saga", [*ALL_SAGAS, BENCH_SAGA], ids=lambda saga: saga.name)
def test_every_saga_reads_state_members_a_later_release_added(saga: Saga[Any, Any]) -> None:
    assert saga.state.model_config.get("extra") == "ignore"
