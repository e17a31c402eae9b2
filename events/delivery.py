"""Delivery: pickup points and courier companies, delivery cases."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field

from events.base import Command, Identifier, Reply, UpstreamRecord
from events.money import Balance, price_keys


class DeliveryMethod(StrEnum):
    PICKUP = "pickup"
    COURIER = "courier"


class PointUpdated(UpstreamRecord):
    """``delivery.points-updated``: the state of one pickup point or courier company.

    Setting a state is idempotent; the same record replayed after bookings would still
    undo them, so a record is applied once, by ``revision`` when given (an extension of
    the contract), else by its content.
    """

    event_type: ClassVar[str] = "delivery.points-updated.v1"

    point_id: Identifier
    kind: DeliveryMethod
    name: str = Field(min_length=1, max_length=200)
    capacity: int = Field(ge=0, le=1_000_000_000, strict=True)
    price: Balance | None = None
    revision: Identifier | None = None

    def record_key(self) -> str:
        return self.point_id

    def business_key(self) -> str:
        if self.revision is not None:
            return f"{self.point_id}:revision:{self.revision}"
        return price_keys(self.price, self._content_key)[0]

    def earlier_keys(self) -> list[str]:
        """The keys earlier releases may have recorded this state under, its price spelled
        each way it may have been then (``"3.00"`` and ``3`` were two states), so a replay
        after an upgrade sets nothing."""
        return [] if self.revision is not None else price_keys(self.price, self._content_key)[1]

    def _content_key(self, price: Decimal | None) -> str:
        canonical = self.model_copy(update={"price": price}).model_dump_json(exclude={"revision"})
        return f"{self.point_id}:content:" + hashlib.sha256(canonical.encode()).hexdigest()


class BookDelivery(Command):
    """Take a slot at the point (or with the courier company) and open a delivery case."""

    kind: Literal["BookDelivery"] = "BookDelivery"
    order_id: str
    method: DeliveryMethod
    point_id: str | None = None
    address: str | None = None


class CancelDelivery(Command):
    """Compensation: cancel this saga's delivery case and free its slot."""

    kind: Literal["CancelDelivery"] = "CancelDelivery"


class DeliveryBooked(Reply):
    """``point_name``: the pickup point's or courier company's name, for the client (seed 003:
    delivery gives the point's name or the address); None from a release before it, and then
    left out, as that release's readers refuse a member they do not know."""

    kind: Literal["DeliveryBooked"] = "DeliveryBooked"
    delivery_case_id: str
    point_name: str | None = Field(default=None, exclude_if=lambda name: name is None)


DeliveryCommand = Annotated[BookDelivery | CancelDelivery, Field(discriminator="kind")]

NO_DELIVERY_CAPACITY: Final = "NO_DELIVERY_CAPACITY"
UNKNOWN_DELIVERY_POINT: Final = "UNKNOWN_DELIVERY_POINT"
