"""The card side of an invoice payment (seed 002): the paid amount goes back to the limit."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import bindparam, func, update
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed
from events.card_invoices import (
    CARD_NOT_FOUND,
    INVOICE_OVERPAID,
    CardLimitRestored,
    RestoreCardLimit,
)
from events.envelope import Envelope
from schemas.card_service import invoice_payments, service_cards
from workers.operations import Operations
from workers.sql import add_within

# Statements built once, not per command (see workers/operations.py).
_RESTORE = (
    add_within(service_cards, "card_id", "available_minor", cap="credit_limit_minor")
    .values(updated_at=func.now())
    .returning(service_cards.c.available_minor)
)
_SETTLE = (
    update(invoice_payments)
    .where(invoice_payments.c.payment_id == bindparam("b_payment_id"))
    .values(status=bindparam("b_status"), reason=bindparam("b_reason"), updated_at=func.now())
)


async def restore_limit(
    conn: AsyncConnection, operations: Operations, envelope: Envelope, command: RestoreCardLimit
) -> Reply:
    async def action() -> Reply:
        try:
            card_id = UUID(command.card_id)
        except ValueError:
            return StepFailed(reason=CARD_NOT_FOUND, detail=f"no card {command.card_id}")
        restored = await conn.execute(
            _RESTORE, {"b_key": card_id, "b_amount": command.amount_minor}
        )
        available = restored.scalar_one_or_none()
        if available is None:
            await _settle(conn, command.payment_id, "REJECTED", INVOICE_OVERPAID)
            return StepFailed(
                reason=INVOICE_OVERPAID,
                detail="the payment exceeds what the card owes (or the card has no credit limit)",
            )
        await _settle(conn, command.payment_id, "PAID", None)
        return CardLimitRestored(available_minor=int(available))

    return await operations.run(conn, envelope, action)


async def _settle(conn: AsyncConnection, payment_id: str, status: str, reason: str | None) -> None:
    await conn.execute(
        _SETTLE, {"b_payment_id": payment_id, "b_status": status, "b_reason": reason}
    )
