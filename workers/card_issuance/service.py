"""Card-issuance worker: one active card per user and type, card ids from an inventory."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import bindparam, func, literal_column, select, text, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Compensated, Reply, StepFailed
from events.card_invoices import CloseInvoicePayment, RestoreCardLimit, UndoCardLimitRestore
from events.cards import (
    ACTIVE_CARD_EXISTS,
    CARD_RELEASED,
    ActivateCard,
    CardActivated,
    CardReserved,
    ReleaseCard,
    ReserveCard,
)
from events.envelope import Envelope
from schemas.card_issuance import card_inventory, card_issuance_operations, cards
from workers.card_issuance.limits import close_payment, restore_limit, undo_restore
from workers.card_issuance.numbers import mask, new_card_id, new_card_number, number_hash
from workers.operations import Operations

LIVE = ("PENDING", "ACTIVE")
REFILL_BATCH = 200

# Statements built once, not per command (see workers/operations.py).
_MINE = select(cards).where(cards.c.saga_id == bindparam("b_saga_id"))
_MINE_LOCKED = _MINE.with_for_update()
# the saga's own card and the user's live card of that type, in one round trip
_MINE_OR_LIVE = union_all(
    _MINE,
    select(cards).where(
        cards.c.user_id == bindparam("b_user_id"),
        cards.c.card_type == bindparam("b_card_type"),
        cards.c.status.in_(LIVE),
    ),
)
# the card inserted unless the user has a live one of that type, and its id reserved
_INSERT_CARD = text(
    f"""
    WITH inserted AS (
        INSERT INTO {cards.name}
            (saga_id, request_id, user_id, card_type, card_id, number_hash, masked_number, status)
        VALUES (CAST(:saga_id AS uuid), :request_id, :user_id, :card_type, :card_id,
                :number_hash, :masked_number, 'PENDING')
        ON CONFLICT (user_id, card_type) WHERE status IN ('PENDING', 'ACTIVE') DO NOTHING
        RETURNING card_id
    ), reserved AS (
        UPDATE {card_inventory.name} AS i
        SET status = 'RESERVED', saga_id = CAST(:saga_id AS uuid), updated_at = now()
        FROM inserted WHERE i.card_id = inserted.card_id
    )
    SELECT card_id FROM inserted
    """
)
# the saga's card as it was (locked first: the update reads the lock's row), activated with
# its id if it was pending
_ACTIVATE = text(
    f"""
    WITH mine AS (
        SELECT saga_id, card_id, status FROM {cards.name} WHERE saga_id = :saga_id FOR UPDATE
    ), activated AS (
        UPDATE {cards.name} AS c SET status = 'ACTIVE', updated_at = now()
        FROM mine WHERE c.saga_id = mine.saga_id AND mine.status = 'PENDING'
        RETURNING c.card_id
    ), used AS (
        UPDATE {card_inventory.name} AS i SET status = 'USED', updated_at = now()
        FROM activated WHERE i.card_id = activated.card_id
    )
    SELECT card_id, status FROM mine
    """
)
_TOMBSTONE = pg_insert(cards).on_conflict_do_nothing(index_elements=[cards.c.saga_id])
_CANCEL = (
    update(cards)
    .where(cards.c.saga_id == bindparam("b_saga_id"))
    .values(status="CANCELLED", card_id=None, number_hash=None, updated_at=func.now())
)
_PICK_ID = (
    select(card_inventory.c.card_id)
    .where(
        card_inventory.c.card_type == bindparam("b_card_type"),
        # inline, not a parameter: the prepared plan can then use the partial index of
        # available ids instead of reading every id ever issued
        card_inventory.c.status == literal_column("'AVAILABLE'"),
    )
    .limit(1)
    .with_for_update(skip_locked=True)
)
_REFILL = pg_insert(card_inventory).on_conflict_do_nothing()
_FREE_ID = (
    update(card_inventory)
    .where(card_inventory.c.card_id == bindparam("b_card_id"))
    .values(status="AVAILABLE", saga_id=None, updated_at=func.now())
)


class CardIssuanceService:
    """Handles the card-issuance commands; idempotent per saga id."""

    def __init__(self, number_salt: str) -> None:
        self.number_salt = number_salt
        self.operations = Operations(card_issuance_operations)

    async def __call__(
        self,
        conn: AsyncConnection,
        envelope: Envelope,
        command: ReserveCard
        | ActivateCard
        | ReleaseCard
        | RestoreCardLimit
        | UndoCardLimitRestore
        | CloseInvoicePayment,
    ) -> Reply:
        assert envelope.saga_id is not None
        if isinstance(command, RestoreCardLimit):
            return await restore_limit(conn, self.operations, envelope, command)
        if isinstance(command, CloseInvoicePayment):
            return await close_payment(conn, command)
        if isinstance(command, UndoCardLimitRestore):
            return await undo_restore(conn, self.operations, envelope, command)
        if isinstance(command, ReserveCard):
            return await self.reserve(conn, envelope.saga_id, command)
        if isinstance(command, ActivateCard):
            return await self.activate(conn, envelope.saga_id)
        return await self.release(conn, envelope.saga_id, command)

    async def reserve(self, conn: AsyncConnection, saga_id: UUID, command: ReserveCard) -> Reply:
        found = await conn.execute(
            _MINE_OR_LIVE,
            {
                "b_saga_id": saga_id,
                "b_user_id": command.user_id,
                "b_card_type": command.card_type.value,
            },
        )
        rows = found.all()
        mine = next((row for row in rows if row.saga_id == saga_id), None)
        if mine is not None:
            if mine.status in LIVE:
                return CardReserved(card_id=mine.card_id, masked_number=mine.masked_number)
            return StepFailed(reason=CARD_RELEASED, detail="the request was already compensated")
        if any(row.status == "ACTIVE" for row in rows):
            return _active_card_exists(command)
        if rows:
            return _in_progress(command)
        card_id = await self._take_card_id(conn, command.card_type.value)
        number = new_card_number()
        masked = mask(number)
        inserted = await conn.execute(
            _INSERT_CARD,
            {
                "saga_id": saga_id,
                "request_id": command.request_id,
                "user_id": command.user_id,
                "card_type": command.card_type.value,
                "card_id": card_id,
                "number_hash": number_hash(number, self.number_salt),
                "masked_number": masked,
            },
        )
        if inserted.first() is None:  # another request's card, inserted since the read
            return _in_progress(command)
        return CardReserved(card_id=card_id, masked_number=masked)

    async def activate(self, conn: AsyncConnection, saga_id: UUID) -> Reply:
        mine = (await conn.execute(_ACTIVATE, {"saga_id": saga_id})).first()
        if mine is None or mine.status not in LIVE:
            return StepFailed(reason=CARD_RELEASED, detail="no reserved card for this saga")
        return CardActivated(card_id=mine.card_id)

    async def release(self, conn: AsyncConnection, saga_id: UUID, command: ReleaseCard) -> Reply:
        """Cancel the saga's card and return its id; a tombstone if there was none yet."""
        mine = (await conn.execute(_MINE_LOCKED, {"b_saga_id": saga_id})).first()
        if mine is None:
            await conn.execute(
                _TOMBSTONE,
                {
                    "saga_id": saga_id,
                    "request_id": command.request_id,
                    "user_id": command.user_id,
                    "card_type": command.card_type.value,
                    "status": "CANCELLED",
                },
            )
            return Compensated()
        if mine.status in LIVE:
            await conn.execute(_CANCEL, {"b_saga_id": saga_id})
            await conn.execute(_FREE_ID, {"b_card_id": mine.card_id})
        return Compensated()

    async def _take_card_id(self, conn: AsyncConnection, card_type: str) -> str:
        """Lock one available id from the inventory, refilling it when empty."""
        while True:
            found = (await conn.execute(_PICK_ID, {"b_card_type": card_type})).scalar_one_or_none()
            if found is not None:
                return str(found)
            await conn.execute(
                _REFILL,
                [
                    {"card_id": new_card_id(), "card_type": card_type, "status": "AVAILABLE"}
                    for _ in range(REFILL_BATCH)
                ],
            )


def _in_progress(command: ReserveCard) -> StepFailed:
    """Another request of the user for the type holds a card not yet issued: whether this
    one is refused (the other issued: ACTIVE_CARD_EXISTS) or goes on (the other refused or
    undone) is known only once the other ends, so the step is tried again after a backoff
    (a request refused for a card that then failed would leave the user without one)."""
    return StepFailed(
        reason="CARD_REQUEST_IN_PROGRESS",
        detail=f"another request of user {command.user_id} for a {command.card_type.value} "
        "card is being issued",
        retryable=True,
    )


def _active_card_exists(command: ReserveCard) -> StepFailed:
    return StepFailed(
        reason=ACTIVE_CARD_EXISTS,
        detail=f"user {command.user_id} already has an active {command.card_type.value} card",
    )
