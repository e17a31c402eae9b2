"""A billing command handled alone, as a failed batch's commands are (in a savepoint, without
the batch's locks taken ahead), checks its account and moves the money under one lock: a
wallet closed by a registration's compensation meanwhile never receives a top-up it can no
longer give back."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Reply, StepFailed
from events.billing import (
    WALLET_NOT_EMPTY,
    ActivateCustomerWallet,
    CloseCustomerWallet,
    CreditWallet,
    CustomerWalletOpened,
    OpenCustomerWallet,
    WalletCredited,
)
from events.envelope import Envelope
from schemas.billing import customer_wallets
from tests.integration.helpers import unique
from workers.billing import ledger
from workers.billing.service import BillingService

TOP_UP = 5000


def _step(saga_id: object, step: str) -> Envelope:
    return Envelope(type="billing.test.v1", saga_id=saga_id, saga_step=step)


async def test_a_top_up_handled_alone_and_a_wallet_closing_take_turns(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    billing = BillingService("test-key")
    customer, registration, top_up = unique("client"), uuid4(), uuid4()
    opening = _step(registration, "open-wallet")
    async with engine.begin() as conn:
        opened = await billing(
            conn, opening, OpenCustomerWallet(customer_id=customer, currency="RUB")
        )
        assert isinstance(opened, CustomerWalletOpened)
        await billing(
            conn,
            _step(registration, "activate-wallet"),
            ActivateCustomerWallet(customer_id=customer, wallet_id=opened.wallet_id),
        )

    moving, go_on = asyncio.Event(), asyncio.Event()
    real_move = ledger.move

    async def paused_move(conn: Any, **how: Any) -> tuple[int | None, int | None]:
        moving.set()
        await go_on.wait()
        return await real_move(conn, **how)

    monkeypatch.setattr(ledger, "move", paused_move)

    async def credit_alone() -> Reply:
        async with engine.begin() as conn, conn.begin_nested():
            command = CreditWallet(customer_id=customer, amount_minor=TOP_UP, currency="RUB")
            return await billing(conn, _step(top_up, "credit-wallet"), command)

    async def close_in_a_batch() -> Reply:
        async with engine.begin() as conn:
            batch = [(opening, CloseCustomerWallet())]
            await billing.lock_ahead(conn, batch)
            return await billing(conn, *batch[0])

    credit = asyncio.create_task(credit_alone())
    await asyncio.wait_for(moving.wait(), timeout=10)
    close = asyncio.create_task(close_in_a_batch())
    await asyncio.sleep(0.5)
    assert not close.done(), "the wallet was closed between the top-up's check and its move"
    go_on.set()
    credited, closed = await asyncio.wait_for(asyncio.gather(credit, close), timeout=10)

    assert isinstance(credited, WalletCredited)
    assert isinstance(closed, StepFailed)
    assert closed.reason == WALLET_NOT_EMPTY
    async with engine.connect() as conn:
        wallet = (
            await conn.execute(
                select(customer_wallets).where(customer_wallets.c.customer_id == customer)
            )
        ).one()
    assert (wallet.status, wallet.balance_minor) == ("OPEN", TOP_UP)
