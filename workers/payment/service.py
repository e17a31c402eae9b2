"""Payment worker: charges and refunds through the bank API, gift card bindings (seed 003)."""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed, expect
from events.envelope import Envelope
from events.payment import (
    ACQUIRER_UNAVAILABLE,
    PAYMENT_DECLINED,
    BankCharged,
    BindGiftCard,
    ChargeBank,
    GiftCardBound,
    RefundBank,
    UnbindGiftCard,
)
from schemas.payment import bank_payments, gift_card_bindings, payment_operations
from workers.operations import Operations, step_key
from workers.payment.bank import BankApi, BankDeclined, BankUnavailable, SimulatedBank

# Statements built once, not per command (see workers/operations.py).
_INSERT_PAYMENT = pg_insert(bank_payments)
_REFUND_PAYMENT = (
    update(bank_payments)
    .where(
        bank_payments.c.payment_id == bindparam("b_payment_id"),
        bank_payments.c.status == "CAPTURED",
    )
    .values(status="REFUNDED")
    .returning(bank_payments.c.bank_reference)
)
_NEW_BINDING = pg_insert(gift_card_bindings)
_BIND_GIFT_CARD = _NEW_BINDING.on_conflict_do_update(
    index_elements=[gift_card_bindings.c.gift_card_id],
    set_={name: _NEW_BINDING.excluded[name] for name in ("customer_id", "saga_id", "status")},
)
_UNBIND_GIFT_CARD = (
    update(gift_card_bindings)
    .where(
        gift_card_bindings.c.gift_card_id == bindparam("b_gift_card_id"),
        gift_card_bindings.c.saga_id == bindparam("b_saga_id"),
    )
    .values(status="UNBOUND")
)


class PaymentService:
    """Handles the payment commands; each is idempotent per saga step."""

    def __init__(self, bank: BankApi | None = None) -> None:
        self.bank = bank or SimulatedBank()
        self.operations = Operations(payment_operations)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, command: object) -> Reply:
        match command:
            case ChargeBank():
                return await self.charge(conn, envelope, command)
            case RefundBank():
                return await self.refund(conn, envelope)
            case BindGiftCard():
                return await self.bind(conn, envelope, command)
            case UnbindGiftCard():
                return await self.unbind(conn, envelope)
        raise TypeError(f"payment cannot handle {type(command).__name__}")

    async def charge(self, conn: AsyncConnection, envelope: Envelope, command: ChargeBank) -> Reply:
        saga_id, step = step_key(envelope)

        async def action() -> Reply:
            try:
                charge = await self.bank.charge(
                    conn,
                    f"{saga_id}:{step}",
                    command.card_token,
                    command.amount_minor,
                    command.currency,
                )
            except BankDeclined as exc:
                return StepFailed(reason=PAYMENT_DECLINED, detail=str(exc))
            except BankUnavailable as exc:
                return StepFailed(reason=ACQUIRER_UNAVAILABLE, detail=str(exc), retryable=True)
            payment_id = f"P-{uuid4().hex[:20]}"
            await conn.execute(
                _INSERT_PAYMENT,
                {
                    "payment_id": payment_id,
                    "saga_id": saga_id,
                    "step": step,
                    "customer_id": command.customer_id,
                    "method": command.method.value,
                    "token_hint": _hint(command.card_token),
                    "amount_minor": charge.amount_minor,
                    "currency": command.currency,
                    "purpose": command.purpose,
                    "bank_reference": charge.reference,
                    "status": "CAPTURED",
                },
            )
            return BankCharged(payment_id=payment_id, amount_minor=charge.amount_minor)

        return await self.operations.run(conn, envelope, action)

    async def refund(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, BankCharged)
            refunded = await conn.execute(_REFUND_PAYMENT, {"b_payment_id": done.payment_id})
            reference = refunded.scalar_one_or_none()
            if reference is not None:
                key = f"refund:{done.payment_id}"
                await self.bank.refund(conn, key, reference, done.amount_minor)
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def bind(self, conn: AsyncConnection, envelope: Envelope, command: BindGiftCard) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            await conn.execute(
                _BIND_GIFT_CARD,
                {
                    "gift_card_id": command.gift_card_id,
                    "customer_id": command.customer_id,
                    "saga_id": saga_id,
                    "status": "BOUND",
                },
            )
            return GiftCardBound(gift_card_id=command.gift_card_id)

        return await self.operations.run(conn, envelope, action)

    async def unbind(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        saga_id, _ = step_key(envelope)

        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, GiftCardBound)
            await conn.execute(
                _UNBIND_GIFT_CARD, {"b_gift_card_id": done.gift_card_id, "b_saga_id": saga_id}
            )
            return None

        return await self.operations.undo(conn, envelope, undo)


def _hint(token: str | None) -> str | None:
    return None if token is None else "…" + token[-4:]
