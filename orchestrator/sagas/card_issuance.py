"""Virtual card issuance (seed 000): reserve a card id, open its wallet, save it ACTIVE."""

from __future__ import annotations

from decimal import Decimal

from events import topics
from events.base import Reply, expect
from events.billing import CloseCardWallet, OpenCardWallet, WalletOpened
from events.cards import (
    ActivateCard,
    CardIssueRequested,
    CardIssueStatus,
    CardReserved,
    CardStatusChanged,
    CardType,
    ReleaseCard,
    ReserveCard,
)
from orchestrator.engine.definition import Saga, SagaResult, SagaState
from orchestrator.engine.participants import BILLING, CARD_ISSUANCE


class CardIssuance(SagaState):
    """What the saga knows so far."""

    request_id: str
    user_id: str
    card_type: CardType
    currency: str
    card_id: str | None = None
    masked_number: str | None = None
    wallet_id: str | None = None
    balance: Decimal | None = None


def begin(request: CardIssueRequested) -> CardIssuance:
    return CardIssuance(
        request_id=request.request_id,
        user_id=request.user_id,
        card_type=request.card_type,
        currency=request.currency,
    )


def reserve_card(saga: CardIssuance) -> ReserveCard:
    return ReserveCard(request_id=saga.request_id, user_id=saga.user_id, card_type=saga.card_type)


def release_card(saga: CardIssuance) -> ReleaseCard:
    return ReleaseCard(request_id=saga.request_id, user_id=saga.user_id, card_type=saga.card_type)


def with_card(saga: CardIssuance, reply: Reply) -> CardIssuance:
    reply = expect(reply, CardReserved)
    return saga.model_copy(update={"card_id": reply.card_id, "masked_number": reply.masked_number})


def open_wallet(saga: CardIssuance) -> OpenCardWallet:
    assert saga.card_id is not None
    return OpenCardWallet(card_id=saga.card_id, currency=saga.currency)


def with_wallet(saga: CardIssuance, reply: Reply) -> CardIssuance:
    reply = expect(reply, WalletOpened)
    return saga.model_copy(update={"wallet_id": reply.wallet_id, "balance": reply.balance})


def card_status(saga: CardIssuance, result: SagaResult) -> CardStatusChanged:
    issued = result.status == CardIssueStatus.ISSUED
    return CardStatusChanged(
        request_id=saga.request_id,
        saga_id=result.saga_id,
        status=CardIssueStatus(result.status),
        reason=result.reason,
        card_id=saga.card_id if issued else None,
        masked_number=saga.masked_number if issued else None,
        balance=saga.balance if issued else None,
        currency=saga.currency,
    )


CARD_ISSUANCE_SAGA: Saga[CardIssuance, CardIssueRequested] = (
    Saga(
        "card-issuance",
        state=CardIssuance,
        trigger=CardIssueRequested,
        inbound_topic=topics.CARDS_ISSUE_REQUESTED,
        outcome_topic=topics.CARDS_STATUS,
        begin=begin,
        outcome=card_status,
        outcome_key=lambda saga: saga.request_id,
        success_status=CardIssueStatus.ISSUED,
        failure_status=CardIssueStatus.REJECTED,
    )
    .step(
        "reserve-card",
        CARD_ISSUANCE,
        send=reserve_card,
        on_success=with_card,
        compensate=release_card,
    )
    .step(
        "open-wallet",
        BILLING,
        send=open_wallet,
        on_success=with_wallet,
        compensate=lambda _: CloseCardWallet(),
    )
    .step("activate-card", CARD_ISSUANCE, send=lambda _: ActivateCard())
)
