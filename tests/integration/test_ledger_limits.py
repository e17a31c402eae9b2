"""The ledger's bounds: no balance below zero; new money never takes a balance past the
largest amount, while money given back by a compensation always returns, even to an account
that grew meanwhile (a refund refused there had left an order FAILED with the client's money
kept)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from events.money import MAX_MINOR
from schemas.billing import customer_wallets
from tests.integration.helpers import unique
from workers.billing import ledger


async def _balance(engine: AsyncEngine, wallet_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(customer_wallets.c.balance_minor).where(
                customer_wallets.c.wallet_id == wallet_id
            )
        )
        return int(found.scalar_one())


async def _move(engine: AsyncEngine, source: str, target: str, amount: int, **how: object) -> None:
    async with engine.begin() as conn:
        await ledger.move(
            conn,
            source=source,
            target=target,
            amount_minor=amount,
            currency="RUB",
            saga_id=how.pop("saga_id", uuid4()),  # type: ignore[arg-type]
            step=str(how.pop("step", "top-up")),
            memo="test",
            **how,  # type: ignore[arg-type]
        )


async def test_new_money_stops_at_the_largest_amount_and_a_refund_always_returns(
    engine: AsyncEngine,
) -> None:
    wallet_id = unique("W")
    wallet, sales = ledger.wallet_account(wallet_id), ledger.sales_account("orders")
    async with engine.begin() as conn:
        await conn.execute(
            customer_wallets.insert().values(
                wallet_id=wallet_id,
                customer_id=unique("client"),
                currency="RUB",
                balance_minor=0,
                status="OPEN",
                saga_id=uuid4(),
            )
        )
    await _move(engine, ledger.BANK_CLEARING, wallet, MAX_MINOR, capped=True)
    order = uuid4()
    await _move(engine, wallet, sales, 100, saga_id=order, step="debit-wallet")
    await _move(engine, ledger.BANK_CLEARING, wallet, 100, capped=True)  # a top-up meanwhile
    assert await _balance(engine, wallet_id) == MAX_MINOR

    with pytest.raises(ledger.BalanceLimitReached):
        await _move(engine, ledger.BANK_CLEARING, wallet, 1, capped=True)
    assert await _balance(engine, wallet_id) == MAX_MINOR

    async with engine.begin() as conn:
        await ledger.reverse_step(conn, order, "debit-wallet", "order cancelled")
    assert await _balance(engine, wallet_id) == MAX_MINOR + 100

    with pytest.raises(ledger.InsufficientFunds):
        await _move(engine, wallet, sales, MAX_MINOR + 101)
