"""A feed record sent again with its price spelled otherwise (``"10.50"`` for ``10.5``) is a
repeat: it adds no stock and resets no delivery point, also when an earlier release
recorded the first copy under the key of its spelling."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.delivery import PointUpdated
from events.store import StockReceived
from tests.integration.helpers import unique
from workers.registry import WORKERS


def as_spelled(record: StockReceived | PointUpdated, extension: str) -> str:
    """The content hash the release before keyed a record by: its price as it was written."""
    return hashlib.sha256(record.model_dump_json(exclude={extension}).encode()).hexdigest()


def spelled(body: str) -> list[str]:
    """The record's JSON with its price spelled four ways."""
    return [body.replace("PRICE", price) for price in ("10.5", '"10.50"', '"10.5"', "10.50")]


async def test_stock_spelled_otherwise_is_added_once(engine: AsyncEngine) -> None:
    sku, old_sku = unique("SKU"), unique("SKU-old")
    body = '{"sku": "%s", "warehouse_id": "W1", "quantity": 7, "price": PRICE}'
    copies = [StockReceived.model_validate_json(t) for t in spelled(body % sku)]
    assert len({c.business_key() for c in copies}) == 1
    (feed,) = WORKERS["store"].feeds
    async with engine.begin() as conn:
        assert await feed.apply(conn, copies[:1]) == 1
    for copy in copies:
        async with engine.begin() as conn:
            assert await feed.apply(conn, [copy]) == 0

    recorded = StockReceived.model_validate_json((body % old_sku).replace("PRICE", '"10.50"'))
    async with engine.begin() as conn:  # as the release before left it: "10.50" as written
        await conn.execute(
            text(
                "INSERT INTO stock_receipts (receipt_key, sku, warehouse_id, quantity)"
                " VALUES (:k, :s, 'W1', 7)"
            ),
            {"k": "content:" + as_spelled(recorded, "receipt_id"), "s": old_sku},
        )
    for spelling in spelled(body % old_sku):
        again = StockReceived.model_validate_json(spelling)
        async with engine.begin() as conn:
            assert await feed.apply(conn, [again]) == 0, spelling
    async with engine.connect() as conn:
        stocked = await conn.execute(
            text("SELECT sku, available FROM stock WHERE sku IN (:a, :b)"),
            {"a": sku, "b": old_sku},
        )
        assert stocked.all() == [(sku, 7)]


async def test_a_point_state_spelled_otherwise_is_set_once(engine: AsyncEngine) -> None:
    point, old_point = unique("PP"), unique("PP-old")
    body = '{"point_id": "%s", "kind": "pickup", "name": "T7", "capacity": 2, "price": PRICE}'
    copies = [PointUpdated.model_validate_json(t) for t in spelled(body % point)]
    assert len({c.business_key() for c in copies}) == 1
    (feed,) = WORKERS["delivery"].feeds
    async with engine.begin() as conn:
        assert await feed.apply(conn, copies[:1]) == 1
        await conn.execute(  # a slot taken since
            text("UPDATE delivery_points SET capacity = 1 WHERE point_id = :p"), {"p": point}
        )
    for copy in copies:
        async with engine.begin() as conn:
            assert await feed.apply(conn, [copy]) == 0

    recorded = PointUpdated.model_validate_json((body % old_point).replace("PRICE", '"10.50"'))
    async with engine.begin() as conn:  # as the release before left it: "10.50" as written
        await conn.execute(
            text("INSERT INTO delivery_point_updates (update_key, point_id) VALUES (:k, :p)"),
            {"k": f"{old_point}:content:" + as_spelled(recorded, "revision"), "p": old_point},
        )
    for spelling in spelled(body % old_point):
        again = PointUpdated.model_validate_json(spelling)
        async with engine.begin() as conn:
            assert await feed.apply(conn, [again]) == 0, spelling
    async with engine.connect() as conn:
        points = await conn.execute(
            text("SELECT point_id, capacity FROM delivery_points WHERE point_id IN (:a, :b)"),
            {"a": point, "b": old_point},
        )
        assert points.all() == [(point, 1)]
