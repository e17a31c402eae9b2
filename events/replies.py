"""The union of every reply the orchestrator can receive on ``orchestra.replies``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from events.base import Compensated, StepFailed
from events.bench import BenchStepDone
from events.billing import (
    BalanceDebited,
    CodeRedeemed,
    CustomerChecked,
    CustomerWalletActivated,
    CustomerWalletOpened,
    GiftCardActivated,
    GiftCardIssued,
    WalletCredited,
    WalletOpened,
)
from events.card_invoices import CardLimitRestored, InvoicePaymentClosed
from events.cards import CardActivated, CardReserved
from events.delivery import DeliveryBooked
from events.notification import AccountCreated, Notified
from events.payment import BankCharged, GiftCardBound
from events.store import StockReserved

AnyReply = Annotated[
    StepFailed
    | Compensated
    | CardReserved
    | CardActivated
    | WalletOpened
    | BenchStepDone
    | CustomerWalletOpened
    | CustomerWalletActivated
    | CustomerChecked
    | BalanceDebited
    | WalletCredited
    | GiftCardIssued
    | CodeRedeemed
    | GiftCardActivated
    | BankCharged
    | GiftCardBound
    | StockReserved
    | DeliveryBooked
    | AccountCreated
    | Notified
    | CardLimitRestored
    | InvoicePaymentClosed,
    Field(discriminator="kind"),
]

REPLY_ADAPTER: TypeAdapter[AnyReply] = TypeAdapter(AnyReply)
