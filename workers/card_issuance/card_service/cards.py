"""Cards: issue, read, block and unblock, limits."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.card_api import (
    BlockReason,
    Card,
    CardDetails,
    CardType,
    IssueCard,
    UpdateLimits,
)
from events.money import to_minor
from schemas.card_service import service_cards
from workers.card_issuance.card_service.errors import CardBlocked, CardServiceError
from workers.card_issuance.card_service.rows import card_row, set_card, to_card
from workers.card_issuance.numbers import mask, new_card_number, number_hash

BIN = "543210"


CARD_YEARS = 4


async def issue(conn: AsyncConnection, body: IssueCard, salt: str, today: dt.date) -> Card:
    if body.type != CardType.DEBIT and body.credit_limit is None:
        raise CardServiceError(f"credit_limit is required for a {body.type.value} card")
    if body.type == CardType.DEBIT and body.credit_limit is not None:
        raise CardServiceError(
            "a DEBIT card has no credit_limit (its spending is bounded by its daily and "
            "per-transaction limits)"
        )
    number = new_card_number(BIN)
    limit = None if body.credit_limit is None else to_minor(body.credit_limit)
    card_id = uuid.uuid4()
    await conn.execute(
        pg_insert(service_cards).values(
            card_id=card_id,
            account_id=body.account_id,
            number_hash=number_hash(number, salt),
            masked_number=mask(number),
            last_four=number[-4:],
            brand="MASTERCARD",
            type=body.type.value,
            variant=body.variant.value,
            currency=body.currency,
            status="ACTIVE",
            credit_limit_minor=limit,
            available_minor=limit,
            international_enabled=False,
            expiry_month=today.month,
            expiry_year=today.year + CARD_YEARS,
        )
    )
    return await get(conn, str(card_id))


async def get(conn: AsyncConnection, card_id: str, lock: bool = False) -> Card:
    return to_card(await card_row(conn, card_id, lock))


async def by_account(conn: AsyncConnection, account_id: str) -> list[Card]:
    rows = await conn.execute(
        select(service_cards)
        .where(service_cards.c.account_id == account_id)
        .order_by(service_cards.c.created_at)
    )
    return [to_card(row) for row in rows]


async def details(conn: AsyncConnection, card_id: str) -> CardDetails:
    row = await card_row(conn, card_id)
    return CardDetails(
        card_number=row.masked_number,
        cvv="***",
        expiry=f"{row.expiry_month:02d}/{row.expiry_year % 100:02d}",
    )


async def block(conn: AsyncConnection, card_id: str, reason: BlockReason) -> Card:
    await card_row(conn, card_id, lock=True)
    await set_card(conn, card_id, status="BLOCKED", block_reason=reason.value)
    return await get(conn, card_id)


async def unblock(conn: AsyncConnection, card_id: str) -> Card:
    row = await card_row(conn, card_id, lock=True)
    if row.block_reason in (BlockReason.LOST.value, BlockReason.STOLEN.value):
        raise CardBlocked(f"a card blocked as {row.block_reason} cannot be unblocked; reissue it")
    await set_card(conn, card_id, status="ACTIVE", block_reason=None)
    return await get(conn, card_id)


async def set_limits(conn: AsyncConnection, card_id: str, body: UpdateLimits) -> Card:
    await card_row(conn, card_id, lock=True)
    changes: dict[str, object] = {}
    if body.daily_limit is not None:
        changes["daily_limit_minor"] = to_minor(body.daily_limit)
    if body.transaction_limit is not None:
        changes["transaction_limit_minor"] = to_minor(body.transaction_limit)
    if body.international_enabled is not None:
        changes["international_enabled"] = body.international_enabled
    if changes:
        await set_card(conn, card_id, **changes)
    return await get(conn, card_id)
