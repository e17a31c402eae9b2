"""Client registration (seed 003, auth): upstream record and outcome."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from events.base import Identifier, Outcome, UpstreamRecord
from events.contacts import BLANK_IS_ABSENT, Email, PersonName, Phone
from events.money import CurrencyCode


class CustomerStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class CustomerRegistered(UpstreamRecord):
    """``customers.registered``: a new client signed up."""

    event_type: ClassVar[str] = "customers.registered.v1"

    customer_id: Identifier
    username: str = Field(min_length=1, max_length=100)
    email: Email
    phone: Annotated[Phone | None, BLANK_IS_ABSENT] = None
    first_name: Annotated[PersonName | None, BLANK_IS_ABSENT] = None
    last_name: Annotated[PersonName | None, BLANK_IS_ABSENT] = None
    currency: CurrencyCode = "RUB"

    def business_key(self) -> str:
        return self.customer_id


class CustomerStatusChanged(Outcome):
    """``customers.status``: the outcome of one registration."""

    customer_id: str
    saga_id: str
    status: CustomerStatus
    reason: str | None = None
    wallet_id: str | None = None
