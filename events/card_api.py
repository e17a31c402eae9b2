"""Bodies of the card service's HTTP API (seeds 000, 001, 004, 002) and its problem details."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from events.base import Identifier, unstorable
from events.masking import mask_card_numbers
from events.money import (
    Amount,
    AmountNumber,
    BalanceNumber,
    CurrencyCode,
    coerce_amount,
    money_out,
    money_schema,
)

CentsAmount = Annotated[
    Decimal, BeforeValidator(coerce_amount), money_schema(positive=True), money_out
]
"""An amount of seeds 001/004: checked by the field so the error reads as the seed's."""


def _whole(value: object) -> object:
    """JSON's integers (1 and 1.0 alike), never booleans or strings."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


def _storable(value: object) -> None:
    if isinstance(value, str):
        if unstorable(value):
            raise ValueError("text must be valid Unicode without NUL characters")
    elif isinstance(value, dict):
        for item in value.values():
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank text is not allowed")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=100),
    AfterValidator(_not_blank),
    AfterValidator(mask_card_numbers),
]
"""A name as sent (never trimmed), with at least one character that is not a space; a card
number in it is stored, and answered, masked (``mask_card_numbers``)."""


class Body(BaseModel):
    """A request body: unknown members are ignored (a tolerant reader, like the topics),
    text is validated as sent (never trimmed), and text that no database could store (NUL,
    lone surrogates) is refused up front."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _only_storable_text(cls, data: object) -> object:
        _storable(data)
        return data


class CamelBody(Body):
    """A body of seeds 000, 001, 004: camelCase on the wire."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Problem(BaseModel):
    """RFC 7807 problem details, with the project's ``code`` member."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[str] | None = None
    reason: str | None = Field(
        default=None, description="why a saga or a payment refused (e.g. INSUFFICIENT_FUNDS)"
    )
    transaction_id: str | None = Field(
        default=None, description="the declined transaction, recorded (403, 422)"
    )
    payment_id: str | None = Field(
        default=None, description="the invoice payment refused, or the key's first payment"
    )


# -- seed 000 -------------------------------------------------------------------------------


RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class VirtualCardRequest(CamelBody):
    """``POST /v1/cards/virtual``: the body is optional; the user comes from the token."""

    currency: CurrencyCode = "KZT"
    request_id: RequestId | None = None


class VirtualCard(CamelModel):
    card_id: str
    masked_id: str
    balance: BalanceNumber
    currency: str


class SagaAccepted(CamelModel):
    """202: the saga runs on; poll ``statusUrl``."""

    request_id: str
    status: str
    status_url: str


class VirtualCardStatus(CamelModel):
    request_id: str
    status: str  # RUNNING | ISSUED | REJECTED | FAILED
    reason: str | None = None
    card: VirtualCard | None = None


# -- seeds 004 and 001 ----------------------------------------------------------------------


class CreateCard(CamelBody):
    card_number: str = Field(
        description="16 digits; stored only as a salted SHA-256",
        json_schema_extra={"pattern": "^[0-9]{16}$"},
    )
    credit_limit_usd: CentsAmount = Field(description="positive, at most 2 fractional digits")

    @field_validator("card_number")
    @classmethod
    def _sixteen_digits(cls, value: str) -> str:
        if len(value) != 16 or not value.isascii() or not value.isdigit():
            raise ValueError("Card number must be exactly 16 digits")
        return value

    @field_validator("credit_limit_usd")
    @classmethod
    def _positive_limit(cls, value: Decimal) -> Decimal:
        return _cents_amount(value, "Credit limit")


class CardCreated(CamelModel):
    card_id: str


class RegisteredCard(CamelModel):
    card_id: str
    credit_limit_usd: AmountNumber
    created_at: dt.datetime


