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
