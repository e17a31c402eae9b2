"""Card invoice payment (seed 002): the API's request to the orchestrator, outcome, commands."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Final, Literal

from pydantic import Field

from events.base import Command, Identifier, Outcome, Reply, UpstreamRecord
from events.money import MAX_MINOR


class InvoicePaymentStatus(StrEnum):
    PAID = "PAID"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class InvoicePaymentRequested(UpstreamRecord):
    """``cards.invoice-payment-requested``: published by the HTTP API for ``/invoice/pay``."""

    event_type: ClassVar[str] = "cards.invoice-payment-requested.v1"

    payment_id: Identifier
    card_id: Identifier
    source_account_id: Identifier
    amount_minor: int = Field(gt=0, le=MAX_MINOR)
    currency: str = Field(min_length=3, max_length=3)

    def business_key(self) -> str:
        return self.payment_id


class InvoicePaymentStatusChanged(Outcome):
    """``cards.invoice-payments.status``."""

    payment_id: str
    saga_id: str
    status: InvoicePaymentStatus
    reason: str | None = None


class RestoreCardLimit(Command):
    """Give the paid amount back to the card's available limit and mark the payment paid."""

    kind: Literal["RestoreCardLimit"] = "RestoreCardLimit"
    payment_id: str
    card_id: str
    amount_minor: int = Field(gt=0)


class CardLimitRestored(Reply):
    kind: Literal["CardLimitRestored"] = "CardLimitRestored"
    available_minor: int


class UndoCardLimitRestore(Command):
    """Compensation of ``RestoreCardLimit``: the amount comes off the card's available limit
    again (the restore arrived after its step timed out), or, not arrived yet, it never
    applies."""

    kind: Literal["UndoCardLimitRestore"] = "UndoCardLimitRestore"
    payment_id: str
    card_id: str
    amount_minor: int = Field(gt=0)


class CloseInvoicePayment(Command):
    """The failure notice of an invoice payment: the payment's record gets the saga's end
    (one refused before the card's side, at the debit, was left PENDING)."""

    kind: Literal["CloseInvoicePayment"] = "CloseInvoicePayment"
    payment_id: str
    status: InvoicePaymentStatus
    reason: str | None = None


class InvoicePaymentClosed(Reply):
    kind: Literal["InvoicePaymentClosed"] = "InvoicePaymentClosed"
    payment_id: str


INVOICE_OVERPAID: Final = "INVOICE_OVERPAID"
CREDIT_SPENT: Final = "CREDIT_SPENT"
CARD_NOT_FOUND: Final = "CARD_NOT_FOUND"
