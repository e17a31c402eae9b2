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


class InsufficientFunds(Exception):
    """The debited account would go below zero, or the account has no row; nothing was
    written."""


class BalanceLimitReached(Exception):
    """The credited account would hold more than the largest balance (``MAX_MINOR``); nothing
    was written."""


def _adjustment(table: Table, key: str, capped: bool) -> Update:
    """Add ``b_delta`` to the balance of row ``b_ident`` unless it would go below zero or,
    ``capped``, above ``MAX_MINOR``."""
    delta: BindParameter[int] = bindparam("b_delta")
    after = table.c.balance_minor + delta
    bounds = (after >= 0, after <= MAX_MINOR) if capped else (after >= 0,)
    return (
        update(table)
        .where(table.c[key] == bindparam("b_ident"), *bounds)
        .values(balance_minor=after, updated_at=func.now())
        .returning(table.c.balance_minor)
    )


# Statements built once, not per command (see workers/operations.py).
_ADJUST = {
    (kind, capped): _adjustment(table, key, capped)
    for kind, table, key in (
        ("wallet", customer_wallets, "wallet_id"),
        ("giftcard", gift_cards, "gift_card_id"),
    )
    for capped in (False, True)
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


async def _adjust(conn: AsyncConnection, account: str, delta: int, capped: bool) -> int | None:
    kind, _, ident = account.partition(":")
    statement = _ADJUST.get((kind, capped))
    if statement is None:
        return None
    result = await conn.execute(statement, {"b_ident": ident, "b_delta": delta})
    balance = result.scalar_one_or_none()
    if balance is None:
        raise BalanceLimitReached(account) if capped else InsufficientFunds(account)
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
    capped: bool = False,
) -> tuple[int | None, int | None]:
    """Move money; returns the new balances of (source, target) where they have one.

    Raises, having written nothing, InsufficientFunds if the source cannot pay (or an
    account with a balance does not exist), and, ``capped``, BalanceLimitReached if the
    target would hold more than ``MAX_MINOR``: new money is capped (a balance is reported as
    an amount, and amounts stop there), money given back never is (a compensation must not
    fail because the account grew meanwhile).
    """
    async with conn.begin_nested():
        source_balance = await _adjust(conn, source, -amount_minor, capped=False)
        target_balance = await _adjust(conn, target, amount_minor, capped)
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
