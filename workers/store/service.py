"""Store worker: stock per SKU and warehouse, all-or-nothing reservations, picking cases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed
from events.envelope import Envelope
from events.money import to_minor
from events.store import OUT_OF_STOCK, ReleaseStock, ReserveStock, StockReceived, StockReserved
from schemas.store import (
    picking_cases,
    products,
    reservations,
    stock,
    stock_receipts,
    store_operations,
)
from workers.operations import Operations, step_key

_SHORT_SHOWN = 5
"""Short SKUs a refusal names; the rest it counts."""

# Statements built once, not per command (see workers/operations.py).
_STOCK_ROW = (stock.c.sku == bindparam("b_sku")) & (
    stock.c.warehouse_id == bindparam("b_warehouse")
)
_GIVE_BACK = (
    update(stock)
    .where(_STOCK_ROW)
    .values(
        available=stock.c.available + bindparam("b_quantity"),
        reserved=stock.c.reserved - bindparam("b_quantity"),
        updated_at=func.now(),
    )
)
_LOCK_STOCK = (
    select(stock.c.sku, stock.c.warehouse_id, stock.c.available)
    .where(stock.c.sku.in_(bindparam("b_skus", expanding=True)))
    .order_by(stock.c.sku.collate("C"), stock.c.warehouse_id.collate("C"))
    .with_for_update()
)
_LOCK_BATCH_STOCK = text(
    f"""
    SELECT s.sku FROM {stock.name} AS s
    WHERE s.sku = ANY(CAST(:skus AS text[]))
       OR s.sku = ANY(ARRAY(
           SELECT r.sku FROM {reservations.name} AS r
           WHERE r.saga_id = ANY(CAST(:sagas AS uuid[])) AND r.status = 'RESERVED'
       ))
    ORDER BY s.sku COLLATE "C", s.warehouse_id COLLATE "C"
    FOR UPDATE OF s
    """
)
_PLANNED = """unnest(
            CAST(:skus AS text[]), CAST(:warehouses AS text[]), CAST(:quantities AS bigint[])
        ) AS p(sku, warehouse_id, quantity)"""
# the planned quantities taken, reserved and picked in one round trip
_RESERVE = text(
    f"""
    WITH taken AS (
        UPDATE {stock.name} AS s
        SET available = s.available - p.quantity, reserved = s.reserved + p.quantity,
            updated_at = now()
        FROM {_PLANNED}
        WHERE s.sku = p.sku AND s.warehouse_id = p.warehouse_id
    ), reserved AS (
        INSERT INTO {reservations.name} (saga_id, sku, warehouse_id, quantity, status)
        SELECT CAST(:saga_id AS uuid), p.sku, p.warehouse_id, p.quantity, 'RESERVED'
        FROM {_PLANNED}
    )
    INSERT INTO {picking_cases.name} (case_id, saga_id, order_id, status)
    VALUES (:case_id, CAST(:saga_id AS uuid), :order_id, 'OPEN')
    """
)
_RELEASE_RESERVATIONS = (
    update(reservations)
    .where(reservations.c.saga_id == bindparam("b_saga_id"), reservations.c.status == "RESERVED")
    .values(status="RELEASED")
    .returning(reservations.c.sku, reservations.c.warehouse_id, reservations.c.quantity)
)
_CANCEL_PICKING_CASE = (
    update(picking_cases)
    .where(picking_cases.c.saga_id == bindparam("b_saga_id"))
    .values(status="CANCELLED", updated_at=func.now())
)
_NEW_RECEIPT = text(
    f"""
    INSERT INTO {stock_receipts.name} (receipt_key, sku, warehouse_id, quantity)
    SELECT CAST(:receipt_key AS varchar), CAST(:sku AS varchar),
        CAST(:warehouse_id AS varchar), CAST(:quantity AS bigint)
    WHERE NOT EXISTS (
        SELECT 1 FROM {stock_receipts.name}
        WHERE receipt_key = ANY(CAST(:earlier_keys AS varchar[]))
            AND sku = CAST(:sku AS varchar) AND warehouse_id = CAST(:warehouse_id AS varchar)
    )
    ON CONFLICT DO NOTHING
    RETURNING receipt_key
    """
)
"""A receipt not seen before, under its key or (the same SKU and warehouse) an earlier one."""
_NEW_STOCK = pg_insert(stock)
_ADD_STOCK = _NEW_STOCK.on_conflict_do_update(
    index_elements=[stock.c.sku, stock.c.warehouse_id],
    set_={"available": stock.c.available + _NEW_STOCK.excluded.available, "updated_at": func.now()},
)


class StoreService:
    """Handles the store commands; each is idempotent per saga step."""

    def __init__(self) -> None:
        self.operations = Operations(store_operations)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, command: object) -> Reply:
        match command:
            case ReserveStock():
                return await self.reserve(conn, envelope, command)
            case ReleaseStock():
                return await self.release(conn, envelope)
        raise TypeError(f"store cannot handle {type(command).__name__}")

    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None:
        """The stock rows of every SKU the batch reserves or gives back, in key order
        (``workers.runtime.LocksAhead``)."""
        skus = {line.sku for _, c in commands if isinstance(c, ReserveStock) for line in c.lines}
        sagas = [e.saga_id for e, c in commands if isinstance(c, ReleaseStock)]
        if skus or sagas:
            await conn.execute(_LOCK_BATCH_STOCK, {"skus": sorted(skus), "sagas": sagas})

    async def reserve(
        self, conn: AsyncConnection, envelope: Envelope, command: ReserveStock
    ) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            wanted = Counter[str]()
            for line in command.lines:
                wanted[line.sku] += line.quantity
            plan = await _allocate(conn, wanted)
            if isinstance(plan, StepFailed):
                return plan
            case_id = f"PICK-{uuid4().hex[:16]}"
            await conn.execute(
                _RESERVE,
                {
                    "skus": [sku for sku, _ in plan],
                    "warehouses": [warehouse for _, warehouse in plan],
                    "quantities": list(plan.values()),
                    "saga_id": saga_id,
                    "case_id": case_id,
                    "order_id": command.order_id,
                },
            )
            return StockReserved(picking_case_id=case_id)

        return await self.operations.run(conn, envelope, action)

    async def release(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        saga_id, _ = step_key(envelope)

        async def undo(_done: Reply) -> StepFailed | None:
            await _release(conn, saga_id)
            return None

        return await self.operations.undo(conn, envelope, undo)


async def _allocate(
    conn: AsyncConnection, wanted: Counter[str]
) -> dict[tuple[str, str], int] | StepFailed:
    """Lock the SKUs' stock rows (in a fixed order) and take from the fullest warehouses."""
    rows = (await conn.execute(_LOCK_STOCK, {"b_skus": sorted(wanted)})).all()
    plan: dict[tuple[str, str], int] = {}
    short: list[str] = []
    for sku, quantity in sorted(wanted.items()):
        left = quantity
        for row in sorted((r for r in rows if r.sku == sku), key=lambda r: -r.available):
            take = min(left, row.available)
            if take > 0:
                plan[(sku, row.warehouse_id)] = take
                left -= take
        if left > 0:
            short.append(f"{sku} (short by {left})")
    if short:
        more = f" and {len(short) - _SHORT_SHOWN} more SKUs" if len(short) > _SHORT_SHOWN else ""
        return StepFailed(
            reason=OUT_OF_STOCK,
            detail="not enough stock: " + ", ".join(short[:_SHORT_SHOWN]) + more,
        )
    return plan


