"""Delivery worker: pickup points and courier companies with capacity, delivery cases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed, expect
from events.delivery import (
    NO_DELIVERY_CAPACITY,
    UNKNOWN_DELIVERY_POINT,
    BookDelivery,
    CancelDelivery,
    DeliveryBooked,
    DeliveryMethod,
    PointUpdated,
)
from events.envelope import Envelope
from events.money import to_minor
from schemas.delivery import delivery_cases, delivery_operations, delivery_points, point_updates
from workers.operations import Operations, step_key

# Statements built once, not per command (see workers/operations.py).
_POINT_KIND = select(delivery_points.c.kind).where(
    delivery_points.c.point_id == bindparam("b_point_id")
)
# a slot of a point of the right kind taken and the case opened in one round trip, the
# point's name returned; no row returned: no such point, or no free slot
_BOOK = text(
    f"""
    WITH taken AS (
        UPDATE {delivery_points.name}
        SET capacity = capacity - 1, updated_at = now()
        WHERE point_id = :point_id AND kind = :method AND capacity > 0
        RETURNING point_id, name
    ), opened AS (
        INSERT INTO {delivery_cases.name}
            (case_id, saga_id, order_id, point_id, method, address, status)
        SELECT :case_id, CAST(:saga_id AS uuid), :order_id, point_id, :method, :address, 'OPEN'
        FROM taken
        RETURNING case_id
    )
    SELECT opened.case_id, taken.name FROM opened, taken
    """
)
_CANCEL_OPEN_CASE = (
    update(delivery_cases)
    .where(delivery_cases.c.case_id == bindparam("b_case_id"), delivery_cases.c.status == "OPEN")
    .values(status="CANCELLED", updated_at=func.now())
    .returning(delivery_cases.c.point_id)
)
_FREE_SLOT = (
    update(delivery_points)
    .where(delivery_points.c.point_id == bindparam("b_point_id"))
    .values(capacity=delivery_points.c.capacity + 1, updated_at=func.now())
)
_NEW_UPDATE = text(
    f"""
    INSERT INTO {point_updates.name} (update_key, point_id)
    SELECT CAST(:update_key AS varchar), CAST(:point_id AS varchar)
    WHERE NOT EXISTS (
        SELECT 1 FROM {point_updates.name}
        WHERE update_key = ANY(CAST(:earlier_keys AS varchar[]))
    )
    ON CONFLICT DO NOTHING
    RETURNING update_key
    """
)
"""A point's state not set before, under its key or an earlier one."""
_NEW_POINT = pg_insert(delivery_points)
_SET_POINT = _NEW_POINT.on_conflict_do_update(
    index_elements=[delivery_points.c.point_id],
    set_={
        **{name: _NEW_POINT.excluded[name] for name in ("kind", "name", "capacity", "price_minor")},
        "updated_at": func.now(),
    },
)
_LOCK_BATCH_POINTS = text(
    f"""
    SELECT p.point_id FROM {delivery_points.name} AS p
    WHERE p.point_id = ANY(CAST(:points AS text[]))
       OR (CAST(:couriers AS boolean) AND p.kind = '{DeliveryMethod.COURIER.value}')
       OR p.point_id = ANY(ARRAY(
           SELECT c.point_id FROM {delivery_cases.name} AS c
           WHERE c.saga_id = ANY(CAST(:sagas AS uuid[])) AND c.status = 'OPEN'
       ))
    ORDER BY p.point_id COLLATE "C"
    FOR UPDATE OF p
    """
)
_COURIER_WITH_ROOM = (
    select(delivery_points.c.point_id)
    .where(delivery_points.c.kind == DeliveryMethod.COURIER.value, delivery_points.c.capacity > 0)
    .order_by(delivery_points.c.capacity.desc(), delivery_points.c.point_id)
    .limit(1)
    .with_for_update()
)
"""Locked, so that no other transaction takes its last slot before the booking does (a
batch has locked every courier ahead; a command handled alone has not). A courier filled
meanwhile fails the capacity check on the locked row and the next one is taken."""


