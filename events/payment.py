"""Payment: how a client pays (bank card, SBP, wallet, gift card) and the payment messages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from events.base import Command, Identifier, Reply
from events.contacts import BLANK_IS_ABSENT
from events.masking import holds_card_number


class PaymentMethod(StrEnum):
    BANK_CARD = "bank_card"
    SBP = "sbp"
    WALLET = "wallet"
    GIFT_CARD = "gift_card"

    @property
    def through_bank(self) -> bool:
        """Bank card and SBP go through the bank API; wallet and gift card through billing."""
        return self in (PaymentMethod.BANK_CARD, PaymentMethod.SBP)


CardToken = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[!-~]+$")]
"""A bank card token as the acquirer issues it: visible ASCII, no spaces."""


class PaymentDetails(BaseModel):
    """The ``payment`` object of orders and gift card purchases.

    A bank card without a token is the client's saved card; a gift card payment without
    ``gift_card_id`` is refused by billing (GIFT_CARD_NOT_FOUND) with an outcome, not
    dead-lettered, so the order service always hears back.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    method: PaymentMethod
    card_token: Annotated[CardToken | None, BLANK_IS_ABSENT] = None
    gift_card_id: Annotated[Identifier | None, BLANK_IS_ABSENT] = None


class BankPaymentDetails(PaymentDetails):
    """The ``payment`` object of a wallet top-up: only bank card or SBP."""

    @model_validator(mode="after")
    def _through_bank(self) -> BankPaymentDetails:
        if not self.method.through_bank:
            raise ValueError("a top-up is paid by bank_card or sbp")
        return self


P = TypeVar("P", bound=PaymentDetails)


def _token_not_a_card_number(payment: P) -> P:
    """A card number (13 to 19 digits that pass the Luhn check) in the token would be kept
    with the saga and sent on: an upstream record with one is refused. Only upstream: a saga
    or a command of a release before keeps reading as it was."""
    if payment.card_token is not None and holds_card_number(payment.card_token):
        raise ValueError(
            "card_token is a card number, not a token: send the token the acquirer issued"
        )
    return payment


UpstreamPayment = Annotated[PaymentDetails, AfterValidator(_token_not_a_card_number)]
UpstreamBankPayment = Annotated[BankPaymentDetails, AfterValidator(_token_not_a_card_number)]


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
