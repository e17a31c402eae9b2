"""Client registration (seed 003, auth): billing opens the wallet, notification the account."""

from __future__ import annotations

from events import topics
from events.base import Reply, expect
from events.billing import (
    ActivateCustomerWallet,
    CloseCustomerWallet,
    CustomerWalletOpened,
    OpenCustomerWallet,
)
from events.customers import CustomerRegistered, CustomerStatus, CustomerStatusChanged
from events.notification import CloseAccount, CreateAccount
from orchestrator.engine.definition import Saga, SagaResult, SagaState
from orchestrator.engine.participants import BILLING, NOTIFICATION


class Registration(SagaState):
    customer: CustomerRegistered
    wallet_id: str | None = None


def begin(record: CustomerRegistered) -> Registration:
    return Registration(customer=record)


def open_wallet(saga: Registration) -> OpenCustomerWallet:
    return OpenCustomerWallet(
        customer_id=saga.customer.customer_id, currency=saga.customer.currency, pending=True
    )


def with_wallet(saga: Registration, reply: Reply) -> Registration:
    reply = expect(reply, CustomerWalletOpened)
    return saga.model_copy(update={"wallet_id": reply.wallet_id})


def create_account(saga: Registration) -> CreateAccount:
    customer = saga.customer
    return CreateAccount(
        customer_id=customer.customer_id,
        username=customer.username,
        email=customer.email,
        phone=customer.phone,
        first_name=customer.first_name,
        last_name=customer.last_name,
    )


def activate_wallet(saga: Registration) -> ActivateCustomerWallet:
    """Last: a wallet takes money only once nothing can reject its registration any more (a
    top-up into the wallet of a registration rejected later could not be given back by
    closing it). Retried until it succeeds, never compensated: a compensation racing a late
    activation and a top-up could find money on the wallet it closes."""
    assert saga.wallet_id is not None
    return ActivateCustomerWallet(customer_id=saga.customer.customer_id, wallet_id=saga.wallet_id)


def customer_status(saga: Registration, result: SagaResult) -> CustomerStatusChanged:
    active = result.status == CustomerStatus.ACTIVE
    return CustomerStatusChanged(
        customer_id=saga.customer.customer_id,
        saga_id=result.saga_id,
        status=CustomerStatus(result.status),
        reason=result.reason,
        wallet_id=saga.wallet_id if active else None,
    )


REGISTRATION_SAGA: Saga[Registration, CustomerRegistered] = (
    Saga(
        "registration",
        state=Registration,
        trigger=CustomerRegistered,
        inbound_topic=topics.CUSTOMERS_REGISTERED,
        outcome_topic=topics.CUSTOMERS_STATUS,
        begin=begin,
        outcome=customer_status,
        outcome_key=lambda saga: saga.customer.customer_id,
        success_status=CustomerStatus.ACTIVE,
        failure_status=CustomerStatus.REJECTED,
    )
    .step(
        "open-wallet",
        BILLING,
        send=open_wallet,
        on_success=with_wallet,
        compensate=lambda _: CloseCustomerWallet(),
    )
    .step("create-account", NOTIFICATION, send=create_account, compensate=lambda _: CloseAccount())
    .step("activate-wallet", BILLING, send=activate_wallet, retriable=True)
)
