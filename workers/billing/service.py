"""Billing worker: card wallets (seed 000), client wallets and gift cards (seed 003)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Compensated, Reply, StepFailed
from events.billing import (
    SUPPORTED_CURRENCIES,
    UNSUPPORTED_CURRENCY,
    WALLET_CLOSED,
    ActivateCustomerWallet,
    ActivateGiftCard,
    CancelGiftCard,
    CheckCustomer,
    CloseCardWallet,
    CloseCustomerWallet,
    CreditWallet,
    DebitBalance,
    IssueGiftCard,
    OpenCardWallet,
    OpenCustomerWallet,
    RedeemActivationCode,
    RefundBalance,
    UndoRedemption,
    WalletOpened,
)
from events.envelope import Envelope
from events.money import from_minor
from schemas.billing import billing_operations, card_wallets
from workers.billing.accounts import CustomerAccounts
from workers.billing.locks import lock_balances
from workers.operations import Operations

# Statements built once, not per command (see workers/operations.py).
_SAGA_WALLET = select(card_wallets).where(card_wallets.c.saga_id == bindparam("b_saga_id"))
_OPEN_WALLET = (
    pg_insert(card_wallets)
    .on_conflict_do_nothing(index_elements=[card_wallets.c.saga_id])
    .returning(card_wallets.c.wallet_id)
)
_WALLET_TOMBSTONE = pg_insert(card_wallets).on_conflict_do_nothing(
    index_elements=[card_wallets.c.saga_id]
)
_CLOSE_WALLET = (
    update(card_wallets)
    .where(card_wallets.c.saga_id == bindparam("b_saga_id"))
    .values(status="CLOSED", updated_at=func.now())
)


class BillingService:
    """Handles the billing commands; each is idempotent per saga (step)."""

    def __init__(self, code_key: str) -> None:
        self.operations = Operations(billing_operations)
        self.accounts = CustomerAccounts(self.operations, code_key)
        self.code_key = code_key

    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None:
        await lock_balances(conn, self.code_key, commands)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, command: object) -> Reply:
        assert envelope.saga_id is not None
        accounts = self.accounts
        match command:
            case OpenCardWallet():
                return await self.open_card_wallet(conn, envelope.saga_id, command)
            case CloseCardWallet():
                return await self.close_card_wallet(conn, envelope.saga_id)
            case OpenCustomerWallet():
                return await accounts.open_wallet(conn, envelope, command)
            case ActivateCustomerWallet():
                return await accounts.activate_wallet(conn, envelope, command)
            case CloseCustomerWallet():
                return await accounts.close_wallet(conn, envelope)
            case CheckCustomer():
                return await accounts.check_customer(conn, envelope, command)
            case DebitBalance():
                return await accounts.debit(conn, envelope, command)
            case RefundBalance():
                return await accounts.refund(conn, envelope)
            case CreditWallet():
                return await accounts.credit(conn, envelope, command)
            case IssueGiftCard():
                return await accounts.issue_gift_card(conn, envelope, command)
            case CancelGiftCard():
                return await accounts.cancel_gift_card(conn, envelope)
            case RedeemActivationCode():
                return await accounts.redeem(conn, envelope, command)
            case UndoRedemption():
                return await accounts.undo_redemption(conn, envelope)
            case ActivateGiftCard():
                return await accounts.activate_gift_card(conn, envelope, command)
        raise TypeError(f"billing cannot handle {type(command).__name__}")

    async def open_card_wallet(
        self, conn: AsyncConnection, saga_id: UUID, command: OpenCardWallet
    ) -> Reply:
        if command.currency in SUPPORTED_CURRENCIES:
            wallet_id = f"W-{uuid4().hex[:20]}"
            opened = await conn.execute(
                _OPEN_WALLET,
                {
                    "wallet_id": wallet_id,
                    "saga_id": saga_id,
                    "card_id": command.card_id,
                    "currency": command.currency,
                    "balance_minor": 0,
                    "status": "OPEN",
                },
            )
            if opened.first() is not None:
                return WalletOpened(
                    wallet_id=wallet_id, balance=from_minor(0), currency=command.currency
                )
        mine = (await conn.execute(_SAGA_WALLET, {"b_saga_id": saga_id})).first()
        if mine is not None:
            if mine.status == "OPEN":
                return WalletOpened(
                    wallet_id=mine.wallet_id,
                    balance=from_minor(mine.balance_minor),
                    currency=mine.currency,
                )
            return StepFailed(
                reason=WALLET_CLOSED, detail="the wallet was already closed by a compensation"
            )
        return StepFailed(
            reason=UNSUPPORTED_CURRENCY,
            detail=f"{command.currency} is not supported: {sorted(SUPPORTED_CURRENCIES)}",
        )

    async def close_card_wallet(self, conn: AsyncConnection, saga_id: UUID) -> Reply:
        """Close the saga's wallet; a closed tombstone if it was never opened."""
        await conn.execute(
            _WALLET_TOMBSTONE,
            {
                "wallet_id": f"W-{uuid4().hex[:20]}",
                "saga_id": saga_id,
                "currency": "XXX",
                "balance_minor": 0,
                "status": "CLOSED",
            },
        )
        await conn.execute(_CLOSE_WALLET, {"b_saga_id": saga_id})
        return Compensated()
