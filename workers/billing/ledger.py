"""The billing ledger: every movement of money is two entries that sum to zero.

Accounts with a balance column (``wallet:<id>``, ``giftcard:<id>``) are updated in the
same statement batch and never go below zero; counter accounts (``clearing:bank``,
``sales:<purpose>``) live only in the ledger.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.billing import customer_wallets, gift_cards, ledger_entries

BANK_CLEARING = "clearing:bank"


def wallet_account(wallet_id: str) -> str:
    return f"wallet:{wallet_id}"


def gift_card_account(gift_card_id: str) -> str:
    return f"giftcard:{gift_card_id}"


def sales_account(purpose: str) -> str:
    return f"sales:{purpose}"


class InsufficientFunds(Exception):
    """The debited account would go below zero; nothing was written."""


def _balance_table(account: str) -> tuple[Table, str] | None:
    kind, _, ident = account.partition(":")
    if kind == "wallet":
        return customer_wallets, ident
    if kind == "giftcard":
        return gift_cards, ident
    return None


async def _adjust(conn: AsyncConnection, account: str, delta: int) -> int | None:
    found = _balance_table(account)
    if found is None:
        return None
    table, ident = found
    key = table.c.wallet_id if table is customer_wallets else table.c.gift_card_id
    result = await conn.execute(
        update(table)
        .where(key == ident, table.c.balance_minor + delta >= 0)
        .values(balance_minor=table.c.balance_minor + delta, updated_at=func.now())
        .returning(table.c.balance_minor)
    )
    balance = result.scalar_one_or_none()
    if balance is None:
        raise InsufficientFunds(account)
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

    Raises InsufficientFunds, having written nothing, if the source cannot pay (or an
    account with a balance does not exist).
    """
    async with conn.begin_nested():
        source_balance = await _adjust(conn, source, -amount_minor)
        target_balance = await _adjust(conn, target, amount_minor)
    movement = uuid4().hex
    await conn.execute(
        pg_insert(ledger_entries).values(
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
            ]
        )
    )
    return source_balance, target_balance


async def reverse_step(conn: AsyncConnection, saga_id: UUID, step: str, memo: str) -> None:
    """Post the opposite of every movement this saga step made (the compensation)."""
    entries = (
        await conn.execute(
            select(
                ledger_entries.c.movement_id,
                ledger_entries.c.account,
                ledger_entries.c.amount_minor,
                ledger_entries.c.currency,
            )
            .where(ledger_entries.c.saga_id == saga_id, ledger_entries.c.step == step)
            .order_by(ledger_entries.c.entry_id)
        )
    ).all()
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
