"""A client's wallet takes money only once its registration has passed every check: a top-up
or a payment while the registration runs finds no client, so a registration rejected later
(a username taken) closes an empty wallet and leaves no money on it."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Command, Reply, StepFailed
from events.billing import (
    UNKNOWN_CUSTOMER,
    WALLET_CLOSED,
    ActivateCustomerWallet,
    BalanceSource,
    CheckCustomer,
    CloseCustomerWallet,
    CreditWallet,
    CustomerWalletActivated,
    CustomerWalletOpened,
    DebitBalance,
    OpenCustomerWallet,
    WalletCredited,
)
from events.envelope import Envelope
from schemas.billing import customer_wallets
from tests.integration.helpers import unique
from workers.billing.service import BillingService

BILLING = BillingService("test-key")


async def _send(engine: AsyncEngine, saga_id: object, step: str, command: Command) -> Reply:
    envelope = Envelope(type="billing.test.v1", saga_id=saga_id, saga_step=step)
    async with engine.begin() as conn:
        return await BILLING(conn, envelope, command)


async def _wallet(engine: AsyncEngine, customer: str) -> tuple[str, int]:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(customer_wallets.c.status, customer_wallets.c.balance_minor).where(
                customer_wallets.c.customer_id == customer
            )
        )
        status, balance = found.one()
        return status, balance


async def _refused_as_unknown(engine: AsyncEngine, customer: str) -> None:
    money = {"customer_id": customer, "amount_minor": 500, "currency": "RUB"}
    attempts: list[Command] = [
        CheckCustomer(customer_id=customer),
        CreditWallet(**money),
        DebitBalance(**money, source=BalanceSource.WALLET, purpose="orders"),
    ]
    for command in attempts:
        answer = await _send(engine, uuid4(), "try", command)
        assert isinstance(answer, StepFailed), command
        assert answer.reason == UNKNOWN_CUSTOMER


async def _registering(
    engine: AsyncEngine, customer: str, registration: UUID
) -> CustomerWalletOpened:
    """A wallet opened by a running registration: every money move finds no client yet."""
    opening = OpenCustomerWallet(customer_id=customer, currency="RUB", pending=True)
    opened = await _send(engine, registration, "open-wallet", opening)
    assert isinstance(opened, CustomerWalletOpened)
    await _refused_as_unknown(engine, customer)
    return opened


async def test_a_registering_clients_wallet_takes_no_money_until_activated(
    engine: AsyncEngine,
) -> None:
    customer, registration = unique("client"), uuid4()
    opened = await _registering(engine, customer, registration)
    assert await _wallet(engine, customer) == ("PENDING", 0)

    activate = ActivateCustomerWallet(customer_id=customer, wallet_id=opened.wallet_id)
    activated = await _send(engine, registration, "activate-wallet", activate)
    assert isinstance(activated, CustomerWalletActivated)
    credit = CreditWallet(customer_id=customer, amount_minor=500, currency="RUB")
    assert isinstance(await _send(engine, uuid4(), "credit-wallet", credit), WalletCredited)
    assert await _wallet(engine, customer) == ("OPEN", 500)


async def test_a_wallet_opened_without_pending_is_open_at_once(engine: AsyncEngine) -> None:
    """An orchestrator of the release before the activation step (a rolling upgrade) sends no
    ``pending``: its registrations never activate, so their wallets open as they did."""
    customer = unique("client")
    opening = OpenCustomerWallet(customer_id=customer, currency="RUB")
    assert isinstance(await _send(engine, uuid4(), "open-wallet", opening), CustomerWalletOpened)
    assert await _wallet(engine, customer) == ("OPEN", 0)


async def test_a_rejected_registration_closes_its_wallet_empty(engine: AsyncEngine) -> None:
    customer, registration = unique("client"), uuid4()
    opened = await _registering(engine, customer, registration)
    closed = await _send(engine, registration, "open-wallet", CloseCustomerWallet())
    assert not isinstance(closed, StepFailed)
    assert await _wallet(engine, customer) == ("CLOSED", 0)
    late = ActivateCustomerWallet(customer_id=customer, wallet_id=opened.wallet_id)
    refused = await _send(engine, uuid4(), "activate-wallet", late)
    assert isinstance(refused, StepFailed)
    assert refused.reason == WALLET_CLOSED
