"""Reading and writing the card service's rows, and their API models."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import parse_uuid
from events.card_api import (
    Card,
    Transaction,
    TransactionStatus,
)
from events.money import from_minor
from schemas.card_service import card_transactions, service_cards
from workers.card_issuance.card_service.errors import NotFound

AnyRow = Row[*tuple[Any, ...]]


async def locked_card(conn: AsyncConnection, card_id: str) -> AnyRow:
    """The card, locked as every change of its limit and holds locks it; NotFound."""
    return await card_row(conn, card_id, lock=True)


async def transaction(conn: AsyncConnection, transaction_id: str) -> Transaction:
    return to_transaction(await transaction_row(conn, transaction_id))


async def card_row(conn: AsyncConnection, card_id: str, lock: bool = False) -> AnyRow:
    return await _one(conn, service_cards.c.card_id, card_id, "Card", lock)


async def transaction_row(conn: AsyncConnection, transaction_id: str, lock: bool = False) -> AnyRow:
    return await _one(conn, card_transactions.c.transaction_id, transaction_id, "Transaction", lock)


async def _one(
    conn: AsyncConnection, key: ColumnElement[Any], ident: str, what: str, lock: bool
) -> AnyRow:
    """The row whose uuid ``key`` is ``ident`` (optionally locked), or NotFound."""
    query = select(key.table).where(key == _uuid(ident, what))
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound(f"{what} with ID {ident} not found")
    return row


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return parse_uuid(value)
    except ValueError:
        raise NotFound(f"{what} with ID {value} not found") from None


async def set_card(conn: AsyncConnection, card_id: str, **values: object) -> None:
    await conn.execute(
        update(service_cards)
        .where(service_cards.c.card_id == uuid.UUID(card_id))
        .values(**values, updated_at=func.now())
    )


async def set_transaction(
    conn: AsyncConnection, transaction_id: uuid.UUID, **values: object
) -> None:
    await conn.execute(
        update(card_transactions)
        .where(card_transactions.c.transaction_id == transaction_id)
        .values(**values, updated_at=func.now())
    )


def to_card(row: AnyRow) -> Card:
    def money(minor: int | None) -> Decimal | None:
        return None if minor is None else from_minor(minor)

    return Card(
        id=str(row.card_id),
        account_id=row.account_id,
        last_four=row.last_four,
        brand=row.brand,
        type=row.type,
        variant=row.variant,
        status=row.status,
        block_reason=row.block_reason,
        currency=row.currency,
        credit_limit=money(row.credit_limit_minor),
        available_limit=money(row.available_minor),
        daily_limit=money(row.daily_limit_minor),
        transaction_limit=money(row.transaction_limit_minor),
        international_enabled=row.international_enabled,
        expiry_month=row.expiry_month,
        expiry_year=row.expiry_year,
        created_at=row.created_at,
    )


def to_transaction(row: AnyRow) -> Transaction:
    return Transaction(
        id=str(row.transaction_id),
        card_id=str(row.card_id),
        amount=from_minor(row.amount_minor),
        captured_amount=from_minor(row.captured_minor),
        reversed_amount=from_minor(row.reversed_minor),
        currency=row.currency,
        merchant_name=row.merchant_name,
        merchant_category=row.merchant_category,
        installments=row.installments,
        status=TransactionStatus(row.status),
        authorization_code=row.authorization_code,
        decline_reason=row.decline_reason,
        created_at=row.created_at,
    )
