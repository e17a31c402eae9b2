"""Store: stock arriving from the warehouses, reservations and picking cases."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.base import Command, Identifier, Reply, UpstreamRecord
from events.money import Balance, price_keys

Sku = Identifier


class StockReceived(UpstreamRecord):
    """``store.stock-received``: goods arrived at a warehouse.

    Idempotent by ``receipt_id`` when the warehouse sends one (an extension of the
    contract: a receipt, one record per SKU and warehouse it brought), else by the record's
    content: the same receipt published twice adds once.
    """

    event_type: ClassVar[str] = "store.stock-received.v1"

    sku: Sku
    warehouse_id: Identifier
    quantity: int = Field(gt=0, le=1_000_000_000, strict=True)
    name: str | None = Field(default=None, max_length=200)
    price: Balance | None = None
    discount_percent: float | None = Field(default=None, ge=0, le=100)
    receipt_id: Identifier | None = None

    def record_key(self) -> str:
        return self.sku

    def business_key(self) -> str:
        if self.receipt_id is not None:
            line = json.dumps([self.receipt_id, self.sku, self.warehouse_id])
            return "receipt-line:" + hashlib.sha256(line.encode()).hexdigest()
        return price_keys(self.price, self._content_key)[0]

    def _content_key(self, price: Decimal | None) -> str:
        canonical = self.model_copy(update={"price": price}).model_dump_json(exclude={"receipt_id"})
        return "content:" + hashlib.sha256(canonical.encode()).hexdigest()

    def earlier_keys(self) -> list[str]:
        """The keys earlier releases may have recorded this receipt under. With a
        ``receipt_id``, that alone (so a receipt's second SKU was taken for a repeat of its
        first); without, its content with its price as it was spelled then, each way it may
        have been. Still honoured for the SKU and warehouse recorded with them, so a replay
        after an upgrade adds nothing."""
        if self.receipt_id is not None:
            return [f"receipt:{self.receipt_id}"]
        return price_keys(self.price, self._content_key)[1]


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    quantity: int = Field(gt=0)


class ReserveStock(Command):
    """Reserve every line of an order (all or nothing) and open a picking case."""

    kind: Literal["ReserveStock"] = "ReserveStock"
    order_id: str
    lines: tuple[OrderLine, ...] = Field(min_length=1)


class ReleaseStock(Command):
    """Compensation: put the reserved units back in the warehouses they came from."""

    kind: Literal["ReleaseStock"] = "ReleaseStock"


class StockReserved(Reply):
    kind: Literal["StockReserved"] = "StockReserved"
    picking_case_id: str


StoreCommand = Annotated[ReserveStock | ReleaseStock, Field(discriminator="kind")]

OUT_OF_STOCK: Final = "OUT_OF_STOCK"
