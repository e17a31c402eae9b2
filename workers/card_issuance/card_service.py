"""The card service of seed 002: cards with limits, authorizations, capture, reversal, 3-D
Secure and invoices. Functions take a connection inside the caller's transaction; refusals
are exceptions that say which HTTP answer they mean."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, Row, and_, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import parse_uuid
from events.card_api import (
    Authorize,
    BlockReason,
    Card,
    CardDetails,
    CardType,
    Invoice,
    IssueCard,
    ThreeDsChallenge,
    ThreeDsInit,
    Transaction,
    TransactionStatus,
    UpdateLimits,
)
from events.money import MAX_MINOR, from_minor, to_minor
from schemas.card_service import card_transactions, service_cards
from workers.card_issuance.numbers import mask, new_card_number, number_hash

AnyRow = Row[*tuple[Any, ...]]

BIN = "543210"
ACQUIRER_DOWN = "ACQUIRER_UNAVAILABLE"
"""Simulator rule: merchant name ACQUIRER_UNAVAILABLE finds the acquirer down (503)."""
CARD_YEARS = 4


class CardServiceError(Exception):
    status = 400
    code = "VAL-0001"
    title = "Invalid request"

    def __init__(self, detail: str, transaction_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transaction_id = transaction_id


class NotFound(CardServiceError):
    status, code, title = 404, "RES-4040", "Not found"


class CardBlocked(CardServiceError):
    status, code, title = 403, "CARD-4030", "Card blocked"


class Declined(CardServiceError):
    status, code, title = 422, "TXN-4220", "Declined"


class AcquirerUnavailable(CardServiceError):
    status, code, title = 503, "ACQ-5030", "Acquirer unavailable"


_TODAY_UTC = func.timezone("UTC", func.date_trunc("day", func.timezone("UTC", func.now())))
"""The start of the database's current UTC day."""
THREE_DS_WINDOW = dt.timedelta(minutes=15)
"""How long a 3-D Secure challenge can be answered: a later answer is declined, so no
payment is approved days after it was started (and counted on that day's limit)."""


@dataclass(frozen=True)
class Decision:
    status: TransactionStatus
    reason: str | None


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
    return _card(await _row(conn, card_id, lock))


async def by_account(conn: AsyncConnection, account_id: str) -> list[Card]:
    rows = await conn.execute(
        select(service_cards)
        .where(service_cards.c.account_id == account_id)
        .order_by(service_cards.c.created_at)
    )
    return [_card(row) for row in rows]


async def details(conn: AsyncConnection, card_id: str) -> CardDetails:
    row = await _row(conn, card_id)
    return CardDetails(
        card_number=row.masked_number,
        cvv="***",
        expiry=f"{row.expiry_month:02d}/{row.expiry_year % 100:02d}",
    )


async def block(conn: AsyncConnection, card_id: str, reason: BlockReason) -> Card:
    await _row(conn, card_id, lock=True)
    await _set(conn, card_id, status="BLOCKED", block_reason=reason.value)
    return await get(conn, card_id)


async def unblock(conn: AsyncConnection, card_id: str) -> Card:
    row = await _row(conn, card_id, lock=True)
    if row.block_reason in (BlockReason.LOST.value, BlockReason.STOLEN.value):
        raise CardBlocked(f"a card blocked as {row.block_reason} cannot be unblocked; reissue it")
    await _set(conn, card_id, status="ACTIVE", block_reason=None)
    return await get(conn, card_id)


async def set_limits(conn: AsyncConnection, card_id: str, body: UpdateLimits) -> Card:
    await _row(conn, card_id, lock=True)
    changes: dict[str, object] = {}
    if body.daily_limit is not None:
        changes["daily_limit_minor"] = to_minor(body.daily_limit)
    if body.transaction_limit is not None:
        changes["transaction_limit_minor"] = to_minor(body.transaction_limit)
    if body.international_enabled is not None:
        changes["international_enabled"] = body.international_enabled
    if changes:
        await _set(conn, card_id, **changes)
    return await get(conn, card_id)


async def authorize(conn: AsyncConnection, body: Authorize) -> Transaction:
    """Check status and limits under a lock on the card; hold the amount if approved."""
    row = await _row(conn, body.card_id, lock=True)
    if body.merchant_name == ACQUIRER_DOWN and row.status == "ACTIVE":
        raise AcquirerUnavailable("the acquirer did not answer; try again later")
    transaction_id = await _pending(conn, row.card_id, body, installments=body.installments)
    return await _decide(conn, row, transaction_id)


