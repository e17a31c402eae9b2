"""The scene of the order-checkout benchmark: registered clients, stock and a pickup point."""

from __future__ import annotations

import asyncio
import json
import time

from events import topics
from events.customers import CustomerRegistered
from events.delivery import DeliveryMethod, PointUpdated
from events.store import StockReceived
from orchestrator.client import UpstreamClient
from orchestrator.kafka import group_lag
from orchestrator.settings import Settings

CUSTOMERS = 50
PLENTY = 10**9


async def prepare_shop(settings: Settings, run_id: str, timeout_s: float = 120.0) -> None:
    """Register the run's clients and fill its SKU and point, then wait until all took effect."""
    customers = [
        CustomerRegistered(
            customer_id=f"bc-{run_id}-{n}",
            username=f"bench-{run_id}-{n}",
            email=f"bench-{run_id}-{n}@example.com",
            phone="+7 900 000-00-00",
            first_name="Bench",
            last_name=str(n),
        )
        for n in range(CUSTOMERS)
    ]
    async with UpstreamClient(settings, watch=[topics.CUSTOMERS_STATUS]) as client:
        await client.send(
            topics.STORE_STOCK_RECEIVED,
            StockReceived(
                sku=f"SKU-{run_id}", warehouse_id="WH-1", quantity=PLENTY, receipt_id=run_id
            ),
        )
        await client.send(
            topics.DELIVERY_POINTS_UPDATED,
            PointUpdated(
                point_id=f"PP-{run_id}",
                kind=DeliveryMethod.PICKUP,
                name="Bench point",
                capacity=PLENTY,
            ),
        )
        for customer in customers:
            await client.send(topics.CUSTOMERS_REGISTERED, customer)
        waiting = {customer.customer_id for customer in customers}
        deadline = time.monotonic() + timeout_s
        while waiting:
            record = await asyncio.wait_for(client.received.get(), deadline - time.monotonic())
            waiting.discard(json.loads(record.value).get("customer_id"))
    feeds = {
        f"{settings.group_prefix}.store.feed": [topics.STORE_STOCK_RECEIVED],
        f"{settings.group_prefix}.delivery.feed": [topics.DELIVERY_POINTS_UPDATED],
    }
    for group, names in feeds.items():
        while await group_lag(settings, group, names) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group} did not apply the bench's feed records")
            await asyncio.sleep(0.2)
