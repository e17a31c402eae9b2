"""The billing ledger: every movement of money is two entries that sum to zero.

Accounts with a balance column (``wallet:<id>``, ``giftcard:<id>``) are updated in the
same statement batch and never go below zero; counter accounts (``clearing:bank``,
``sales:<purpose>``) live only in the ledger.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import BindParameter, Table, Update, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from events.money import MAX_MINOR
from schemas.billing import customer_wallets, gift_cards, ledger_entries

BANK_CLEARING = "clearing:bank"


def wallet_account(wallet_id: str) -> str:
    return f"wallet:{wallet_id}"


def gift_card_account(gift_card_id: str) -> str:
    return f"giftcard:{gift_card_id}"


def sales_account(purpose: str) -> str:
    return f"sales:{purpose}"


class BalanceRefused(Exception):
    """A movement an account's balance cannot take; nothing was written."""


class InsufficientFunds(BalanceRefused):
    """The debited account would go below zero (or has no row)."""


class BalanceLimitReached(BalanceRefused):
    """The credited account would hold more than the largest balance (``MAX_MINOR``)."""


def _adjustment(table: Table, key: str) -> Update:
    """Add ``b_delta`` to the balance of row ``b_ident`` unless it would leave
    0..``MAX_MINOR`` (a balance is reported as an amount, and amounts stop there)."""
    delta: BindParameter[int] = bindparam("b_delta")
    after = table.c.balance_minor + delta
    return (
        update(table)
        .where(table.c[key] == bindparam("b_ident"), after >= 0, after <= MAX_MINOR)
        .values(balance_minor=after, updated_at=func.now())
        .returning(table.c.balance_minor)
    )


# Statements built once, not per command (see workers/operations.py).
_ADJUST = {
    "wallet": _adjustment(customer_wallets, "wallet_id"),
    "giftcard": _adjustment(gift_cards, "gift_card_id"),
}
_INSERT_ENTRIES = pg_insert(ledger_entries)
_STEP_ENTRIES = (
    select(
        ledger_entries.c.movement_id,
        ledger_entries.c.account,
        ledger_entries.c.amount_minor,
        ledger_entries.c.currency,
    )
    .where(
        ledger_entries.c.saga_id == bindparam("b_saga_id"),
        ledger_entries.c.step == bindparam("b_step"),
    )
    .order_by(ledger_entries.c.entry_id)
)


async def _adjust(conn: AsyncConnection, account: str, delta: int) -> int | None:
    kind, _, ident = account.partition(":")
    statement = _ADJUST.get(kind)
    if statement is None:
        return None
    result = await conn.execute(statement, {"b_ident": ident, "b_delta": delta})
    balance = result.scalar_one_or_none()
    if balance is None:
        raise BalanceLimitReached(account) if delta > 0 else InsufficientFunds(account)
    return int(balance)


async def move(
    conn: AsyncConnection,
    *,
    source: str,
    target: str,
    amount_minor: int,
    currency: str,
    saga_id: UUID,
    step: str,
    memo: str,
) -> tuple[int | None, int | None]:
    """Move money; returns the new balances of (source, target) where they have one.

    Raises, having written nothing, InsufficientFunds if the source cannot pay (or an
    account with a balance does not exist), BalanceLimitReached if the target would hold
    more than ``MAX_MINOR``.
    """
    async with conn.begin_nested():
        source_balance = await _adjust(conn, source, -amount_minor)
        target_balance = await _adjust(conn, target, amount_minor)
    movement = uuid4().hex
    await conn.execute(
        _INSERT_ENTRIES,
        [
            {
                "movement_id": movement,
                "account": account,
                "amount_minor": amount,
                "currency": currency,
                "saga_id": saga_id,
                "step": step,
                "memo": memo,
            }
            for account, amount in ((source, -amount_minor), (target, amount_minor))
        ],
    )
    return source_balance, target_balance


async def reverse_step(conn: AsyncConnection, saga_id: UUID, step: str, memo: str) -> None:
    """Post the opposite of every movement this saga step made (the compensation)."""
    entries = (await conn.execute(_STEP_ENTRIES, {"b_saga_id": saga_id, "b_step": step})).all()
    credited = [entry for entry in entries if entry.amount_minor > 0]
    for entry in credited:
        debited = next(
            e for e in entries if e.movement_id == entry.movement_id and e.amount_minor < 0
        )
        await move(
            conn,
            source=entry.account,
            target=debited.account,
            amount_minor=entry.amount_minor,
            currency=entry.currency,
            saga_id=saga_id,
            step=f"{step}:undo",
            memo=memo,
        )