class DeliveryService:
    """Handles the delivery commands; each is idempotent per saga step."""

    def __init__(self) -> None:
        self.operations = Operations(delivery_operations)

    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None:
        """The points the batch books or frees a slot at, in key order; every courier
        company when an order names none, since the one with most room is chosen then
        (``workers.runtime.LocksAhead``)."""
        booked = [c for _, c in commands if isinstance(c, BookDelivery)]
        points = sorted({c.point_id for c in booked if c.point_id})
        couriers = any(not c.point_id for c in booked)
        sagas = [e.saga_id for e, c in commands if isinstance(c, CancelDelivery)]
        if points or couriers or sagas:
            await conn.execute(
                _LOCK_BATCH_POINTS, {"points": points, "couriers": couriers, "sagas": sagas}
            )

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, command: object) -> Reply:
        match command:
            case BookDelivery():
                return await self.book(conn, envelope, command)
            case CancelDelivery():
                return await self.cancel(conn, envelope)
        raise TypeError(f"delivery cannot handle {type(command).__name__}")

    async def book(self, conn: AsyncConnection, envelope: Envelope, command: BookDelivery) -> Reply:
        """Take a slot and open the case. The answer names the point, but the step's record
        does not: a delivery worker of a release before reads that record back (a command
        sent again, a compensation) and refuses a member it does not know. An answer read
        back from the record names the point by its id alone, in the order's e-mail."""
        saga_id, _ = step_key(envelope)
        names: list[str] = []

        async def action() -> Reply:
            point_id = command.point_id or await _courier_with_room(conn)
            if point_id is None:
                return StepFailed(reason=NO_DELIVERY_CAPACITY, detail="no courier has a free slot")
            case_id = f"DLV-{uuid4().hex[:16]}"
            booked = await conn.execute(
                _BOOK,
                {
                    "case_id": case_id,
                    "saga_id": saga_id,
                    "order_id": command.order_id,
                    "point_id": point_id,
                    "method": command.method.value,
                    "address": command.address,
                },
            )
            row = booked.first()
            if row is None:
                return await _no_slot(conn, point_id, command.method.value)
            names.append(row.name)
            return DeliveryBooked(delivery_case_id=case_id)

        reply = await self.operations.run(conn, envelope, action)
        if isinstance(reply, DeliveryBooked) and names:
            return reply.model_copy(update={"point_name": names[0]})
        return reply

    async def cancel(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, DeliveryBooked)
            cancelled = await conn.execute(_CANCEL_OPEN_CASE, {"b_case_id": done.delivery_case_id})
            point_id = cancelled.scalar_one_or_none()
            if point_id is not None:
                await conn.execute(_FREE_SLOT, {"b_point_id": point_id})
            return None

        return await self.operations.undo(conn, envelope, undo)


async def _no_slot(conn: AsyncConnection, point_id: str, method: str) -> StepFailed:
    """Why no slot was taken: no such point (of that kind), or no free slot."""
    point = (await conn.execute(_POINT_KIND, {"b_point_id": point_id})).first()
    if point is None or point.kind != method:
        return StepFailed(reason=UNKNOWN_DELIVERY_POINT, detail=f"no {method} point {point_id}")
    return StepFailed(reason=NO_DELIVERY_CAPACITY, detail=f"{point_id} has no free slot")


async def _courier_with_room(conn: AsyncConnection) -> str | None:
    """The courier company with the most free slots, for an order that named none."""
    found = await conn.execute(_COURIER_WITH_ROOM)
    return found.scalar_one_or_none()


async def update_points(conn: AsyncConnection, updates: Sequence[PointUpdated]) -> int:
    """The ``delivery.points-updated`` feed: set each point's state, once per update. Points
    are taken in key order, as command batches take them (a point's updates keep theirs)."""
    applied = 0
    for point in sorted(updates, key=lambda update: update.point_id):
        fresh = await conn.execute(
            _NEW_UPDATE,
            {
                "update_key": point.business_key(),
                "earlier_keys": point.earlier_keys(),
                "point_id": point.point_id,
            },
        )
        if fresh.first() is None:
            continue
        applied += 1
        await conn.execute(
            _SET_POINT,
            {
                "point_id": point.point_id,
                "kind": point.kind.value,
                "name": point.name,
                "capacity": point.capacity,
                "price_minor": None if point.price is None else to_minor(point.price),
            },
        )
    return applied
