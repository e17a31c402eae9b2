"""An invoice payment whose card side timed out is compensated: its wallet debit refunded,
and the restore of the card's limit undone, whether the late restore was applied before the
compensation came (taken back) or arrives after it (never applied). Without it the client
kept both the refund and the credit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Command, Compensated, Reply, StepFailed
from events.card_api import Authorize, CardType, CardVariant, IssueCard
from events.card_invoices import CardLimitRestored, RestoreCardLimit, UndoCardLimitRestore
from events.envelope import Envelope
from tests.integration.helpers import unique
from workers.card_issuance import card_service as cards
from workers.card_issuance.service import CardIssuanceService

SERVICE = CardIssuanceService("test-salt")
PAID = 30_000


async def _owing_card(engine: AsyncEngine) -> str:
    """A card with a 1,000.00 limit that owes 300.00."""
    async with engine.begin() as conn:
        body = IssueCard(
            account_id=unique("acc"),
            type=CardType.CREDIT,
            variant=CardVariant.VIRTUAL,
            credit_limit=Decimal(1000),
        )
        card = await cards.issue(conn, body, "test-salt", dt.date.today())
        bought = Authorize(
            card_id=card.id,
            amount=Decimal(300),
            currency="BRL",
            merchant_name="Loja ABC",
            merchant_category="5411",
        )
        held = await cards.authorize(conn, bought)
        await cards.capture(conn, held.id, None)
        return card.id


async def _send(engine: AsyncEngine, saga_id: object, command: Command) -> Reply:
    envelope = Envelope(type="card-issuance.test.v1", saga_id=saga_id, saga_step="restore-limit")
    async with engine.begin() as conn:
        return await SERVICE(conn, envelope, command)


async def _available(engine: AsyncEngine, card_id: str) -> Decimal | None:
    async with engine.connect() as conn:
        return (await cards.get(conn, card_id)).available_limit


async def test_a_restore_applied_late_is_taken_back(engine: AsyncEngine) -> None:
    card_id, saga = await _owing_card(engine), uuid4()
    payment = {"payment_id": unique("ip"), "card_id": card_id, "amount_minor": PAID}
    assert isinstance(await _send(engine, saga, RestoreCardLimit(**payment)), CardLimitRestored)
    assert await _available(engine, card_id) == 1000
    assert isinstance(await _send(engine, saga, UndoCardLimitRestore(**payment)), Compensated)
    assert await _available(engine, card_id) == 700


async def test_a_restore_arriving_after_its_compensation_never_applies(
    engine: AsyncEngine,
) -> None:
    card_id, saga = await _owing_card(engine), uuid4()
    payment = {"payment_id": unique("ip"), "card_id": card_id, "amount_minor": PAID}
    assert isinstance(await _send(engine, saga, UndoCardLimitRestore(**payment)), Compensated)
    late = await _send(engine, saga, RestoreCardLimit(**payment))
    assert isinstance(late, StepFailed)
    assert await _available(engine, card_id) == 700