_CALENDAR_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class CreatePurchase(CamelBody):
    description: str = Field(json_schema_extra={"minLength": 1, "maxLength": 50})
    transaction_date: str = Field(
        description="ISO 8601 date, YYYY-MM-DD",
        json_schema_extra={"format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    )
    amount_usd: CentsAmount

    @field_validator("description")
    @classmethod
    def _short(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Description is required")
        if len(value) > 50:
            raise ValueError("Description cannot exceed 50 characters")
        return mask_card_numbers(value)

    @field_validator("transaction_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        """Only YYYY-MM-DD: ``date.fromisoformat`` alone takes week and basic forms too."""
        if _CALENDAR_DATE.fullmatch(value):
            try:
                dt.date.fromisoformat(value)
                return value
            except ValueError:
                pass
        raise ValueError("Transaction date must be an ISO 8601 date (YYYY-MM-DD)")

    @field_validator("amount_usd")
    @classmethod
    def _positive_amount(cls, value: Decimal) -> Decimal:
        return _cents_amount(value, "Amount")


class PurchaseCreated(CamelModel):
    purchase_id: str


class Purchase(CamelModel):
    purchase_id: str
    card_id: str
    description: str
    transaction_date: dt.date
    amount_usd: AmountNumber


def _cents_amount(value: Decimal, what: str) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be greater than zero")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"{what} must have at most 2 decimal places")
    if value >= Decimal("1e13"):
        raise ValueError(f"{what} is too large")
    return value


# -- seed 002 -------------------------------------------------------------------------------


class CardType(StrEnum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"
    MULTIPLE = "MULTIPLE"


class CardVariant(StrEnum):
    PHYSICAL = "PHYSICAL"
    VIRTUAL = "VIRTUAL"


class BlockReason(StrEnum):
    LOST = "LOST"
    STOLEN = "STOLEN"
    DAMAGED = "DAMAGED"
    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    REVERSED = "REVERSED"
    DECLINED = "DECLINED"


ACCOUNT_ID = r"^[A-Za-z0-9._:@-]+$"
AccountId = Annotated[str, Field(min_length=1, max_length=64, pattern=ACCOUNT_ID)]


class IssueCard(Body):
    account_id: AccountId
    type: CardType
    variant: CardVariant
    credit_limit: Amount | None = Field(default=None, description="required for CREDIT, MULTIPLE")
    currency: CurrencyCode = "BRL"


class Card(BaseModel):
    id: str
    account_id: str
    last_four: str
    brand: str
    type: CardType
    variant: CardVariant
    status: str
    block_reason: str | None = None
    currency: str
    credit_limit: BalanceNumber | None
    available_limit: BalanceNumber | None
    daily_limit: BalanceNumber | None = None
    transaction_limit: BalanceNumber | None = None
    international_enabled: bool
    expiry_month: int
    expiry_year: int
    created_at: dt.datetime


class CardList(BaseModel):
    account_id: str
    cards: list[Card]


class CardDetails(BaseModel):
    card_number: str
    cvv: str
    expiry: str


class BlockCard(Body):
    reason: BlockReason


class UpdateLimits(Body):
    daily_limit: Amount | None = None
    transaction_limit: Amount | None = None
    international_enabled: StrictBool | None = None


MerchantCategory = Annotated[str, Field(pattern=r"^[0-9]{4}$", description="ISO 18245 MCC")]


class Authorize(Body):
    card_id: str = Field(max_length=64)
    amount: Amount
    currency: CurrencyCode
    merchant_name: Name
    merchant_category: MerchantCategory
    installments: WholeNumber = Field(default=1, ge=1, le=48)


class Authorization(BaseModel):
    """An approved authorization (a declined one is a 403/422 problem with its id)."""

    id: str
    authorization_code: str | None
    status: str = "APPROVED"
    transaction_status: TransactionStatus
    amount: BalanceNumber
    currency: str


class Capture(Body):
    amount: Amount | None = None


class Reverse(Body):
    amount: Amount | None = None
    reason: BlockReason | str = Field(default="CUSTOMER_REQUEST", max_length=64)


class Transaction(BaseModel):
    id: str
    card_id: str
    amount: BalanceNumber
    captured_amount: BalanceNumber
    reversed_amount: BalanceNumber
    currency: str
    merchant_name: str
    merchant_category: str
    installments: int
    status: TransactionStatus
    authorization_code: str | None
    decline_reason: str | None
    created_at: dt.datetime


class TransactionPage(BaseModel):
    card_id: str
    limit: int
    offset: int
    total: int
    transactions: list[Transaction]


class ThreeDsInit(Body):
    card_id: str = Field(max_length=64)
    amount: Amount
    currency: CurrencyCode | None = Field(default=None, description="the card's currency if absent")
    merchant_name: Name
    merchant_category: MerchantCategory = "5999"
    return_url: str = Field(min_length=1, max_length=500, pattern=r"^https?://")


class ThreeDsChallenge(BaseModel):
    transaction_id: str
    acs_url: str
    pareq: str
    status: str


class ThreeDsComplete(Body):
    transaction_id: str = Field(max_length=64)
    pares: str = Field(min_length=1, max_length=4_000)


class Invoice(BaseModel):
    id: str
    card_id: str
    due_date: dt.date
    close_date: dt.date
    total_amount: BalanceNumber
    minimum_payment: BalanceNumber
    transactions: list[Transaction]


class PayInvoice(Body):
    source_account_id: Identifier = Field(description="the paying client: a `customer_id`")
    amount: Amount


class AcsAnswer(BaseModel):
    """What the simulated ACS hands back after the cardholder's challenge."""

    transaction_id: str
    pares: str


class InvoicePayment(BaseModel):
    payment_id: str
    card_id: str
    amount: BalanceNumber
    status: str  # PENDING | PAID | REJECTED
    reason: str | None = None
    status_url: str
