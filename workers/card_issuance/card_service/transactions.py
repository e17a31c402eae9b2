"""Authorizations under the card's limits, capture, reversal and history."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from decimal import Decimal

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.card_api import (
    Authorize,
    ThreeDsInit,
    Transaction,
    TransactionStatus,
)
from events.money import MAX_MINOR, from_minor, to_minor
from schemas.card_service import card_transactions
from workers.card_issuance.card_service.errors import (
    AcquirerUnavailable,
    CardBlocked,
    CardServiceError,
    Declined,
)
from workers.card_issuance.card_service.rows import (
    AnyRow,
    card_row,
    set_card,
    set_transaction,
    to_transaction,
    transaction,
    transaction_row,
)

ACQUIRER_DOWN = "ACQUIRER_UNAVAILABLE"
"""Simulator rule: merchant name ACQUIRER_UNAVAILABLE finds the acquirer down (503)."""


_TODAY_UTC = func.timezone("UTC", func.date_trunc("day", func.timezone("UTC", func.now())))
"""The start of the database's current UTC day."""


THREE_DS_WINDOW = dt.timedelta(minutes=15)
_EXPIRE_CHALLENGES = (
    update(card_transactions)
    .where(
        card_transactions.c.status == TransactionStatus.PENDING.value,
        card_transactions.c.three_ds == "CHALLENGE_REQUIRED",
        card_transactions.c.created_at < func.now() - THREE_DS_WINDOW,
    )
    .values(
        status="DECLINED", decline_reason="3DS_EXPIRED", three_ds="FAILED", updated_at=func.now()
    )
)
"""3-D Secure challenges nobody completed in their window: declined as a late completion
would find them, when the card's history is read."""
"""How long a 3-D Secure challenge can be answered: a later answer is declined, so no
payment is approved days after it was started (and counted on that day's limit)."""


async def authorize(conn: AsyncConnection, body: Authorize) -> Transaction:
    """Check status and limits under a lock on the card; hold the amount if approved."""
    row = await card_row(conn, body.card_id, lock=True)
    if body.merchant_name == ACQUIRER_DOWN and row.status == "ACTIVE":
        raise AcquirerUnavailable("the acquirer did not answer; try again later")
    transaction_id = await pending(conn, row.card_id, body, installments=body.installments)
    return await decide(conn, row, transaction_id)


async def pending(
    conn: AsyncConnection, card_id: uuid.UUID, body: Authorize | ThreeDsInit, **extra: object
) -> uuid.UUID:
    """Record a PENDING transaction (every attempt is kept, declined ones too)."""
    transaction_id = uuid.uuid4()
    await conn.execute(
        pg_insert(card_transactions).values(
            transaction_id=transaction_id,
            card_id=card_id,
            amount_minor=to_minor(body.amount),
            currency=body.currency,
            merchant_name=body.merchant_name,
            merchant_category=body.merchant_category,
            status=TransactionStatus.PENDING.value,
            **extra,
        )
    )
    return transaction_id


async def refuse_if_due(conn: AsyncConnection, card: AnyRow, transaction_id: uuid.UUID) -> AnyRow:
    """The pending transaction, or, if the card's status or limits refuse it, the
    transaction DECLINED with the reason and the refusal raised (its id in the problem)."""
    tx = await transaction_row(conn, str(transaction_id))
    refusal = await _refusal(conn, card, tx.currency, int(tx.amount_minor), int(tx.installments))
    if refusal is not None:
        kind, reason = refusal
        await set_transaction(conn, transaction_id, status="DECLINED", decline_reason=reason)
        raise kind(explain(reason), str(transaction_id))
    return tx


async def decide(conn: AsyncConnection, card: AnyRow, transaction_id: uuid.UUID) -> Transaction:
    tx = await refuse_if_due(conn, card, transaction_id)
    amount = int(tx.amount_minor)
    if card.available_minor is not None:
        await set_card(conn, str(card.card_id), available_minor=card.available_minor - amount)
    await set_transaction(
        conn,
        transaction_id,
        status="AUTHORIZED",
        authorized_at=func.now(),
        held_minor=amount,
        authorization_code=f"{secrets.randbelow(10**6):06d}",
    )
    return await transaction(conn, str(transaction_id))


