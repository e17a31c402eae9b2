"""Card invoice payment (seed 002): billing debits the source account, the card's limit is
restored. If the card side refuses, the debit is refunded."""

from __future__ import annotations

from events import topics
from events.billing import BalanceSource, DebitBalance, RefundBalance
from events.card_invoices import (
    CloseInvoicePayment,
    InvoicePaymentRequested,
    InvoicePaymentStatus,
    InvoicePaymentStatusChanged,
    RestoreCardLimit,
    UndoCardLimitRestore,
)
from orchestrator.engine.definition import Saga, SagaResult, SagaState
from orchestrator.engine.participants import BILLING, CARD_ISSUANCE


class InvoicePayment(SagaState):
    request: InvoicePaymentRequested


def debit_source(saga: InvoicePayment) -> DebitBalance:
    request = saga.request
    return DebitBalance(
        customer_id=request.source_account_id,
        source=BalanceSource.WALLET,
        amount_minor=request.amount_minor,
        currency=request.currency,
        purpose="card-invoices",
    )


def restore_limit(saga: InvoicePayment) -> RestoreCardLimit:
    request = saga.request
    return RestoreCardLimit(
        payment_id=request.payment_id, card_id=request.card_id, amount_minor=request.amount_minor
    )


def close_payment(saga: InvoicePayment, result: SagaResult) -> CloseInvoicePayment:
    return CloseInvoicePayment(
        payment_id=saga.request.payment_id,
        status=InvoicePaymentStatus(result.status),
        reason=result.reason,
    )


def undo_restore(saga: InvoicePayment) -> UndoCardLimitRestore:
    request = saga.request
    return UndoCardLimitRestore(
        payment_id=request.payment_id, card_id=request.card_id, amount_minor=request.amount_minor
    )


def payment_status(saga: InvoicePayment, result: SagaResult) -> InvoicePaymentStatusChanged:
    return InvoicePaymentStatusChanged(
        payment_id=saga.request.payment_id,
        saga_id=result.saga_id,
        status=InvoicePaymentStatus(result.status),
        reason=result.reason,
    )


INVOICE_PAYMENT_SAGA: Saga[InvoicePayment, InvoicePaymentRequested] = (
    Saga(
        "invoice-payment",
        state=InvoicePayment,
        trigger=InvoicePaymentRequested,
        inbound_topic=topics.CARDS_INVOICE_PAYMENT_REQUESTED,
        outcome_topic=topics.CARDS_INVOICE_PAYMENTS_STATUS,
        begin=lambda request: InvoicePayment(request=request),
        outcome=payment_status,
        outcome_key=lambda saga: saga.request.card_id,
        success_status=InvoicePaymentStatus.PAID,
        failure_status=InvoicePaymentStatus.REJECTED,
    )
    .notify_failure(CARD_ISSUANCE, close_payment)
    .step("debit-source", BILLING, send=debit_source, compensate=lambda _: RefundBalance())
    .step("restore-limit", CARD_ISSUANCE, send=restore_limit, compensate=undo_restore)
)
