"""The standard benchmark saga: reserve payment, reserve stock, create delivery."""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field

from events.base import Command, Outcome, Reply, UpstreamRecord

BENCH_REQUESTED: Final = "bench.order-placed"
BENCH_STATUS: Final = "bench.status"
BENCH_PAYMENT_COMMANDS: Final = "bench-payment.commands"
BENCH_STORE_COMMANDS: Final = "bench-store.commands"
BENCH_DELIVERY_COMMANDS: Final = "bench-delivery.commands"
DELIVERY_UNAVAILABLE: Final = "NO_DELIVERY_CAPACITY"


def delivery_fails(order_id: str) -> bool:
    """Deterministic: one order in ten cannot be delivered, so it is compensated."""
    return zlib.crc32(order_id.encode()) % 10 == 0


class BenchStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class BenchOrderPlaced(UpstreamRecord):
    event_type: ClassVar[str] = "bench.order-placed.v1"

    order_id: str = Field(min_length=1, max_length=64)
    amount_minor: int = Field(gt=0)

    def business_key(self) -> str:
        return self.order_id


class BenchOrderStatus(Outcome):
    order_id: str
    saga_id: str
    status: BenchStatus
    reason: str | None = None


class ReservePayment(Command):
    kind: Literal["ReservePayment"] = "ReservePayment"
    order_id: str
    amount_minor: int


class RefundPayment(Command):
    kind: Literal["RefundPayment"] = "RefundPayment"
    order_id: str


class ReserveStock(Command):
    kind: Literal["ReserveStock"] = "ReserveStock"
    order_id: str


class ReleaseStock(Command):
    kind: Literal["ReleaseStock"] = "ReleaseStock"
    order_id: str


class CreateDelivery(Command):
    kind: Literal["CreateDelivery"] = "CreateDelivery"
    order_id: str


class BenchStepDone(Reply):
    kind: Literal["BenchStepDone"] = "BenchStepDone"


BenchCommand = Annotated[
    ReservePayment | RefundPayment | ReserveStock | ReleaseStock | CreateDelivery,
    Field(discriminator="kind"),
]