async def _refusal(
    conn: AsyncConnection,
    card: AnyRow,
    currency: str,
    amount: int,
    installments: int,
) -> tuple[type[CardServiceError], str] | None:
    if card.status != "ACTIVE":
        return CardBlocked, "CARD_BLOCKED"
    if installments > 1 and card.credit_limit_minor is None:
        return Declined, "INSTALLMENTS_NEED_CREDIT"
    if card.transaction_limit_minor is not None and amount > card.transaction_limit_minor:
        return Declined, "TRANSACTION_LIMIT_EXCEEDED"
    if currency != card.currency and not card.international_enabled:
        return Declined, "INTERNATIONAL_DISABLED"
    if card.daily_limit_minor is not None:
        since = _TODAY_UTC  # the database's day: hosts' clocks may disagree
        spent = (
            await conn.execute(
                select(
                    func.coalesce(
                        func.sum(
                            card_transactions.c.held_minor + card_transactions.c.captured_minor
                        ),
                        0,
                    )
                ).where(
                    card_transactions.c.card_id == card.card_id,
                    card_transactions.c.created_at >= since - literal(THREE_DS_WINDOW),
                    func.coalesce(card_transactions.c.authorized_at, card_transactions.c.created_at)
                    >= since,
                )
            )
        ).scalar_one()
        if int(spent) + amount > card.daily_limit_minor:
            return Declined, "DAILY_LIMIT_EXCEEDED"
    if card.available_minor is not None and amount > card.available_minor:
        return Declined, "INSUFFICIENT_LIMIT"
    return None


def explain(reason: str) -> str:
    return {
        "CARD_BLOCKED": "the card is blocked",
        "TRANSACTION_LIMIT_EXCEEDED": "the amount exceeds the card's per-transaction limit",
        "INTERNATIONAL_DISABLED": "international transactions are disabled on this card",
        "DAILY_LIMIT_EXCEEDED": "the amount exceeds what is left of the daily limit",
        "INSUFFICIENT_LIMIT": "the card's available limit is too low",
        "INSTALLMENTS_NEED_CREDIT": "installments are paid on credit: a debit card pays at once",
        "3DS_FAILED": "the cardholder was not authenticated",
        "3DS_EXPIRED": "the 3-D Secure challenge expired: start the payment again",
    }.get(reason, reason)


async def capture(
    conn: AsyncConnection, transaction_id: str, amount: Decimal | None
) -> Transaction:
    tx = await transaction_row(conn, transaction_id, lock=True)
    if tx.status != TransactionStatus.AUTHORIZED.value:
        raise Declined(f"a {tx.status} transaction cannot be captured", transaction_id)
    take = int(tx.held_minor) if amount is None else to_minor(amount)
    if take > tx.held_minor:
        raise Declined(
            f"the capture exceeds what the authorization still holds ({from_minor(tx.held_minor)})",
            transaction_id,
        )
    card = await card_row(conn, str(tx.card_id), lock=True)
    if card.available_minor is not None:
        await set_card(
            conn, str(card.card_id), available_minor=card.available_minor + tx.held_minor - take
        )
    await set_transaction(
        conn,
        tx.transaction_id,
        status="CAPTURED",
        captured_minor=take,
        held_minor=0,
        refunded_minor=0,
    )
    return await transaction(conn, transaction_id)


async def reverse(
    conn: AsyncConnection, transaction_id: str, amount: Decimal | None
) -> Transaction:
    tx = await transaction_row(conn, transaction_id, lock=True)
    if tx.status == TransactionStatus.AUTHORIZED.value:
        left, field = int(tx.held_minor), "held_minor"
    elif tx.status == TransactionStatus.CAPTURED.value:
        refunded = tx.reversed_minor if tx.refunded_minor is None else tx.refunded_minor
        left, field = int(tx.captured_minor - refunded), "captured"
    else:
        raise Declined(f"a {tx.status} transaction cannot be reversed", transaction_id)
    back = left if amount is None else to_minor(amount)
    if back > left:
        raise Declined("the reversal exceeds what the transaction holds", transaction_id)
    card = await card_row(conn, str(tx.card_id), lock=True)
    if card.available_minor is not None:
        if card.available_minor + back > MAX_MINOR:
            raise Declined(
                f"the card's available amount would pass {from_minor(MAX_MINOR)}",
                transaction_id,
            )
        await set_card(conn, str(card.card_id), available_minor=card.available_minor + back)
    if field == "held_minor":
        held = left - back
        await set_transaction(
            conn,
            tx.transaction_id,
            held_minor=held,
            reversed_minor=tx.reversed_minor + back,
            status="REVERSED" if held == 0 else "AUTHORIZED",
        )
    else:
        refunded_total = int(tx.captured_minor) - left + back
        await set_transaction(
            conn,
            tx.transaction_id,
            reversed_minor=tx.reversed_minor + back,
            refunded_minor=refunded_total,
            status="REVERSED" if refunded_total == tx.captured_minor else "CAPTURED",
        )
    return await transaction(conn, transaction_id)


async def history(
    conn: AsyncConnection, card_id: str, limit: int, offset: int
) -> tuple[int, list[Transaction]]:
    row = await card_row(conn, card_id)
    where = card_transactions.c.card_id == row.card_id
    await conn.execute(_EXPIRE_CHALLENGES.where(where))
    total = (await conn.execute(select(func.count()).where(where))).scalar_one()
    rows = await conn.execute(
        select(card_transactions)
        .where(where)
        .order_by(card_transactions.c.created_at.desc(), card_transactions.c.transaction_id)
        .limit(limit)
        .offset(offset)
    )
    return int(total), [to_transaction(r) for r in rows]
