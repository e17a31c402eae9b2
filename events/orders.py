"""Order checkout (seed 003, the orchestra): upstream record and outcome."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.base import Identifier, Outcome, UpstreamRecord
from events.contacts import BLANK_IS_ABSENT
from events.delivery import DeliveryMethod
from events.money import MAX_MINOR, Amount, Balance, CurrencyCode, from_minor, to_minor
from events.payment import UpstreamPayment


class OrderStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class OrderItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    sku: Identifier
    quantity: int = Field(gt=0, le=1_000_000, strict=True)
    unit_price: Amount


class DeliveryChoice(BaseModel):
    """Where the order goes: a pickup point, or an address by a courier company
    (``point_id`` names the company; without it delivery picks one with capacity)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    method: DeliveryMethod
    point_id: Identifier | None = None
    address: Annotated[str | None, BLANK_IS_ABSENT] = Field(default=None, max_length=500)
    cost: Balance = Decimal("0.00")

    @model_validator(mode="after")
    def _says_where(self) -> DeliveryChoice:
        if self.method == DeliveryMethod.COURIER and not self.address:
            raise ValueError("courier delivery needs an address")
        if self.method == DeliveryMethod.PICKUP and not self.point_id:
            raise ValueError("pickup delivery needs a point_id")
        return self


class OrderSubmitted(UpstreamRecord):
    """``orders.submitted``: a paid-for basket the order service hands to the orchestra."""

    event_type: ClassVar[str] = "orders.submitted.v1"

    order_id: Identifier
    customer_id: Identifier
    currency: CurrencyCode
    items: tuple[OrderItem, ...] = Field(min_length=1, max_length=500)
    payment: UpstreamPayment
    delivery: DeliveryChoice

    def business_key(self) -> str:
        return self.order_id

    @property
    def total_minor(self) -> int:
        lines = sum(item.quantity * to_minor(item.unit_price) for item in self.items)
        return lines + to_minor(self.delivery.cost)

    @model_validator(mode="after")
    def _total_fits(self) -> OrderSubmitted:
        """Every amount fits, and so must their sum: the total is charged, booked and
        reported as one amount."""
        if self.total_minor > MAX_MINOR:
            raise ValueError(
                "the order's total (items and delivery cost) is too large "
                f"(at most {from_minor(MAX_MINOR)})"
            )
        return self


class OrderStatusChanged(Outcome):
    """``orders.status``: the final status of one order."""

    order_id: str
    saga_id: str
    status: OrderStatus
    reason: str | None = None
    total: Balance
    currency: str
