"""What ``orchestra bench`` can drive: the standard saga, or a real saga with its real workers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from events import topics
from events.bench import BENCH_REQUESTED, BENCH_STATUS, BenchStatus, delivery_fails


@dataclass(frozen=True)
class Scenario:
    name: str
    request_topic: str
    status_topic: str
    id_field: str
    body: Callable[[str], bytes]
    expected: Callable[[str], tuple[str, str | None]]

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

SCENARIOS = {scenario.name: scenario for scenario in (STANDARD, CARD_ISSUANCE)}
