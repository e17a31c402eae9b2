"""Client wallets and gift cards (seed 003): every movement goes through the ledger."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.base import Reply, StepFailed, expect
from events.billing import (
    BALANCE_LIMIT_REACHED,
    CODE_ACTIVATION_IN_PROGRESS,
    CODE_ALREADY_USED,
    CURRENCY_MISMATCH,
    GIFT_CARD_INACTIVE,
    GIFT_CARD_NOT_FOUND,
    INSUFFICIENT_FUNDS,
    INVALID_ACTIVATION_CODE,
    SUPPORTED_CURRENCIES,
    UNKNOWN_CUSTOMER,
    UNSUPPORTED_CURRENCY,
    WALLET_CLOSED,
    WALLET_NOT_EMPTY,
    ActivateCustomerWallet,
    ActivateGiftCard,
    BalanceDebited,
    BalanceSource,
    CheckCustomer,
    CodeRedeemed,
    CreditWallet,
    CustomerChecked,
    CustomerWalletActivated,
    CustomerWalletOpened,
    DebitBalance,
    GiftCardActivated,
    GiftCardIssued,
    IssueGiftCard,
    OpenCustomerWallet,
    RedeemActivationCode,
    WalletCredited,
)
from events.envelope import Envelope
from events.money import MAX_MINOR, from_minor
from schemas.billing import customer_wallets, gift_cards
from workers.billing import ledger
from workers.giftcard_codes import stored_hash, stored_hash_of_card
from workers.operations import Operations, step_key

GIFT_CARD_IN_USE = "GIFT_CARD_IN_USE"
GIFT_CARD_SALES = "giftcards"


# Statements built once, not per command (see workers/operations.py).
_OPEN_WALLET = select(customer_wallets.c.wallet_id, customer_wallets.c.currency).where(
    customer_wallets.c.customer_id == bindparam("b_customer_id"),
    customer_wallets.c.status == "OPEN",
)
# What money moves on is read locked: a batch has locked it ahead already, but a command
# handled alone (a failed batch's rare path) has not, and a wallet closed or a card deactivated
# between its check and its move would take money it can no longer give back. A check that
# moves no money reads without a lock (a lock taken there, not ahead, could deadlock).
_OPEN_WALLET_LOCKED = _OPEN_WALLET.with_for_update()
_INSERT_WALLET = (
    pg_insert(customer_wallets)
    .on_conflict_do_nothing(index_elements=[customer_wallets.c.customer_id])
    .returning(customer_wallets.c.wallet_id)
)
_ACTIVATE_WALLET = (
    update(customer_wallets)
    .where(
        customer_wallets.c.wallet_id == bindparam("b_wallet_id"),
        customer_wallets.c.status.in_(("PENDING", "OPEN")),
    )
    .values(status="OPEN", updated_at=func.now())
    .returning(customer_wallets.c.wallet_id)
)
_CLOSE_EMPTY_WALLET = (
    update(customer_wallets)
    .where(
        customer_wallets.c.wallet_id == bindparam("b_wallet_id"),
        customer_wallets.c.balance_minor == 0,
    )
    .values(status="CLOSED", updated_at=func.now())
    .returning(customer_wallets.c.wallet_id)
)
_INSERT_GIFT_CARD = pg_insert(gift_cards)
_CANCEL_INACTIVE_GIFT_CARD = (
    update(gift_cards)
    .where(
        gift_cards.c.gift_card_id == bindparam("b_gift_card_id"), gift_cards.c.status == "INACTIVE"
    )
    .values(status="CANCELLED", updated_at=func.now())
    .returning(gift_cards.c.gift_card_id)
)
_GIFT_CARD_BY_CODE = (
    select(gift_cards).where(gift_cards.c.code_hash == bindparam("b_code_hash")).with_for_update()
)
_TAKE_GIFT_CARD = (
    update(gift_cards)
    .where(gift_cards.c.gift_card_id == bindparam("b_gift_card_id"))
    .values(
        status=bindparam("b_status"),
        owner_id=bindparam("b_owner_id"),
        activated_by_saga=bindparam("b_saga_id"),
        updated_at=func.now(),
    )
)
_ACTIVATE_GIFT_CARD = (
    update(gift_cards)
    .where(
        gift_cards.c.gift_card_id == bindparam("b_gift_card_id"),
        gift_cards.c.activated_by_saga == bindparam("b_saga_id"),
        gift_cards.c.status.in_(("ACTIVATING", "ACTIVE")),
    )
    .values(status="ACTIVE", updated_at=func.now())
    .returning(gift_cards.c.gift_card_id)
)
_DEACTIVATE_UNSPENT_GIFT_CARD = (
    update(gift_cards)
    .where(
        gift_cards.c.gift_card_id == bindparam("b_gift_card_id"),
        gift_cards.c.activated_by_saga == bindparam("b_saga_id"),
        gift_cards.c.balance_minor == gift_cards.c.initial_minor,
    )
    .values(status="INACTIVE", owner_id=None, activated_by_saga=None, updated_at=func.now())
    .returning(gift_cards.c.gift_card_id)
)
_GIFT_CARD = (
    select(gift_cards)
    .where(gift_cards.c.gift_card_id == bindparam("b_gift_card_id"))
    .with_for_update()
)


class CustomerAccounts:
    """The billing commands of seed 003; each runs once per saga step (see Operations)."""

    def __init__(self, operations: Operations, code_key: str) -> None:
        self.operations = operations
        self.code_key = code_key

    async def open_wallet(
        self, conn: AsyncConnection, envelope: Envelope, command: OpenCustomerWallet
    ) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            if command.currency not in SUPPORTED_CURRENCIES:
                return StepFailed(
                    reason=UNSUPPORTED_CURRENCY,
                    detail=f"{command.currency} is not supported: {sorted(SUPPORTED_CURRENCIES)}",
                )
            wallet_id = f"W-{uuid4().hex[:20]}"
            inserted = await conn.execute(
                _INSERT_WALLET,
                {
                    "wallet_id": wallet_id,
                    "customer_id": command.customer_id,
                    "currency": command.currency,
                    "balance_minor": 0,
                    "status": "PENDING" if command.pending else "OPEN",
                    "saga_id": saga_id,
                },
            )
            if inserted.first() is None:
                return StepFailed(
                    reason="CUSTOMER_EXISTS",
                    detail=f"client {command.customer_id} already has a wallet",
                )
            return CustomerWalletOpened(wallet_id=wallet_id, currency=command.currency)

        return await self.operations.run(conn, envelope, action)

    async def close_wallet(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, CustomerWalletOpened)
            closed = await conn.execute(_CLOSE_EMPTY_WALLET, {"b_wallet_id": done.wallet_id})
            if closed.first() is None:
                return StepFailed(reason=WALLET_NOT_EMPTY, detail="money arrived on the wallet")
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def activate_wallet(
        self, conn: AsyncConnection, envelope: Envelope, command: ActivateCustomerWallet
    ) -> Reply:
        async def action() -> Reply:
            activated = await conn.execute(_ACTIVATE_WALLET, {"b_wallet_id": command.wallet_id})
            if activated.first() is None:
                return StepFailed(
                    reason=WALLET_CLOSED, detail=f"wallet {command.wallet_id} is closed"
                )
            return CustomerWalletActivated(wallet_id=command.wallet_id)

        return await self.operations.run(conn, envelope, action)

    async def check_customer(
        self, conn: AsyncConnection, envelope: Envelope, command: CheckCustomer
    ) -> Reply:
        wallet = await self._wallet(conn, command.customer_id, lock=False)
        if wallet is None:
            return _unknown_customer(command.customer_id)
        if command.currency is not None and command.currency != wallet.currency:
            return _currency_mismatch(wallet.currency, command.currency)
        return CustomerChecked(wallet_id=wallet.wallet_id)

    async def debit(
        self, conn: AsyncConnection, envelope: Envelope, command: DebitBalance
    ) -> Reply:
        saga_id, step = step_key(envelope)

        async def action() -> Reply:
            if command.source == BalanceSource.WALLET:
                wallet = await self._wallet(conn, command.customer_id)
                if wallet is None:
                    return _unknown_customer(command.customer_id)
                account, currency = ledger.wallet_account(wallet.wallet_id), wallet.currency
            else:
                card = await self._gift_card(conn, command.gift_card_id or "")
                if card is None or card.owner_id != command.customer_id:
                    return StepFailed(
                        reason=GIFT_CARD_NOT_FOUND,
                        detail=f"client {command.customer_id} has no gift card "
                        f"{command.gift_card_id}",
                    )
                if card.status != "ACTIVE":
                    return StepFailed(reason=GIFT_CARD_INACTIVE, detail=f"card is {card.status}")
                account, currency = ledger.gift_card_account(card.gift_card_id), card.currency
            if currency != command.currency:
                return _currency_mismatch(currency, command.currency)
            try:
                balance, _ = await ledger.move(
                    conn,
                    source=account,
                    target=ledger.sales_account(command.purpose),
                    amount_minor=command.amount_minor,
                    currency=currency,
                    saga_id=saga_id,
                    step=step,
                    memo=f"payment for {command.purpose}",
                )
            except ledger.InsufficientFunds:
                return StepFailed(
                    reason=INSUFFICIENT_FUNDS, detail=f"{account} cannot pay {command.amount_minor}"
                )
            assert balance is not None
            return BalanceDebited(account_id=account, balance_minor=balance)

        return await self.operations.run(conn, envelope, action)

    async def refund(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        return await self._reverse(conn, envelope, "refund")

    async def credit(
        self, conn: AsyncConnection, envelope: Envelope, command: CreditWallet
    ) -> Reply:
        saga_id, step = step_key(envelope)

        async def action() -> Reply:
            wallet = await self._wallet(conn, command.customer_id)
            if wallet is None:
                return _unknown_customer(command.customer_id)
            if wallet.currency != command.currency:
                return _currency_mismatch(wallet.currency, command.currency)
            try:
                _, balance = await ledger.move(
                    conn,
                    source=ledger.BANK_CLEARING,
                    target=ledger.wallet_account(wallet.wallet_id),
                    amount_minor=command.amount_minor,
                    currency=wallet.currency,
                    saga_id=saga_id,
                    step=step,
                    memo="wallet top-up",
                    capped=True,
                )
            except ledger.BalanceLimitReached:
                return StepFailed(
                    reason=BALANCE_LIMIT_REACHED,
                    detail=f"the wallet would hold more than {from_minor(MAX_MINOR)}",
                )
            assert balance is not None
            return WalletCredited(wallet_id=wallet.wallet_id, balance_minor=balance)

        return await self.operations.run(conn, envelope, action)

    async def issue_gift_card(
        self, conn: AsyncConnection, envelope: Envelope, command: IssueGiftCard
    ) -> Reply:
        saga_id, step = step_key(envelope)

        async def action() -> Reply:
            if command.currency not in SUPPORTED_CURRENCIES:
                return StepFailed(reason=UNSUPPORTED_CURRENCY, detail=command.currency)
            gift_card_id = f"G-{uuid4().hex[:20]}"
            await conn.execute(
                _INSERT_GIFT_CARD,
                {
                    "gift_card_id": gift_card_id,
                    "code_hash": stored_hash_of_card(self.code_key, gift_card_id),
                    "currency": command.currency,
                    "initial_minor": command.amount_minor,
                    "balance_minor": 0,
                    "status": "INACTIVE",
                    "purchaser_id": command.purchaser_id,
                    "recipient_name": command.recipient_name,
                    "design": command.design,
                    "saga_id": saga_id,
                },
            )
            await ledger.move(
                conn,
                source=ledger.sales_account(GIFT_CARD_SALES),
                target=ledger.gift_card_account(gift_card_id),
                amount_minor=command.amount_minor,
                currency=command.currency,
                saga_id=saga_id,
                step=step,
                memo="gift card issued",
            )
            return GiftCardIssued(gift_card_id=gift_card_id)

        return await self.operations.run(conn, envelope, action)

    async def cancel_gift_card(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        saga_id, step = step_key(envelope)

        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, GiftCardIssued)
            cancelled = await conn.execute(
                _CANCEL_INACTIVE_GIFT_CARD, {"b_gift_card_id": done.gift_card_id}
            )
            if cancelled.first() is None:
                return StepFailed(reason=GIFT_CARD_IN_USE, detail="the card was activated")
            await ledger.reverse_step(conn, saga_id, step, "gift card cancelled")
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def redeem(
        self, conn: AsyncConnection, envelope: Envelope, command: RedeemActivationCode
    ) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            if await self._wallet(conn, command.customer_id, lock=False) is None:
                return _unknown_customer(command.customer_id)
            code_hash = stored_hash(self.code_key, command.code_digest)
            card = (await conn.execute(_GIFT_CARD_BY_CODE, {"b_code_hash": code_hash})).first()
            if card is None or card.status == "CANCELLED":
                return StepFailed(reason=INVALID_ACTIVATION_CODE, detail="no gift card has it")
            if card.status == "ACTIVATING":
                return _activation_in_progress()
            if card.status != "INACTIVE":
                return StepFailed(reason=CODE_ALREADY_USED, detail="the code was used already")
            await conn.execute(
                _TAKE_GIFT_CARD,
                {
                    "b_gift_card_id": card.gift_card_id,
                    "b_status": "ACTIVATING" if command.pending else "ACTIVE",
                    "b_owner_id": command.customer_id,
                    "b_saga_id": saga_id,
                },
            )
            return CodeRedeemed(
                gift_card_id=card.gift_card_id,
                balance_minor=card.balance_minor,
                currency=card.currency,
            )

        return await self.operations.run(conn, envelope, action)

    async def undo_redemption(self, conn: AsyncConnection, envelope: Envelope) -> Reply:
        saga_id, _ = step_key(envelope)

        async def undo(done: Reply) -> StepFailed | None:
            done = expect(done, CodeRedeemed)
            reverted = await conn.execute(
                _DEACTIVATE_UNSPENT_GIFT_CARD,
                {"b_gift_card_id": done.gift_card_id, "b_saga_id": saga_id},
            )
            if reverted.first() is None:
                return StepFailed(reason=GIFT_CARD_IN_USE, detail="the card was spent from")
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def activate_gift_card(
        self, conn: AsyncConnection, envelope: Envelope, command: ActivateGiftCard
    ) -> Reply:
        saga_id, _ = step_key(envelope)

        async def action() -> Reply:
            activated = await conn.execute(
                _ACTIVATE_GIFT_CARD, {"b_gift_card_id": command.gift_card_id, "b_saga_id": saga_id}
            )
            if activated.first() is None:
                return StepFailed(
                    reason=GIFT_CARD_NOT_FOUND,
                    detail=f"gift card {command.gift_card_id} is not this activation's",
                )
            return GiftCardActivated(gift_card_id=command.gift_card_id)

        return await self.operations.run(conn, envelope, action)

    async def _reverse(self, conn: AsyncConnection, envelope: Envelope, memo: str) -> Reply:
        saga_id, step = step_key(envelope)

        async def undo(_done: Reply) -> StepFailed | None:
            try:
                await ledger.reverse_step(conn, saga_id, step, memo)
            except ledger.InsufficientFunds as exc:
                return StepFailed(reason=INSUFFICIENT_FUNDS, detail=f"cannot take back from {exc}")
            return None

        return await self.operations.undo(conn, envelope, undo)

    async def _wallet(
        self, conn: AsyncConnection, customer_id: str, lock: bool = True
    ) -> Row[Any, Any] | None:
        statement = _OPEN_WALLET_LOCKED if lock else _OPEN_WALLET
        return (await conn.execute(statement, {"b_customer_id": customer_id})).first()

    async def _gift_card(self, conn: AsyncConnection, gift_card_id: str) -> Row[Any, Any] | None:
        return (await conn.execute(_GIFT_CARD, {"b_gift_card_id": gift_card_id})).first()


def _activation_in_progress() -> StepFailed:
    """Another activation holds the card behind the code: whether this one is refused (the
    other activated it: CODE_ALREADY_USED) or goes on (the other was rolled back and the code
    works again) is known only once the other ends, so the step is tried again after a
    backoff."""
    return StepFailed(
        reason=CODE_ACTIVATION_IN_PROGRESS,
        detail="another activation of the code is in progress",
        retryable=True,
    )


def _unknown_customer(customer_id: str) -> StepFailed:
    return StepFailed(reason=UNKNOWN_CUSTOMER, detail=f"no registered client {customer_id}")


def _currency_mismatch(held: str, asked: str) -> StepFailed:
    return StepFailed(reason=CURRENCY_MISMATCH, detail=f"the account holds {held}, not {asked}")