async def _pending(
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


async def _decide(conn: AsyncConnection, card: AnyRow, transaction_id: uuid.UUID) -> Transaction:
    tx = await _transaction_row(conn, str(transaction_id))
    amount = int(tx.amount_minor)
    refusal = await _refusal(conn, card, tx.currency, amount, int(tx.installments))
    if refusal is not None:
        kind, reason = refusal
        await _set_tx(conn, transaction_id, status="DECLINED", decline_reason=reason)
        raise kind(_explain(reason), str(transaction_id))
    if card.available_minor is not None:
        await _set(conn, str(card.card_id), available_minor=card.available_minor - amount)
    await _set_tx(
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


def _explain(reason: str) -> str:
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
    tx = await _transaction_row(conn, transaction_id, lock=True)
    if tx.status != TransactionStatus.AUTHORIZED.value:
        raise Declined(f"a {tx.status} transaction cannot be captured", transaction_id)
    take = int(tx.held_minor) if amount is None else to_minor(amount)
    if take > tx.held_minor:
        raise Declined(
            f"the capture exceeds what the authorization still holds ({from_minor(tx.held_minor)})",
            transaction_id,
        )
    card = await _row(conn, str(tx.card_id), lock=True)
    if card.available_minor is not None:
        await _set(
            conn, str(card.card_id), available_minor=card.available_minor + tx.held_minor - take
        )
    await _set_tx(
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
    tx = await _transaction_row(conn, transaction_id, lock=True)
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
    card = await _row(conn, str(tx.card_id), lock=True)
    if card.available_minor is not None:
        if card.available_minor + back > MAX_MINOR:
            raise Declined(
                f"the card's available amount would pass {from_minor(MAX_MINOR)}",
                transaction_id,
            )
        await _set(conn, str(card.card_id), available_minor=card.available_minor + back)
    if field == "held_minor":
        held = left - back
        await _set_tx(
            conn,
            tx.transaction_id,
            held_minor=held,
            reversed_minor=tx.reversed_minor + back,
            status="REVERSED" if held == 0 else "AUTHORIZED",
        )
    else:
        refunded_total = int(tx.captured_minor) - left + back
        await _set_tx(
            conn,
            tx.transaction_id,
            reversed_minor=tx.reversed_minor + back,
            refunded_minor=refunded_total,
            status="REVERSED" if refunded_total == tx.captured_minor else "CAPTURED",
        )
    return await transaction(conn, transaction_id)


async def start_3ds(
    conn: AsyncConnection, body: ThreeDsInit, key: str, acs_url: str
) -> ThreeDsChallenge:
    row = await _row(conn, body.card_id, lock=True)
    if row.status != "ACTIVE":
        raise CardBlocked("the card is blocked")
    transaction_id = await _pending(
        conn,
        row.card_id,
        body,
        installments=1,
        three_ds="CHALLENGE_REQUIRED",
        return_url=body.return_url,
    )
    pareq = {
        "transaction_id": str(transaction_id),
        "amount": str(body.amount),
        "merchant": body.merchant_name,
    }
    return ThreeDsChallenge(
        transaction_id=str(transaction_id),
        acs_url=f"{acs_url.rstrip('/')}/{transaction_id}",
        pareq=base64.b64encode(json.dumps(pareq).encode()).decode(),
        status="CHALLENGE_REQUIRED",
    )


def acs_answer(key: str, transaction_id: str, authenticated: bool) -> str:
    """The simulated ACS: the signed PaRes the cardholder's bank returns after the challenge."""
    verdict = "Y" if authenticated else "N"
    mac = hmac.new(key.encode(), f"{transaction_id}:{verdict}".encode(), hashlib.sha256)
    return base64.b64encode(f"{transaction_id}:{verdict}:{mac.hexdigest()}".encode()).decode()


async def _expired(conn: AsyncConnection, started: dt.datetime) -> bool:
    """Whether a challenge started then is past its window, by the database's clock."""
    now: dt.datetime = (await conn.execute(select(func.now()))).scalar_one()
    return now - started > THREE_DS_WINDOW


async def _not_authenticated(conn: AsyncConnection, tx: AnyRow, reason: str) -> NoReturn:
    await _set_tx(
        conn, tx.transaction_id, status="DECLINED", decline_reason=reason, three_ds="FAILED"
    )
    raise Declined(_explain(reason), str(tx.transaction_id))


async def complete_3ds(
    conn: AsyncConnection, transaction_id: str, pares: str, key: str
) -> Transaction:
    tx = await _transaction_row(conn, transaction_id, lock=True)
    if tx.three_ds != "CHALLENGE_REQUIRED" or tx.status != TransactionStatus.PENDING.value:
        raise Declined("this transaction is not waiting for 3-D Secure", transaction_id)
    if await _expired(conn, tx.created_at):
        await _not_authenticated(conn, tx, "3DS_EXPIRED")
    verdict = _read_pares(pares, transaction_id, key)
    card = await _row(conn, str(tx.card_id), lock=True)
    if verdict != "Y":
        await _not_authenticated(conn, tx, "3DS_FAILED")
    if tx.merchant_name == ACQUIRER_DOWN and card.status == "ACTIVE":  # complete it later
        raise AcquirerUnavailable("the acquirer did not answer; try again later")
    await _set_tx(conn, tx.transaction_id, three_ds="AUTHENTICATED")
    return await _decide(conn, card, tx.transaction_id)


def _read_pares(pares: str, transaction_id: str, key: str) -> str:
    try:
        tx, verdict, mac = base64.b64decode(pares, validate=True).decode().split(":")
    except (ValueError, UnicodeDecodeError):
        raise CardServiceError("pares is not a PaRes from the ACS") from None
    good = hmac.new(key.encode(), f"{tx}:{verdict}".encode(), hashlib.sha256).hexdigest()
    if tx != transaction_id or not hmac.compare_digest(mac, good):
        raise CardServiceError("pares does not belong to this transaction")
    return verdict


async def transaction(conn: AsyncConnection, transaction_id: str) -> Transaction:
    return _transaction(await _transaction_row(conn, transaction_id))


async def history(
    conn: AsyncConnection, card_id: str, limit: int, offset: int
) -> tuple[int, list[Transaction]]:
    row = await _row(conn, card_id)
    where = card_transactions.c.card_id == row.card_id
    total = (await conn.execute(select(func.count()).where(where))).scalar_one()
    rows = await conn.execute(
        select(card_transactions)
        .where(where)
        .order_by(card_transactions.c.created_at.desc(), card_transactions.c.transaction_id)
        .limit(limit)
        .offset(offset)
    )
    return int(total), [_transaction(r) for r in rows]


async def invoice(conn: AsyncConnection, card_id: str, today: dt.date) -> Invoice:
    """The open invoice: what was captured and not yet paid back, closing on the 3rd."""
    row = await _row(conn, card_id)
    owes = await owed(conn, row)
    close = today.replace(day=3) if today.day <= 3 else _next_month(today).replace(day=3)
    captured = await conn.execute(
        select(card_transactions)
        .where(
            and_(
                card_transactions.c.card_id == row.card_id,
                card_transactions.c.status == TransactionStatus.CAPTURED.value,
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
        transactions=[_transaction(r) for r in captured],
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


async def locked_card(conn: AsyncConnection, card_id: str) -> AnyRow:
    """The card, locked as every change of its limit and holds locks it; NotFound."""
    return await _row(conn, card_id, lock=True)


async def _row(conn: AsyncConnection, card_id: str, lock: bool = False) -> AnyRow:
    return await _one(conn, service_cards.c.card_id, card_id, "Card", lock)


async def _transaction_row(
    conn: AsyncConnection, transaction_id: str, lock: bool = False
) -> AnyRow:
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


async def _set(conn: AsyncConnection, card_id: str, **values: object) -> None:
    await conn.execute(
        update(service_cards)
        .where(service_cards.c.card_id == uuid.UUID(card_id))
        .values(**values, updated_at=func.now())
    )


async def _set_tx(conn: AsyncConnection, transaction_id: uuid.UUID, **values: object) -> None:
    await conn.execute(
        update(card_transactions)
        .where(card_transactions.c.transaction_id == transaction_id)
        .values(**values, updated_at=func.now())
    )


def _card(row: AnyRow) -> Card:
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


def _transaction(row: AnyRow) -> Transaction:
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
