"""The credit card's open invoice and what the card owes."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_UP, Decimal

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from events.card_api import (
    Invoice,
    TransactionStatus,
)
from events.money import from_minor
from schemas.card_service import card_transactions
from workers.card_issuance.card_service.errors import NotFound
from workers.card_issuance.card_service.rows import AnyRow, card_row, to_transaction


async def invoice(conn: AsyncConnection, card_id: str, today: dt.date) -> Invoice:
    """The open invoice of a credit card, closing on the 3rd: what the card owes (this
    period's purchases and whatever earlier ones are not paid back yet), and the purchases
    captured in this period, after the last close (a debit card has none: NotFound)."""
    row = await card_row(conn, card_id)
    if row.credit_limit_minor is None:
        raise NotFound(f"card {card_id} is a debit card: it pays at once and has no invoice")
    owes = await owed(conn, row)
    close = today.replace(day=3) if today.day <= 3 else _next_month(today).replace(day=3)
    opened = _previous_month(close) + dt.timedelta(days=1)
    captured = await conn.execute(
        select(card_transactions)
        .where(
            and_(
                card_transactions.c.card_id == row.card_id,
                card_transactions.c.status == TransactionStatus.CAPTURED.value,
                card_transactions.c.created_at >= _midnight_utc(opened),
                card_transactions.c.created_at < _midnight_utc(close + dt.timedelta(days=1)),
            )
        )
        .order_by(card_transactions.c.created_at)
    )
    minimum = (Decimal(owes) / 10).to_integral_value(rounding=ROUND_UP)
    return Invoice(
        id=str(uuid.uuid5(row.card_id, close.isoformat())),
        card_id=str(row.card_id),
        due_date=close + dt.timedelta(days=7),
        close_date=close,
        total_amount=from_minor(owes),
        minimum_payment=from_minor(int(minimum)),
        transactions=[to_transaction(r) for r in captured],
    )


async def owed(conn: AsyncConnection, card: AnyRow) -> int:
    """What a credit card owes: its limit less what is available and what is held; nothing
    when it holds a credit balance (a purchase refunded after it was paid for), and a debit
    card never owes anything."""
    if card.credit_limit_minor is None:
        return 0
    held = (
        await conn.execute(
            select(func.coalesce(func.sum(card_transactions.c.held_minor), 0)).where(
                card_transactions.c.card_id == card.card_id
            )
        )
    ).scalar_one()
    return max(0, int(card.credit_limit_minor) - int(card.available_minor) - int(held))


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _previous_month(day: dt.date) -> dt.date:
    """The same day of the month before (the 3rd, a close date, is in every month)."""
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=day.day)


def _midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
