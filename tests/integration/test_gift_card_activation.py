"""A gift card is only taken while its activation runs (ACTIVATING): a second activation of
the same code waits for the first to end instead of being told the code was used, and goes on
if the first is rolled back; nothing is paid from a card whose activation has not passed."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Command, Reply, StepFailed
from events.billing import (
    CODE_ACTIVATION_IN_PROGRESS,
    CODE_ALREADY_USED,
    GIFT_CARD_INACTIVE,
    ActivateGiftCard,
    BalanceSource,
    CodeRedeemed,
    DebitBalance,
    GiftCardActivated,
    GiftCardIssued,
    IssueGiftCard,
    OpenCustomerWallet,
    RedeemActivationCode,
    UndoRedemption,
)
from events.envelope import Envelope
from events.giftcards import code_digest
from schemas.billing import gift_cards
from tests.integration.helpers import unique
from workers.billing.service import BillingService
from workers.giftcard_codes import derive_code

KEY = "test-key"
BILLING = BillingService(KEY)


async def _send(engine: AsyncEngine, saga_id: UUID, step: str, command: Command) -> Reply:
    envelope = Envelope(type="billing.test.v1", saga_id=saga_id, saga_step=step)
    async with engine.begin() as conn:
        return await BILLING(conn, envelope, command)


async def _client(engine: AsyncEngine) -> str:
    customer = unique("client")
    await _send(
        engine, uuid4(), "open-wallet", OpenCustomerWallet(customer_id=customer, currency="RUB")
    )
    return customer


async def _gift_card(engine: AsyncEngine) -> tuple[str, str]:
    """A new inactive gift card of 20.00 RUB, and its code's digest."""
    issue = IssueGiftCard(
        purchaser_id=unique("buyer"),
        amount_minor=2000,
        currency="RUB",
        recipient_name="Friend",
        design="classic",
    )
    issued = await _send(engine, uuid4(), "issue-gift-card", issue)
    assert isinstance(issued, GiftCardIssued)
    return issued.gift_card_id, code_digest(derive_code(KEY, issued.gift_card_id))


async def _status(engine: AsyncEngine, gift_card_id: str) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(gift_cards.c.status, gift_cards.c.owner_id).where(
                gift_cards.c.gift_card_id == gift_card_id
            )
        )
        status, owner = found.one()
        return status, owner


def _redeem(customer: str, digest: str, pending: bool = True) -> RedeemActivationCode:
    return RedeemActivationCode(customer_id=customer, code_digest=digest, pending=pending)


def _refused(reply: Reply, reason: str, retryable: bool = False) -> None:
    assert isinstance(reply, StepFailed), reply
    assert (reply.reason, reply.retryable) == (reason, retryable)


async def test_a_second_activation_waits_and_takes_the_card_when_the_first_is_undone(
    engine: AsyncEngine,
) -> None:
    first, second = await _client(engine), await _client(engine)
    gift_card_id, digest = await _gift_card(engine)
    first_saga, second_saga = uuid4(), uuid4()

    assert isinstance(
        await _send(engine, first_saga, "redeem-code", _redeem(first, digest)), CodeRedeemed
    )
    assert await _status(engine, gift_card_id) == ("ACTIVATING", first)
    spend = DebitBalance(
        customer_id=first,
        amount_minor=100,
        currency="RUB",
        source=BalanceSource.GIFT_CARD,
        gift_card_id=gift_card_id,
        purpose="orders",
    )
    _refused(await _send(engine, uuid4(), "debit-balance", spend), GIFT_CARD_INACTIVE)
    waiting = await _send(engine, second_saga, "redeem-code", _redeem(second, digest))
    _refused(waiting, CODE_ACTIVATION_IN_PROGRESS, retryable=True)

    assert not isinstance(
        await _send(engine, first_saga, "redeem-code", UndoRedemption()), StepFailed
    )
    assert await _status(engine, gift_card_id) == ("INACTIVE", None)
    taken = await _send(engine, second_saga, "redeem-code", _redeem(second, digest))
    assert isinstance(taken, CodeRedeemed)
    activate = ActivateGiftCard(gift_card_id=gift_card_id)
    assert isinstance(
        await _send(engine, second_saga, "activate-gift-card", activate), GiftCardActivated
    )
    assert await _status(engine, gift_card_id) == ("ACTIVE", second)

    late = await _send(engine, uuid4(), "redeem-code", _redeem(first, digest))
    _refused(late, CODE_ALREADY_USED)
    stolen = await _send(engine, uuid4(), "activate-gift-card", activate)
    assert isinstance(stolen, StepFailed)
    assert await _status(engine, gift_card_id) == ("ACTIVE", second)


async def test_an_activation_of_the_release_before_is_active_at_once(engine: AsyncEngine) -> None:
    """An orchestrator of the release before the activation step sends no ``pending`` and no
    ``ActivateGiftCard``; one replaced mid-saga sends the new step for a card already active."""
    customer = await _client(engine)
    gift_card_id, digest = await _gift_card(engine)
    saga = uuid4()
    redeemed = await _send(engine, saga, "redeem-code", _redeem(customer, digest, pending=False))
    assert isinstance(redeemed, CodeRedeemed)
    assert await _status(engine, gift_card_id) == ("ACTIVE", customer)
    activate = ActivateGiftCard(gift_card_id=gift_card_id)
    assert isinstance(await _send(engine, saga, "activate-gift-card", activate), GiftCardActivated)
    assert await _status(engine, gift_card_id) == ("ACTIVE", customer)
