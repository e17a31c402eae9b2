"""Gift cards (seed 003): purchase and activation requests and their outcomes."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from events.base import Identifier, Outcome, UpstreamRecord
from events.contacts import Email, PersonName
from events.money import Amount, Balance, CurrencyCode
from events.payment import UpstreamPayment


class GiftCardStatus(StrEnum):
    COMPLETED = "COMPLETED"
    ACTIVATED = "ACTIVATED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


DEFAULT_DESIGN = "classic"


def _classic_unless_given(design: object) -> object:
    """A design left empty (null or blank) is the default one, as one left out is."""
    if design is None or (isinstance(design, str) and not design.strip()):
        return DEFAULT_DESIGN
    return design


class GiftCardPurchaseRequested(UpstreamRecord):
    """``giftcards.purchase-requested``: a client buys a gift card for somebody."""

    event_type: ClassVar[str] = "giftcards.purchase-requested.v1"

    purchase_id: Identifier
    customer_id: Identifier
    recipient_name: PersonName
    recipient_email: Email
    amount: Amount
    currency: CurrencyCode
    design: Annotated[str, BeforeValidator(_classic_unless_given)] = Field(
        default=DEFAULT_DESIGN, min_length=1, max_length=64
    )
    payment: UpstreamPayment

    def business_key(self) -> str:
        return self.purchase_id


class GiftCardActivationRequested(UpstreamRecord):
    """``giftcards.activation-requested``: a client enters the code from the e-mail."""

    event_type: ClassVar[str] = "giftcards.activation-requested.v1"

    activation_id: Identifier
    customer_id: Identifier
    activation_code: str = Field(min_length=4, max_length=64, repr=False)

    def business_key(self) -> str:
        return self.activation_id

    @property
    def code_digest(self) -> str:
        return code_digest(self.activation_code)

    def digest_content(self) -> dict[str, Any]:
        """The code as billing reads it: ``abcd-efgh`` and ``ABCD EFGH`` ask the same."""
        return self.model_dump(exclude={"activation_code"}) | {"code_digest": self.code_digest}


def code_digest(code: str) -> str:
    """SHA-256 of a normalised activation code: what travels instead of the code."""
    normal = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(normal.encode()).hexdigest()


class GiftCardPurchaseStatus(Outcome):
    """``giftcards.status`` for a purchase; never carries the code."""

    purchase_id: str
    saga_id: str
    status: GiftCardStatus
    reason: str | None = None
    gift_card_id: str | None = None


class GiftCardActivationStatus(Outcome):
    """``giftcards.status`` for an activation."""

    activation_id: str
    saga_id: str
    status: GiftCardStatus
    reason: str | None = None
    gift_card_id: str | None = None
    balance: Balance | None = None
    currency: str | None = None
