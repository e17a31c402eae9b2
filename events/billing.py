"""Billing: wallets behind cards (seed 000) and their commands and replies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from events.base import Command, Reply
from events.money import Balance, CurrencyCode


class OpenCardWallet(Command):
    """Initialise the wallet of a card: balance 0 in the given currency."""

    kind: Literal["OpenCardWallet"] = "OpenCardWallet"
    card_id: str
    currency: CurrencyCode


class CloseCardWallet(Command):
    """Compensation: close the card's wallet (idempotent; nothing to do if never opened)."""

    kind: Literal["CloseCardWallet"] = "CloseCardWallet"


class WalletOpened(Reply):
    kind: Literal["WalletOpened"] = "WalletOpened"
    wallet_id: str
    balance: Balance
    currency: str


BillingCommand = Annotated[OpenCardWallet | CloseCardWallet, Field(discriminator="kind")]

SUPPORTED_CURRENCIES = frozenset({"KZT", "RUB", "USD", "EUR"})
UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"
