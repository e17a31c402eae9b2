"""Wallet top-up (seed 003): check the client, charge through the bank, credit the wallet,
tell the client.

If the credit fails the charge is refunded. The credit is the point of no return. The check
came later than the other steps (2026-11-28): a client the shop does not know is no longer
charged and refunded; it is declared last and placed first (``Saga.step``), so top-ups in
flight across the upgrade keep their steps. Since 2026-11-28 (seventeenth session) the check
also asks that the wallet hold the top-up's currency, so a top-up in another one is refused
before the charge too (it was charged, refused by the credit and refunded).
"""

from __future__ import annotations

from events import topics
from events.base import Reply, expect
from events.billing import UNKNOWN_CUSTOMER, CheckCustomer, CreditWallet, WalletCredited
from events.money import from_minor, to_minor
from events.notification import NotifyCustomer
from events.wallets import TopUpRequested, TopUpStatus, TopUpStatusChanged
from orchestrator.engine.definition import Saga, SagaResult
from orchestrator.engine.participants import BILLING, NOTIFICATION, PAYMENT
from orchestrator.sagas.paying import (
    BANK_RETRIES,
    CUSTOMER_RECHECKS,
    Paying,
    charge_bank,
    payment_failed,
    refund_bank,
)


class WalletTopUp(Paying):
    topup_id: str
    balance_minor: int | None = None


def begin(request: TopUpRequested) -> WalletTopUp:
    return WalletTopUp(
        topup_id=request.topup_id,
        customer_id=request.customer_id,
        amount_minor=to_minor(request.amount),
        currency=request.currency,
        payment=request.payment,
        purpose="wallet-topup",
    )


def check_client(saga: WalletTopUp) -> CheckCustomer:
    return CheckCustomer(customer_id=saga.customer_id, currency=saga.currency)


def credit_wallet(saga: WalletTopUp) -> CreditWallet:
    return CreditWallet(
        customer_id=saga.customer_id, amount_minor=saga.amount_minor, currency=saga.currency
    )


def with_balance(saga: WalletTopUp, reply: Reply) -> WalletTopUp:
    reply = expect(reply, WalletCredited)
    return saga.model_copy(update={"balance_minor": reply.balance_minor})


def notify(saga: WalletTopUp) -> NotifyCustomer:
    return NotifyCustomer(
        customer_id=saga.customer_id,
        template="wallet-topped-up",
        params={
            "amount": str(from_minor(saga.amount_minor)),
            "currency": saga.currency,
            "balance": str(from_minor(saga.balance_minor or 0)),
        },
    )


def topup_status(saga: WalletTopUp, result: SagaResult) -> TopUpStatusChanged:
    completed = result.status == TopUpStatus.COMPLETED
    return TopUpStatusChanged(
        topup_id=saga.topup_id,
        saga_id=result.saga_id,
        status=TopUpStatus(result.status),
        reason=result.reason,
        balance=from_minor(saga.balance_minor)
        if completed and saga.balance_minor is not None
        else None,
        currency=saga.currency,
    )


WALLET_TOPUP_SAGA: Saga[WalletTopUp, TopUpRequested] = (
    Saga(
        "wallet-topup",
        state=WalletTopUp,
        trigger=TopUpRequested,
        inbound_topic=topics.WALLETS_TOPUP_REQUESTED,
        outcome_topic=topics.WALLETS_STATUS,
        begin=begin,
        outcome=topup_status,
        outcome_key=lambda saga: saga.topup_id,
        success_status=TopUpStatus.COMPLETED,
        failure_status=TopUpStatus.CANCELLED,
    )
    .notify_failure(NOTIFICATION, payment_failed)
    .step("charge-bank", PAYMENT, send=charge_bank, compensate=refund_bank, retries=BANK_RETRIES)
    .step("credit-wallet", BILLING, send=credit_wallet, on_success=with_balance)
    .step("notify-client", NOTIFICATION, send=notify, retriable=True)
    .step(
        "check-customer",
        BILLING,
        send=check_client,
        reads_only=True,
        recheck=[UNKNOWN_CUSTOMER],
        retries=CUSTOMER_RECHECKS,
        before="charge-bank",
    )
)
