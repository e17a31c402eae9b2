"""Wallet top-up (seed 003, "Пополнение кошелька"): upstream record and outcome."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from events.base import Identifier, Outcome, UpstreamRecord
from events.money import Amount, Balance, CurrencyCode
from events.payment import UpstreamBankPayment


class TopUpStatus(StrEnum):
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class TopUpRequested(UpstreamRecord):
    """``wallets.topup-requested``: a client adds money to the wallet from a bank card or SBP."""

    event_type: ClassVar[str] = "wallets.topup-requested.v1"

    topup_id: Identifier
    customer_id: Identifier
    amount: Amount
    currency: CurrencyCode
    payment: UpstreamBankPayment

    def business_key(self) -> str:
        return self.topup_id


class TopUpStatusChanged(Outcome):
    """``wallets.status``: the outcome of one top-up; ``balance`` is the wallet's after it."""

    topup_id: str
    saga_id: str
    status: TopUpStatus
    reason: str | None = None
    balance: Balance | None = None
    currency: str | None = None