async def _release(conn: AsyncConnection, saga_id: UUID) -> None:
    held = (await conn.execute(_RELEASE_RESERVATIONS, {"b_saga_id": saga_id})).all()
    for sku, warehouse, quantity in sorted(held):
        await conn.execute(
            _GIVE_BACK, {"b_sku": sku, "b_warehouse": warehouse, "b_quantity": quantity}
        )
    await conn.execute(_CANCEL_PICKING_CASE, {"b_saga_id": saga_id})


async def receive_stock(conn: AsyncConnection, receipts: Sequence[StockReceived]) -> int:
    """The ``store.stock-received`` feed: add each receipt once. Stock rows are taken in key
    order, as command batches take them (a row's receipts keep theirs)."""
    applied = 0
    for receipt in sorted(receipts, key=lambda r: (r.sku, r.warehouse_id)):
        fresh = await conn.execute(
            _NEW_RECEIPT,
            {
                "receipt_key": receipt.business_key(),
                "earlier_keys": receipt.earlier_keys(),
                "sku": receipt.sku,
                "warehouse_id": receipt.warehouse_id,
                "quantity": receipt.quantity,
            },
        )
        if fresh.first() is None:
            continue
        applied += 1
        await conn.execute(
            _ADD_STOCK,
            {
                "sku": receipt.sku,
                "warehouse_id": receipt.warehouse_id,
                "available": receipt.quantity,
                "reserved": 0,
            },
        )
        catalogue = {
            key: value
            for key, value in {
                "name": receipt.name,
                "price_minor": None if receipt.price is None else to_minor(receipt.price),
                "discount_percent": receipt.discount_percent,
            }.items()
            if value is not None
        }
        product = pg_insert(products).values(sku=receipt.sku, **catalogue)
        await conn.execute(
            product.on_conflict_do_update(
                index_elements=[products.c.sku], set_={**catalogue, "updated_at": func.now()}
            )
            if catalogue
            else product.on_conflict_do_nothing()
        )
    return applied
