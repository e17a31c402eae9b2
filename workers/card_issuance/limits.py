"""The card side of an invoice payment (seed 002): the paid amount goes back to the limit."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import bindparam, func, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed
from events.card_invoices import (
    CARD_NOT_FOUND,
    CREDIT_SPENT,
    INVOICE_OVERPAID,
    CardLimitRestored,
    CloseInvoicePayment,
    InvoicePaymentClosed,
    RestoreCardLimit,
    UndoCardLimitRestore,
)
from events.envelope import Envelope
from events.money import from_minor
from schemas.card_service import invoice_payments, service_cards
from workers.card_issuance.card_service import NotFound, locked_card, owed
from workers.operations import Operations

# Statements built once, not per command (see workers/operations.py).
_RESTORE = (
    update(service_cards)
    .where(service_cards.c.card_id == bindparam("b_card_id"))
    .values(
        available_minor=service_cards.c.available_minor + bindparam("b_amount"),
        updated_at=func.now(),
    )
    .returning(service_cards.c.available_minor)
)
_TAKE_BACK = (
    update(service_cards)
    .where(
        service_cards.c.card_id == bindparam("b_card_id"),
        service_cards.c.available_minor >= bindparam("b_amount"),
    )
    .values(
        available_minor=service_cards.c.available_minor - bindparam("b_amount"),
        updated_at=func.now(),
    )
    .returning(service_cards.c.available_minor)
)
_SETTLE = (
    update(invoice_payments)
    .where(invoice_payments.c.payment_id == bindparam("b_payment_id"))
    .values(status=bindparam("b_status"), reason=bindparam("b_reason"), updated_at=func.now())
)
_CLOSE_PENDING = _SETTLE.where(invoice_payments.c.status == "PENDING")


async def restore_limit(
    conn: AsyncConnection, operations: Operations, envelope: Envelope, command: RestoreCardLimit
) -> Reply:
    """At most what the card owes goes back to its limit: an amount on hold is not owed yet (its
    void or capture settles it), so paying it would free credit a second time. The card is
    locked first, as every change of its limit and holds locks it."""

    async def action() -> Reply:
        try:
            card = await locked_card(conn, command.card_id)
        except NotFound:
            await _settle(conn, command.payment_id, "REJECTED", CARD_NOT_FOUND)
            return StepFailed(reason=CARD_NOT_FOUND, detail=f"no card {command.card_id}")
        owes = await owed(conn, card)
        if command.amount_minor > owes:
            await _settle(conn, command.payment_id, "REJECTED", INVOICE_OVERPAID)
            return StepFailed(
                reason=INVOICE_OVERPAID,
                detail=f"the payment exceeds what the card owes ({from_minor(owes)})",
            )
        restored = await conn.execute(
            _RESTORE, {"b_card_id": card.card_id, "b_amount": command.amount_minor}
        )
        await _settle(conn, command.payment_id, "PAID", None)
        return CardLimitRestored(available_minor=int(restored.scalar_one()))

    return await operations.run(conn, envelope, action)


async def undo_restore(
    conn: AsyncConnection, operations: Operations, envelope: Envelope, command: UndoCardLimitRestore
) -> Reply:
    """The paid amount off the card's limit again, if the restore took effect; the payment's
    record REJECTED. Refused when the card has spent that credit meanwhile."""

    async def undo(done: Reply) -> StepFailed | None:
        if not isinstance(done, CardLimitRestored):
            return None  # the card side refused: nothing was restored
        taken = await conn.execute(
            _TAKE_BACK, {"b_card_id": UUID(command.card_id), "b_amount": command.amount_minor}
        )
        if taken.first() is None:
            return StepFailed(
                reason=CREDIT_SPENT,
                detail="the card spent the restored credit: it cannot be taken back",
            )
        await _settle(conn, command.payment_id, "REJECTED", "TIMEOUT")
        return None

    return await operations.undo(conn, envelope, undo)


async def close_payment(conn: AsyncConnection, command: CloseInvoicePayment) -> Reply:
    """A payment that failed before it reached the card keeps the saga's end; one the card
    side settled keeps what it said."""
    await conn.execute(
        _CLOSE_PENDING,
        {
            "b_payment_id": command.payment_id,
            "b_status": command.status.value,
            "b_reason": command.reason,
        },
    )
    return InvoicePaymentClosed(payment_id=command.payment_id)


async def _settle(conn: AsyncConnection, payment_id: str, status: str, reason: str | None) -> None:
    await conn.execute(
        _SETTLE, {"b_payment_id": payment_id, "b_status": status, "b_reason": reason}
    )
