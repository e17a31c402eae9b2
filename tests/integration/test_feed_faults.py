"""A feed record the worker's code fails on is dead-lettered with the error; the records
after it are applied: one bad record does not stall the feed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events import topics
from events.store import StockReceived
from orchestrator.engine.outbox import OutboxRelay
from tests.integration.helpers import Record, Sent, unique
from workers.feeds import FeedRuntime
from workers.registry import WORKERS


async def test_a_receipt_that_fails_to_apply_is_dead_lettered_and_the_next_applied(
    engine: AsyncEngine,
) -> None:
    store = WORKERS["store"]
    (feed,) = store.feeds
    bad, good = unique("SKU-BUG"), unique("SKU-OK")

    async def apply(conn: AsyncConnection, receipts: Sequence[Any]) -> int:
        if any(r.sku == bad for r in receipts):
            raise ZeroDivisionError("unit conversion")
        return await feed.apply(conn, receipts)

    sent = Sent()
    runtime = FeedRuntime(
        store.name,
        dataclasses.replace(feed, apply=apply),
        engine,
        OutboxRelay(engine, store.outbox, sent, delete_delay_s=0.0),
    )
    receipts = [
        StockReceived(sku=sku, warehouse_id="W1", quantity=5, receipt_id=unique("r"))
        for sku in (bad, good)
    ]
    await runtime.handle_batch(
        [
            Record(topics.STORE_STOCK_RECEIVED, r.model_dump_json().encode(), offset=n)
            for n, r in enumerate(receipts)
        ]
    )
    await runtime.relay.drain()

    (letter,) = sent.messages
    assert letter.topic == f"{topics.STORE_STOCK_RECEIVED}.dlq"
    assert (letter.headers["dlq_reason"], letter.headers["dlq_offset"]) == ("HANDLER_ERROR", "0")
    assert "ZeroDivisionError: unit conversion" in letter.headers["dlq_error"]
    async with engine.connect() as conn:
        stocked = await conn.execute(
            text("SELECT sku, available FROM stock WHERE sku IN (:bad, :good)"),
            {"bad": bad, "good": good},
        )
        assert stocked.all() == [(good, 5)]


async def test_a_receipt_adds_each_of_its_skus_once_also_after_an_upgrade(
    engine: AsyncEngine,
) -> None:
    """One receipt, a record per SKU and warehouse under its ``receipt_id``: each adds its
    stock once. A line an earlier release recorded under the receipt id alone is still a
    repeat; its receipt's other lines, which that release took for repeats, are not."""
    receipt, old_receipt = unique("r"), unique("r-old")
    first, second, third = unique("SKU-A"), unique("SKU-B"), unique("SKU-C")
    lines = [
        StockReceived(sku=first, warehouse_id="W1", quantity=5, receipt_id=receipt),
        StockReceived(sku=second, warehouse_id="W1", quantity=7, receipt_id=receipt),
        StockReceived(sku=second, warehouse_id="W2", quantity=1, receipt_id=receipt),
    ]
    recorded = StockReceived(sku=third, warehouse_id="W1", quantity=2, receipt_id=old_receipt)
    async with engine.begin() as conn:
        await conn.execute(  # as the earlier release left it
            text(
                "INSERT INTO stock_receipts (receipt_key, sku, warehouse_id, quantity)"
                " VALUES (:k, :s, 'W1', 2)"
            ),
            {"k": f"receipt:{old_receipt}", "s": third},
        )
        await conn.execute(
            text(
                "INSERT INTO stock (sku, warehouse_id, available, reserved) VALUES (:s, 'W1', 2, 0)"
            ),
            {"s": third},
        )
    (feed,) = WORKERS["store"].feeds
    later = recorded.model_copy(update={"sku": first})
    async with engine.begin() as conn:
        assert await feed.apply(conn, [*lines, recorded, later]) == 4
    async with engine.begin() as conn:
        assert await feed.apply(conn, [*lines, recorded, later]) == 0
    async with engine.connect() as conn:
        stocked = await conn.execute(
            text(
                "SELECT sku, warehouse_id, available FROM stock WHERE sku IN (:a, :b, :c)"
                " ORDER BY sku, warehouse_id"
            ),
            {"a": first, "b": second, "c": third},
        )
        assert stocked.all() == [
            (first, "W1", 5 + 2),
            (second, "W1", 7),
            (second, "W2", 1),
            (third, "W1", 2),
        ]
