"""Taking a client's money, shared by the sagas that sell something.

Two conditional steps: bank card and SBP go to payment (the bank API), wallet and gift
card go to billing. Exactly one of them runs for a saga; each has its own refund. A sale
that fails tells the client, once its compensations ran (seed 003: the payment result is
e-mailed either way; a sale that succeeds says so in its own last step).
"""

from __future__ import annotations

from typing import TypeVar

from events.base import UpstreamRecord
from events.billing import (
    BALANCE_LIMIT_REACHED,
    CURRENCY_MISMATCH,
    GIFT_CARD_INACTIVE,
    GIFT_CARD_NOT_FOUND,
    INSUFFICIENT_FUNDS,
    UNKNOWN_CUSTOMER,
    UNSUPPORTED_CURRENCY,
    WALLET_CLOSED,
    BalanceSource,
    CheckCustomer,
    DebitBalance,
    RefundBalance,
)
from events.card_invoices import CARD_NOT_FOUND, INVOICE_OVERPAID
from events.delivery import NO_DELIVERY_CAPACITY, UNKNOWN_DELIVERY_POINT
from events.money import from_minor
from events.notification import RECIPIENT_UNREACHABLE, NotifyCustomer
from events.payment import PAYMENT_DECLINED, ChargeBank, PaymentDetails, PaymentMethod, RefundBank
from events.store import OUT_OF_STOCK
from orchestrator.engine.definition import Saga, SagaResult, SagaState
from orchestrator.engine.machine import TIMEOUT, UNEXPECTED_REPLY
from orchestrator.engine.participants import BILLING, NOTIFICATION, PAYMENT


class Paying(SagaState):
    """The part of a saga's state that says who pays what, how."""

    customer_id: str
    amount_minor: int
    currency: str
    payment: PaymentDetails
    purpose: str


def through_bank(saga: Paying) -> bool:
    return saga.payment.method.through_bank


def from_balance(saga: Paying) -> bool:
    return not saga.payment.method.through_bank


def check_customer(saga: Paying) -> CheckCustomer:
    return CheckCustomer(customer_id=saga.customer_id)


def charge_bank(saga: Paying) -> ChargeBank:
    return ChargeBank(
        customer_id=saga.customer_id,
        amount_minor=saga.amount_minor,
        currency=saga.currency,
        method=saga.payment.method,
        card_token=saga.payment.card_token,
        purpose=saga.purpose,
    )


def refund_bank(_: Paying) -> RefundBank:
    return RefundBank()


def debit_balance(saga: Paying) -> DebitBalance:
    gift_card = saga.payment.method == PaymentMethod.GIFT_CARD
    return DebitBalance(
        customer_id=saga.customer_id,
        source=BalanceSource.GIFT_CARD if gift_card else BalanceSource.WALLET,
        gift_card_id=saga.payment.gift_card_id if gift_card else None,
        amount_minor=saga.amount_minor,
        currency=saga.currency,
        purpose=saga.purpose,
    )


def refund_balance(_: Paying) -> RefundBalance:
    return RefundBalance()


PAYMENT_FAILED = "payment-failed"

_SALES = {
    "orders": "order",
    "wallet-topup": "wallet top-up",
    "giftcards": "gift card purchase",
    "card-invoices": "card invoice payment",
}
"""What the client tried, in the client's words, by the saga's ``purpose``."""

_WHY = {
    PAYMENT_DECLINED: "the bank declined the payment",
    INSUFFICIENT_FUNDS: "the balance was not enough",
    GIFT_CARD_NOT_FOUND: "the gift card was not found among yours",
    GIFT_CARD_INACTIVE: "the gift card is not activated",
    CURRENCY_MISMATCH: "the payment is in another currency than the balance",
    BALANCE_LIMIT_REACHED: "the wallet would hold more than its limit",
    UNSUPPORTED_CURRENCY: "we do not take payments in this currency",
    WALLET_CLOSED: "the wallet is closed",
    CARD_NOT_FOUND: "the card was not found",
    INVOICE_OVERPAID: "the payment was more than the invoice's amount due",
    OUT_OF_STOCK: "an item is out of stock",
    NO_DELIVERY_CAPACITY: "no delivery slot is free at the chosen point",
    UNKNOWN_DELIVERY_POINT: "the chosen delivery point is unknown",
    RECIPIENT_UNREACHABLE: "the gift card could not be delivered to its recipient",
    TIMEOUT: "a service did not answer in time",
    UNEXPECTED_REPLY: "a service answered something unexpected",
    "PARTICIPANT_ERROR": "a service failed on it",
    "MANUAL": "it was cancelled by our staff",
}
"""The reason codes of failed sales, told to the client; another code is given as it is."""


def payment_failed(saga: Paying, result: SagaResult) -> NotifyCustomer | None:
    """The client's notice of a failed sale; none for a client the shop does not know."""
    if result.reason == UNKNOWN_CUSTOMER:
        return None
    return NotifyCustomer(
        customer_id=saga.customer_id,
        template=PAYMENT_FAILED,
        params={
            "purpose": saga.purpose,
            "what": _SALES.get(saga.purpose, saga.purpose),
            "amount": str(from_minor(saga.amount_minor)),
            "currency": saga.currency,
            "reason": result.reason or "-",
            "why": _WHY.get(result.reason or "", f"it failed ({result.reason or 'no reason'})"),
        },
    )


BANK_RETRIES = 3
"""An unavailable acquirer is retried this many times with backoff before TIMEOUT."""
CUSTOMER_RECHECKS = 3
"""A client billing does not know is asked about again this many times with backoff (0.5,
1 and 2 s at the default backoff) before UNKNOWN_CUSTOMER: a sale sent right after the
client's registration (which ends within a second) waits for it rather than being refused,
and a client who is really unknown is refused about 3.5 s later than at once."""


P = TypeVar("P", bound=Paying)
R = TypeVar("R", bound=UpstreamRecord)


def with_payment_steps(saga: Saga[P, R]) -> Saga[P, R]:
    """check-customer, then charge-bank or debit-balance (whichever the method needs); a
    failure is told to the client (``payment_failed``)."""
    return (
        saga.notify_failure(NOTIFICATION, payment_failed)
        .step(
            "check-customer",
            BILLING,
            send=check_customer,
            reads_only=True,
            recheck=[UNKNOWN_CUSTOMER],
            retries=CUSTOMER_RECHECKS,
        )
        .step(
            "charge-bank",
            PAYMENT,
            send=charge_bank,
            compensate=refund_bank,
            when=through_bank,
            retries=BANK_RETRIES,
        )
        .step(
            "debit-balance",
            BILLING,
            send=debit_balance,
            compensate=refund_balance,
            when=from_balance,
        )
    )
