"""Gift cards (seed 003): purchase (pay, issue inactive, e-mail the code) and activation."""

from __future__ import annotations

from events import topics
from events.base import Reply, expect
from events.billing import (
    ActivateGiftCard,
    CancelGiftCard,
    CodeRedeemed,
    GiftCardIssued,
    IssueGiftCard,
    RedeemActivationCode,
    UndoRedemption,
    unsupported,
)
from events.giftcards import (
    GiftCardActivationRequested,
    GiftCardActivationStatus,
    GiftCardPurchaseRequested,
    GiftCardPurchaseStatus,
    GiftCardStatus,
)
from events.money import from_minor, to_minor
from events.notification import NotifyCustomer, SendGiftCardCode
from events.payment import BindGiftCard, UnbindGiftCard
from orchestrator.engine.definition import Saga, SagaResult, SagaState
from orchestrator.engine.participants import BILLING, NOTIFICATION, PAYMENT
from orchestrator.sagas.paying import Paying, with_payment_steps


class GiftCardPurchase(Paying):
    purchase_id: str
    recipient_name: str
    recipient_email: str
    design: str
    gift_card_id: str | None = None


def begin_purchase(request: GiftCardPurchaseRequested) -> GiftCardPurchase:
    return GiftCardPurchase(
        purchase_id=request.purchase_id,
        customer_id=request.customer_id,
        amount_minor=to_minor(request.amount),
        currency=request.currency,
        payment=request.payment,
        purpose="giftcards",
        recipient_name=request.recipient_name,
        recipient_email=request.recipient_email,
        design=request.design,
    )


def issue_card(saga: GiftCardPurchase) -> IssueGiftCard:
    return IssueGiftCard(
        purchaser_id=saga.customer_id,
        amount_minor=saga.amount_minor,
        currency=saga.currency,
        recipient_name=saga.recipient_name,
        design=saga.design,
    )


def with_card(saga: GiftCardPurchase, reply: Reply) -> GiftCardPurchase:
    reply = expect(reply, GiftCardIssued)
    return saga.model_copy(update={"gift_card_id": reply.gift_card_id})


def send_code(saga: GiftCardPurchase) -> SendGiftCardCode:
    assert saga.gift_card_id is not None
    return SendGiftCardCode(
        gift_card_id=saga.gift_card_id,
        recipient_name=saga.recipient_name,
        recipient_email=saga.recipient_email,
        amount=str(from_minor(saga.amount_minor)),
        currency=saga.currency,
        design=saga.design,
    )


def notify_buyer(saga: GiftCardPurchase) -> NotifyCustomer:
    """Seed 003: the buyer hears of the payment's result too (the recipient got the code)."""
    return NotifyCustomer(
        customer_id=saga.customer_id,
        template="giftcard-purchased",
        params={
            "amount": str(from_minor(saga.amount_minor)),
            "currency": saga.currency,
            "recipient_name": saga.recipient_name,
        },
    )


def purchase_status(saga: GiftCardPurchase, result: SagaResult) -> GiftCardPurchaseStatus:
    completed = result.status == GiftCardStatus.COMPLETED
    return GiftCardPurchaseStatus(
        purchase_id=saga.purchase_id,
        saga_id=result.saga_id,
        status=GiftCardStatus(result.status),
        reason=result.reason,
        gift_card_id=saga.gift_card_id if completed else None,
    )


GIFT_CARD_PURCHASE_SAGA: Saga[GiftCardPurchase, GiftCardPurchaseRequested] = (
    with_payment_steps(
        Saga(
            "giftcard-purchase",
            state=GiftCardPurchase,
            trigger=GiftCardPurchaseRequested,
            inbound_topic=topics.GIFTCARDS_PURCHASE_REQUESTED,
            outcome_topic=topics.GIFTCARDS_STATUS,
            begin=begin_purchase,
            outcome=purchase_status,
            outcome_key=lambda saga: saga.purchase_id,
            success_status=GiftCardStatus.COMPLETED,
            failure_status=GiftCardStatus.CANCELLED,
        ).refuse(lambda saga: unsupported(saga.currency))  # before the buyer pays
    )
    .step(
        "issue-gift-card",
        BILLING,
        send=issue_card,
        on_success=with_card,
        compensate=lambda _: CancelGiftCard(),
    )
    .step("send-code", NOTIFICATION, send=send_code)
    .step("notify-buyer", NOTIFICATION, send=notify_buyer, retriable=True)
)


class GiftCardActivation(SagaState):
    activation_id: str
    customer_id: str
    code_digest: str
    gift_card_id: str | None = None
    balance_minor: int | None = None
    currency: str | None = None


def begin_activation(request: GiftCardActivationRequested) -> GiftCardActivation:
    return GiftCardActivation(
        activation_id=request.activation_id,
        customer_id=request.customer_id,
        code_digest=request.code_digest,
    )


def redeem(saga: GiftCardActivation) -> RedeemActivationCode:
    return RedeemActivationCode(
        customer_id=saga.customer_id, code_digest=saga.code_digest, pending=True
    )


def with_redeemed(saga: GiftCardActivation, reply: Reply) -> GiftCardActivation:
    reply = expect(reply, CodeRedeemed)
    return saga.model_copy(
        update={
            "gift_card_id": reply.gift_card_id,
            "balance_minor": reply.balance_minor,
            "currency": reply.currency,
        }
    )


def bind(saga: GiftCardActivation) -> BindGiftCard:
    assert saga.gift_card_id is not None
    return BindGiftCard(customer_id=saga.customer_id, gift_card_id=saga.gift_card_id)


def activate(saga: GiftCardActivation) -> ActivateGiftCard:
    assert saga.gift_card_id is not None
    return ActivateGiftCard(gift_card_id=saga.gift_card_id)


def activation_status(saga: GiftCardActivation, result: SagaResult) -> GiftCardActivationStatus:
    activated = result.status == GiftCardStatus.ACTIVATED
    return GiftCardActivationStatus(
        activation_id=saga.activation_id,
        saga_id=result.saga_id,
        status=GiftCardStatus(result.status),
        reason=result.reason,
        gift_card_id=saga.gift_card_id if activated else None,
        balance=from_minor(saga.balance_minor)
        if activated and saga.balance_minor is not None
        else None,
        currency=saga.currency if activated else None,
    )


GIFT_CARD_ACTIVATION_SAGA: Saga[GiftCardActivation, GiftCardActivationRequested] = (
    Saga(
        "giftcard-activation",
        state=GiftCardActivation,
        trigger=GiftCardActivationRequested,
        inbound_topic=topics.GIFTCARDS_ACTIVATION_REQUESTED,
        outcome_topic=topics.GIFTCARDS_STATUS,
        begin=begin_activation,
        outcome=activation_status,
        outcome_key=lambda saga: saga.activation_id,
        success_status=GiftCardStatus.ACTIVATED,
        failure_status=GiftCardStatus.REJECTED,
    )
    .step(
        "redeem-code",
        BILLING,
        send=redeem,
        on_success=with_redeemed,
        compensate=lambda _: UndoRedemption(),
    )
    .step("bind-gift-card", PAYMENT, send=bind, compensate=lambda _: UnbindGiftCard())
    .step("activate-gift-card", BILLING, send=activate, retriable=True)
)
