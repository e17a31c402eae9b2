"""3-D Secure: the challenge, the simulated ACS's signed answer, and completion."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import NoReturn

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from events.card_api import (
    ThreeDsChallenge,
    ThreeDsInit,
    Transaction,
    TransactionStatus,
)
from workers.card_issuance.card_service.errors import (
    AcquirerUnavailable,
    CardServiceError,
    Declined,
)
from workers.card_issuance.card_service.rows import (
    AnyRow,
    card_row,
    set_transaction,
    transaction_row,
)
from workers.card_issuance.card_service.transactions import (
    ACQUIRER_DOWN,
    THREE_DS_WINDOW,
    decide,
    explain,
    pending,
    refuse_if_due,
)


async def start_3ds(
    conn: AsyncConnection, body: ThreeDsInit, key: str, acs_url: str
) -> ThreeDsChallenge:
    """A pending transaction and its challenge; one the card refuses as it stands (blocked,
    limits, international use) is declined at once, before the cardholder is asked."""
    row = await card_row(conn, body.card_id, lock=True)
    if body.currency is None:
        body = body.model_copy(update={"currency": row.currency})
    transaction_id = await pending(
        conn,
        row.card_id,
        body,
        installments=1,
        three_ds="CHALLENGE_REQUIRED",
        return_url=body.return_url,
    )
    await refuse_if_due(conn, row, transaction_id)
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
    await set_transaction(
        conn, tx.transaction_id, status="DECLINED", decline_reason=reason, three_ds="FAILED"
    )
    raise Declined(explain(reason), str(tx.transaction_id))


async def complete_3ds(
    conn: AsyncConnection, transaction_id: str, pares: str, key: str
) -> Transaction:
    tx = await transaction_row(conn, transaction_id, lock=True)
    if tx.three_ds != "CHALLENGE_REQUIRED" or tx.status != TransactionStatus.PENDING.value:
        raise Declined("this transaction is not waiting for 3-D Secure", transaction_id)
    if await _expired(conn, tx.created_at):
        await _not_authenticated(conn, tx, "3DS_EXPIRED")
    verdict = _read_pares(pares, transaction_id, key)
    card = await card_row(conn, str(tx.card_id), lock=True)
    if verdict != "Y":
        await _not_authenticated(conn, tx, "3DS_FAILED")
    if tx.merchant_name == ACQUIRER_DOWN and card.status == "ACTIVE":  # complete it later
        raise AcquirerUnavailable("the acquirer did not answer; try again later")
    await set_transaction(conn, tx.transaction_id, three_ds="AUTHENTICATED")
    return await decide(conn, card, tx.transaction_id)


def _read_pares(pares: str, transaction_id: str, key: str) -> str:
    try:
        tx, verdict, mac = base64.b64decode(pares, validate=True).decode().split(":")
    except (ValueError, UnicodeDecodeError):
        raise CardServiceError("pares is not a PaRes from the ACS") from None
    good = hmac.new(key.encode(), f"{tx}:{verdict}".encode(), hashlib.sha256).hexdigest()
    if tx != transaction_id or not hmac.compare_digest(mac, good):
        raise CardServiceError("pares does not belong to this transaction")
    return verdict
