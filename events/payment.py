"""Payment: how a client pays (bank card, SBP, wallet, gift card) and the payment messages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from events.base import Command, Identifier, Reply
from events.masking import looks_like_card_number


class PaymentMethod(StrEnum):
    BANK_CARD = "bank_card"
    SBP = "sbp"
    WALLET = "wallet"
    GIFT_CARD = "gift_card"

    @property
    def through_bank(self) -> bool:
        """Bank card and SBP go through the bank API; wallet and gift card through billing."""
        return self in (PaymentMethod.BANK_CARD, PaymentMethod.SBP)


def _not_a_card_number(token: str) -> str:
    if looks_like_card_number(token):
        raise ValueError("is a card number, not a token: send the token the acquirer issued")
    return token


CardToken = Annotated[
    str,
    Field(min_length=1, max_length=255, pattern=r"^[!-~]+$"),
    AfterValidator(_not_a_card_number),
]
"""A bank card token as the acquirer issues it: visible ASCII, no spaces, and never a card
number (one that passes the Luhn check), which would then be stored and sent on."""


class PaymentDetails(BaseModel):
    """The ``payment`` object of orders and gift card purchases.

    A bank card without a token is the client's saved card; a gift card payment without
    ``gift_card_id`` is refused by billing (GIFT_CARD_NOT_FOUND) with an outcome, not
    dead-lettered, so the order service always hears back.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    method: PaymentMethod
    card_token: CardToken | None = None
    gift_card_id: Identifier | None = None


class BankPaymentDetails(PaymentDetails):
    """The ``payment`` object of a wallet top-up: only bank card or SBP."""

    @model_validator(mode="after")
    def _through_bank(self) -> BankPaymentDetails:
        if not self.method.through_bank:
            raise ValueError("a top-up is paid by bank_card or sbp")
        return self


class ChargeBank(Command):
    """Take ``amount_minor`` from the client through the bank API (idempotent per saga step)."""

    kind: Literal["ChargeBank"] = "ChargeBank"
    customer_id: str
    amount_minor: int = Field(gt=0)
    currency: str
    method: PaymentMethod
    card_token: str | None = None
    purpose: str


class RefundBank(Command):
    """Compensation: give the charge of this saga step back (nothing if it never happened)."""

    kind: Literal["RefundBank"] = "RefundBank"


class BindGiftCard(Command):
    """Save an activated gift card among the client's means of payment."""

    kind: Literal["BindGiftCard"] = "BindGiftCard"
    customer_id: str
    gift_card_id: str


class UnbindGiftCard(Command):
    kind: Literal["UnbindGiftCard"] = "UnbindGiftCard"


class BankCharged(Reply):
    kind: Literal["BankCharged"] = "BankCharged"
    payment_id: str
    amount_minor: int


class GiftCardBound(Reply):
    kind: Literal["GiftCardBound"] = "GiftCardBound"
    gift_card_id: str


PaymentCommand = Annotated[
    ChargeBank | RefundBank | BindGiftCard | UnbindGiftCard, Field(discriminator="kind")
]

PAYMENT_DECLINED: Final = "PAYMENT_DECLINED"
ACQUIRER_UNAVAILABLE: Final = "ACQUIRER_UNAVAILABLE"
