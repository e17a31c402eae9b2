"""Billing: card wallets (seed 000), client wallets and gift cards (seed 003), their messages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

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


class OpenCustomerWallet(Command):
    """Open a new client's wallet with balance 0. ``pending``: not usable yet, until its
    registration has passed every check (``ActivateCustomerWallet``), no money moves on it;
    without (an orchestrator of a release before that step), open at once."""

    kind: Literal["OpenCustomerWallet"] = "OpenCustomerWallet"
    customer_id: str
    currency: CurrencyCode
    pending: bool = False


class ActivateCustomerWallet(Command):
    """The registration passed: the client's wallet takes payments and top-ups from now on."""

    kind: Literal["ActivateCustomerWallet"] = "ActivateCustomerWallet"
    customer_id: str
    wallet_id: str


class CloseCustomerWallet(Command):
    """Compensation: close the wallet this saga opened (only while it is still empty)."""

    kind: Literal["CloseCustomerWallet"] = "CloseCustomerWallet"


class CheckCustomer(Command):
    """Is this a registered client (one with an open wallet)? With ``currency``, also: does
    the wallet hold that currency (a top-up in another one is refused before the charge)."""

    kind: Literal["CheckCustomer"] = "CheckCustomer"
    customer_id: str
    currency: str | None = Field(default=None, exclude_if=lambda currency: currency is None)


class BalanceSource(StrEnum):
    WALLET = "wallet"
    GIFT_CARD = "gift_card"


class DebitBalance(Command):
    """Take an amount from the client's wallet or from one of the client's active gift cards."""

    kind: Literal["DebitBalance"] = "DebitBalance"
    customer_id: str
    source: BalanceSource
    gift_card_id: str | None = None
    amount_minor: int = Field(gt=0)
    currency: str
    purpose: str


class RefundBalance(Command):
    """Compensation: put this saga step's debit back on the account it came from."""

    kind: Literal["RefundBalance"] = "RefundBalance"


class CreditWallet(Command):
    """Add a top-up to the client's wallet."""

    kind: Literal["CreditWallet"] = "CreditWallet"
    customer_id: str
    amount_minor: int = Field(gt=0)
    currency: str


class IssueGiftCard(Command):
    """Create an inactive gift card holding ``amount_minor``, with a one-time activation code."""

    kind: Literal["IssueGiftCard"] = "IssueGiftCard"
    purchaser_id: str
    amount_minor: int = Field(gt=0)
    currency: str
    recipient_name: str
    design: str


class CancelGiftCard(Command):
    """Compensation: cancel this saga's gift card before anybody could activate it."""

    kind: Literal["CancelGiftCard"] = "CancelGiftCard"


class RedeemActivationCode(Command):
    """Give the gift card behind a code to a client; a code works once. ``pending``: the card
    is only taken (ACTIVATING: no other activation gets it, nothing is paid from it) until its
    activation has passed every step (``ActivateGiftCard``); without (an orchestrator of a
    release before that step), active at once.

    Carries only the SHA-256 digest of the code, never the code itself.
    """

    kind: Literal["RedeemActivationCode"] = "RedeemActivationCode"
    customer_id: str
    code_digest: str = Field(min_length=64, max_length=64)
    pending: bool = False


class UndoRedemption(Command):
    """Compensation: the gift card goes back to inactive and its code works again."""

    kind: Literal["UndoRedemption"] = "UndoRedemption"


class ActivateGiftCard(Command):
    """The activation passed: the gift card this saga took pays from now on."""

    kind: Literal["ActivateGiftCard"] = "ActivateGiftCard"
    gift_card_id: str


class CustomerWalletOpened(Reply):
    kind: Literal["CustomerWalletOpened"] = "CustomerWalletOpened"
    wallet_id: str
    currency: str


class CustomerWalletActivated(Reply):
    kind: Literal["CustomerWalletActivated"] = "CustomerWalletActivated"
    wallet_id: str


class CustomerChecked(Reply):
    kind: Literal["CustomerChecked"] = "CustomerChecked"
    wallet_id: str


class BalanceDebited(Reply):
    kind: Literal["BalanceDebited"] = "BalanceDebited"
    account_id: str
    balance_minor: int


class WalletCredited(Reply):
    kind: Literal["WalletCredited"] = "WalletCredited"
    wallet_id: str
    balance_minor: int


class GiftCardIssued(Reply):
    kind: Literal["GiftCardIssued"] = "GiftCardIssued"
    gift_card_id: str


class CodeRedeemed(Reply):
    kind: Literal["CodeRedeemed"] = "CodeRedeemed"
    gift_card_id: str
    balance_minor: int
    currency: str


class GiftCardActivated(Reply):
    kind: Literal["GiftCardActivated"] = "GiftCardActivated"
    gift_card_id: str


BillingCommand = Annotated[
    OpenCardWallet
    | CloseCardWallet
    | OpenCustomerWallet
    | ActivateCustomerWallet
    | CloseCustomerWallet
    | CheckCustomer
    | DebitBalance
    | RefundBalance
    | CreditWallet
    | IssueGiftCard
    | CancelGiftCard
    | RedeemActivationCode
    | UndoRedemption
    | ActivateGiftCard,
    Field(discriminator="kind"),
]

SUPPORTED_CURRENCIES = frozenset({"KZT", "RUB", "USD", "EUR", "BRL"})
UNSUPPORTED_CURRENCY: Final = "UNSUPPORTED_CURRENCY"


def unsupported(currency: str) -> str | None:
    """``UNSUPPORTED_CURRENCY`` for a currency billing keeps no money in; None for one it does
    (a saga's refusal at its start, ``Saga.refuse``)."""
    return UNSUPPORTED_CURRENCY if currency not in SUPPORTED_CURRENCIES else None


UNKNOWN_CUSTOMER: Final = "UNKNOWN_CUSTOMER"
INSUFFICIENT_FUNDS: Final = "INSUFFICIENT_FUNDS"
BALANCE_LIMIT_REACHED: Final = "BALANCE_LIMIT_REACHED"
CURRENCY_MISMATCH: Final = "CURRENCY_MISMATCH"
GIFT_CARD_NOT_FOUND: Final = "GIFT_CARD_NOT_FOUND"
GIFT_CARD_INACTIVE: Final = "GIFT_CARD_INACTIVE"
INVALID_ACTIVATION_CODE: Final = "INVALID_ACTIVATION_CODE"
CODE_ALREADY_USED: Final = "CODE_ALREADY_USED"
CODE_ACTIVATION_IN_PROGRESS: Final = "CODE_ACTIVATION_IN_PROGRESS"
WALLET_NOT_EMPTY: Final = "WALLET_NOT_EMPTY"
WALLET_CLOSED: Final = "WALLET_CLOSED"
