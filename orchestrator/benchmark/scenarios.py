"""What ``orchestra bench`` can drive: the standard saga, or a real saga with its real workers."""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from events import topics
from events.bench import BENCH_REQUESTED, BENCH_STATUS, BenchStatus, delivery_fails
from orchestrator.benchmark.shop import CUSTOMERS, prepare_shop
from orchestrator.settings import Settings


@dataclass(frozen=True)
class Scenario:
    name: str
    request_topic: str
    status_topic: str
    id_field: str
    body: Callable[[str], bytes]
    expected: Callable[[str], tuple[str, str | None]]
    prepare: Callable[[Settings, str], Awaitable[None]] | None = None
    """Sets the scene (clients, stock, ...) through the contract topics before the run."""

    def services(self) -> tuple[Any, Any]:
        """The saga definitions and workers the services process runs (imported there)."""
        if self.name == "standard":
            from orchestrator.sagas.bench import BENCH_SAGA
            from workers.bench.service import BENCH_WORKERS

            return [BENCH_SAGA], BENCH_WORKERS
        from orchestrator.sagas import ALL_SAGAS
        from workers.registry import WORKERS

        return list(ALL_SAGAS), WORKERS


def _standard_expected(order_id: str) -> tuple[str, str | None]:
    if delivery_fails(order_id):
        return BenchStatus.CANCELLED.value, "NO_DELIVERY_CAPACITY"
    return BenchStatus.CONFIRMED.value, None


STANDARD = Scenario(
    "standard",
    BENCH_REQUESTED,
    BENCH_STATUS,
    "order_id",
    lambda order_id: json.dumps({"order_id": order_id, "amount_minor": 1050}).encode(),
    _standard_expected,
)

CARD_ISSUANCE = Scenario(
    "card-issuance",
    topics.CARDS_ISSUE_REQUESTED,
    topics.CARDS_STATUS,
    "request_id",
    lambda request_id: json.dumps(
        {"request_id": request_id, "user_id": f"user-{request_id}", "card_type": "virtual"}
    ).encode(),
    lambda _request_id: ("ISSUED", None),
)


def _declined(order_id: str) -> bool:
    return zlib.crc32(order_id.encode()) % 10 == 0


def _order(order_id: str) -> bytes:
    run_id = order_id.rsplit("-", 1)[0]
    customer = zlib.crc32(order_id.encode()) % CUSTOMERS
    token = "tok_decline" if _declined(order_id) else "tok_bench"
    return json.dumps(
        {
            "order_id": order_id,
            "customer_id": f"bc-{run_id}-{customer}",
            "currency": "RUB",
            "items": [{"sku": f"SKU-{run_id}", "quantity": 1, "unit_price": "10.50"}],
            "payment": {"method": "bank_card", "card_token": token},
            "delivery": {"method": "pickup", "point_id": f"PP-{run_id}", "cost": "3.00"},
        }
    ).encode()


def _order_expected(order_id: str) -> tuple[str, str | None]:
    if _declined(order_id):
        return "CANCELLED", "PAYMENT_DECLINED"
    return "CONFIRMED", None


ORDER_CHECKOUT = Scenario(
    "order-checkout",
    topics.ORDERS_SUBMITTED,
    topics.ORDERS_STATUS,
    "order_id",
    _order,
    _order_expected,
    prepare=prepare_shop,
)

SCENARIOS = {scenario.name: scenario for scenario in (STANDARD, CARD_ISSUANCE, ORDER_CHECKOUT)}
