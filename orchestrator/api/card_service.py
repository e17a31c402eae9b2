"""Seed 002 under ``/api``: the card service (cards, limits, authorizations, 3-D Secure,
invoices and their payment)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events import topics
from events.base import parse_uuid
from events.card_api import (
    ACCOUNT_ID,
    AcsAnswer,
    Authorization,
    Authorize,
    BlockCard,
    BlockReason,
    Capture,
    Card,
    CardDetails,
    CardList,
    Invoice,
    InvoicePayment,
    IssueCard,
    PayInvoice,
    Problem,
    RequestId,
    Reverse,
    ThreeDsChallenge,
    ThreeDsComplete,
    ThreeDsInit,
    Transaction,
    TransactionPage,
    UpdateLimits,
)
from events.card_invoices import InvoicePaymentRequested
from events.money import from_minor, to_minor
from orchestrator.api import deps
from orchestrator.api.auth import Caller, caller
from orchestrator.api.problems import CREATED, ApiError, accepted, still_running
from orchestrator.api.publishing import ApiOutbox
from orchestrator.api.sagas import find, wait_for_end
from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.engine.outbox import OutboxRow
from orchestrator.settings import Settings
from schemas.card_service import invoice_payments
from workers.card_issuance import card_service as cards

router = APIRouter(prefix="/api", tags=["card service (seed 002)"])
CardId = Annotated[str, Path()]
Db = Annotated[AsyncEngine, Depends(deps.engine)]
INVOICE_SAGA = "invoice-payment"
FINAL_BLOCKS = (BlockReason.LOST.value, BlockReason.STOLEN.value)


def _problems(*codes: int) -> dict[int | str, dict[str, object]]:
    why = {
        400: "VAL-0001: invalid request",
        401: "AUTH-4010: bearer token required",
        403: "CARD-4030: card blocked",
        404: "RES-4040: card or transaction not found",
        409: "REQ-4090: the Idempotency-Key was used for another payment",
        422: "TXN-4220: declined / insufficient limit",
        503: "ACQ-5030: acquirer unavailable",
    }
    return {code: {"model": Problem, "description": why[code]} for code in codes}


@router.post("/cards", status_code=201, response_model=Card, responses=CREATED | _problems(400))
async def issue_card(
    body: IssueCard,
    db: Db,
    settings: Annotated[Settings, Depends(deps.settings)],
    response: Response,
) -> Card:
    salt = settings.card_number_salt.get_secret_value()
    card = await deps.transact(db, lambda c: cards.issue(c, body, salt, _today()))
    response.headers["Location"] = f"/api/cards/{card.id}"
    return card


@router.get("/cards/account/{account_id}", response_model=CardList, responses=_problems(400))
async def cards_of_account(
    account_id: Annotated[str, Path(max_length=64, pattern=ACCOUNT_ID)], db: Db
) -> CardList:
    found = await deps.transact(db, lambda c: cards.by_account(c, account_id))
    return CardList(account_id=account_id, cards=found)


@router.get("/cards/{card_id}", response_model=Card, responses=_problems(404))
async def get_card(card_id: CardId, db: Db) -> Card:
    return await deps.transact(db, lambda c: cards.get(c, card_id))


@router.get("/cards/{card_id}/details", response_model=CardDetails, responses=_problems(401, 404))
async def card_details(
    card_id: CardId, db: Db, _who: Annotated[Caller, Depends(caller)]
) -> CardDetails:
    return await deps.transact(db, lambda c: cards.details(c, card_id))


@router.post("/cards/{card_id}/block", response_model=Card, responses=_problems(400, 403, 404))
async def block_card(card_id: CardId, body: BlockCard, db: Db) -> Card:
    return await deps.transact(db, lambda c: _block(c, card_id, body.reason))


async def _block(conn: AsyncConnection, card_id: str, reason: BlockReason) -> Card:
    """A LOST or STOLEN block is final: another reason would make the card unblockable."""
    card = await cards.get(conn, card_id, lock=True)
    if card.block_reason in FINAL_BLOCKS and card.block_reason != reason.value:
        raise cards.CardBlocked(
            f"a card blocked as {card.block_reason} cannot be blocked again as {reason.value};"
            " reissue it"
        )
    return await cards.block(conn, card_id, reason)


@router.post("/cards/{card_id}/unblock", response_model=Card, responses=_problems(403, 404))
async def unblock_card(card_id: CardId, db: Db) -> Card:
    return await deps.transact(db, lambda c: cards.unblock(c, card_id))


@router.patch("/cards/{card_id}/limits", response_model=Card, responses=_problems(400, 404))
async def update_limits(card_id: CardId, body: UpdateLimits, db: Db) -> Card:
    return await deps.transact(db, lambda c: cards.set_limits(c, card_id, body))


@router.post(
    "/authorize",
    response_model=Authorization,
    responses=_problems(400, 403, 404, 422, 503),
)
async def authorize(body: Authorize, db: Db) -> Authorization:
    tx = await deps.transact(db, lambda c: cards.authorize(c, body))
    return _approved(tx)


@router.post(
    "/capture/{authorization_id}",
    response_model=Transaction,
    responses=_problems(400, 404, 422),
)
async def capture(
    authorization_id: Annotated[str, Path()], db: Db, body: Capture | None = None
) -> Transaction:
    amount = body.amount if body else None
    return await deps.transact(db, lambda c: cards.capture(c, authorization_id, amount))


@router.post(
    "/reverse/{transaction_id}", response_model=Transaction, responses=_problems(400, 404, 422)
)
async def reverse(
    transaction_id: Annotated[str, Path()], db: Db, body: Reverse | None = None
) -> Transaction:
    amount = body.amount if body else None
    return await deps.transact(db, lambda c: cards.reverse(c, transaction_id, amount))


@router.post(
    "/3ds/init",
    response_model=ThreeDsChallenge,
    responses=_problems(400, 403, 404, 422),
)
async def start_3ds(body: ThreeDsInit, request: Request, db: Db) -> ThreeDsChallenge:
    """The cardholder is sent to ``ORCHESTRA_ACS_URL`` (the built-in simulator by default),
    never to a host named by the request."""
    key = _threeds_key(request)
    acs = deps.settings(request).acs_url
    return await deps.transact(db, lambda c: cards.start_3ds(c, body, key, acs))


@router.get("/3ds/acs/{transaction_id}", response_model=AcsAnswer, responses=_problems(404))
async def simulated_acs(
    transaction_id: Annotated[str, Path()],
    request: Request,
    db: Db,
    authenticate: Annotated[bool, Query(description="the cardholder passes the challenge")] = True,
) -> AcsAnswer:
    """The built-in ACS simulator: the cardholder's challenge, answered (the PaRes)."""
    await deps.transact(db, lambda c: cards.transaction(c, transaction_id))
    pares = cards.acs_answer(_threeds_key(request), transaction_id, authenticate)
    return AcsAnswer(transaction_id=transaction_id, pares=pares)


@router.post(
    "/3ds/complete", response_model=Authorization, responses=_problems(400, 403, 404, 422, 503)
)
async def complete_3ds(body: ThreeDsComplete, request: Request, db: Db) -> Authorization:
    key = _threeds_key(request)
    tx = await deps.transact(
        db, lambda c: cards.complete_3ds(c, body.transaction_id, body.pares, key)
    )
    return _approved(tx)


@router.get("/cards/{card_id}/invoice", response_model=Invoice, responses=_problems(404))
async def current_invoice(card_id: CardId, db: Db) -> Invoice:
    return await deps.transact(db, lambda c: cards.invoice(c, card_id, _today()))


@router.post(
    "/cards/{card_id}/invoice/pay",
    response_model=InvoicePayment,
    responses={
        **accepted(InvoicePayment),
        **_problems(400, 404, 409),
        422: {"model": Problem, "description": "PAY-4220: payment refused, with its reason"},
    },
)
async def pay_invoice(
    card_id: CardId,
    body: PayInvoice,
    db: Db,
    outbox: Annotated[ApiOutbox, Depends(deps.outbox)],
    settings: Annotated[Settings, Depends(deps.settings)],
    idempotency_key: Annotated[RequestId | None, Header()] = None,
) -> InvoicePayment | JSONResponse:
    """Runs the invoice-payment saga: billing debits the source account (a client's
    wallet), then the card's available limit is restored; a refusal undoes the debit. The
    same ``Idempotency-Key`` again (a retry after a lost answer) is the same payment."""

    async def record(conn: AsyncConnection) -> tuple[InvoicePaymentRequested, Sequence[OutboxRow]]:
        card = await cards.get(conn, card_id, lock=True)
        payment_id = _payment_id(card.id, idempotency_key)  # the card's id however spelled
        if card.credit_limit is None:  # the card exists: the request is refused, not lost
            raise ApiError(
                422,
                "PAY-4220",
                "Payment refused",
                f"card {card_id} is a debit card: it has no invoice to pay",
                reason="NO_INVOICE",
            )
        recorded = await conn.execute(
            pg_insert(invoice_payments)
            .values(
                payment_id=payment_id,
                card_id=uuid.UUID(card.id),
                source_account_id=body.source_account_id,
                amount_minor=to_minor(body.amount),
                status="PENDING",
            )
            .on_conflict_do_nothing(index_elements=[invoice_payments.c.payment_id])
            .returning(invoice_payments.c.payment_id)
        )
        if recorded.first() is None:
            await _same_payment(conn, payment_id, body)
        request = InvoicePaymentRequested(
            payment_id=payment_id,
            card_id=card.id,
            source_account_id=body.source_account_id,
            amount_minor=to_minor(body.amount),
            currency=card.currency,
        )
        rows = await outbox.start_saga(
            conn, INVOICE_SAGA, topics.CARDS_INVOICE_PAYMENT_REQUESTED, request, payment_id
        )
        return request, rows

    request, rows = await deps.transact(db, record)
    outbox.publish(rows)
    payment_id = request.payment_id
    instance = await wait_for_end(db, INVOICE_SAGA, payment_id, settings.api_saga_wait_s)
    answer = _payment(request.card_id, payment_id, request.amount_minor, instance)
    if answer.status == "PENDING":
        return still_running(answer, answer.status_url)
    if answer.status != "PAID":
        raise ApiError(
            422,
            "PAY-4220",
            "Payment refused",
            f"the invoice was not paid: {answer.reason}",
            reason=answer.reason or answer.status,
            payment_id=payment_id,
        )
    return answer


PAYMENT_KEYS = uuid.UUID("5d3a43c0-7a43-4d38-9a8e-2f0c6f3f4e11")
"""Namespace of the payment ids made from a card and an Idempotency-Key."""


def _payment_id(card_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"ip-{uuid.uuid4().hex}"
    return f"ip-{uuid.uuid5(PAYMENT_KEYS, f'{card_id}/{idempotency_key}').hex}"


async def _same_payment(conn: AsyncConnection, payment_id: str, body: PayInvoice) -> None:
    """A payment with this key exists: the request must be the same one again."""
    first = (
        await conn.execute(
            select(invoice_payments.c.source_account_id, invoice_payments.c.amount_minor).where(
                invoice_payments.c.payment_id == payment_id
            )
        )
    ).one()
    if (first.source_account_id, first.amount_minor) != (
        body.source_account_id,
        to_minor(body.amount),
    ):
        raise ApiError(
            409,
            "REQ-4090",
            "Conflict",
            "this Idempotency-Key was used for another payment of this card: "
            f"{from_minor(first.amount_minor)} from {first.source_account_id}",
            payment_id=payment_id,
        )


@router.get(
    "/cards/{card_id}/invoice/payments/{payment_id}",
    response_model=InvoicePayment,
    responses=_problems(404),
)
async def invoice_payment(
    card_id: CardId,
    payment_id: Annotated[str, Path(max_length=80, pattern=r"^[A-Za-z0-9._:-]+$")],
    db: Db,
) -> InvoicePayment:
    instance = await find(db, INVOICE_SAGA, payment_id)
    if instance is None:  # asked for, its saga not started yet (the record in api_outbox)
        async with db.connect() as conn:
            asked = (
                await conn.execute(
                    select(invoice_payments.c.card_id, invoice_payments.c.amount_minor).where(
                        invoice_payments.c.payment_id == payment_id
                    )
                )
            ).first()
        if asked is None or not _same_card(str(asked.card_id), card_id):
            raise _no_payment(payment_id, card_id)
        return _payment(str(asked.card_id), payment_id, asked.amount_minor, None)
    if not _same_card(instance.data["request"]["card_id"], card_id):
        raise _no_payment(payment_id, card_id)
    request = instance.data["request"]
    return _payment(request["card_id"], payment_id, request["amount_minor"], instance)


def _no_payment(payment_id: str, card_id: str) -> ApiError:
    return ApiError(404, "RES-4040", "Not found", f"no payment {payment_id} on card {card_id}")


def _same_card(known: str, asked: str) -> bool:
    """A card id as a path may spell it (upper case, no hyphens) is the same card."""
    try:
        return parse_uuid(known) == parse_uuid(asked)
    except ValueError:
        return known == asked


@router.get(
    "/cards/{card_id}/transactions", response_model=TransactionPage, responses=_problems(400, 404)
)
async def transactions(
    card_id: CardId,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> TransactionPage:
    total, page = await deps.transact(db, lambda c: cards.history(c, card_id, limit, offset))
    return TransactionPage(
        card_id=str(parse_uuid(card_id)),
        limit=limit,
        offset=offset,
        total=total,
        transactions=page,
    )


def _payment(
    card_id: str, payment_id: str, amount_minor: int, instance: SagaInstance | None
) -> InvoicePayment:
    status = "PENDING"
    if instance is not None:
        status = {
            SagaStatus.COMPLETED: "PAID",
            SagaStatus.ABORTED: "REJECTED",
            SagaStatus.FAILED: "FAILED",
        }.get(instance.status, "PENDING")
    return InvoicePayment(
        payment_id=payment_id,
        card_id=card_id,
        amount=from_minor(amount_minor),
        status=status,
        reason=instance.reason if instance is not None else None,
        status_url=f"/api/cards/{card_id}/invoice/payments/{payment_id}",
    )


def _approved(tx: Transaction) -> Authorization:
    return Authorization(
        id=tx.id,
        authorization_code=tx.authorization_code,
        transaction_status=tx.status,
        amount=tx.amount,
        currency=tx.currency,
    )


def _threeds_key(request: Request) -> str:
    return deps.settings(request).threeds_key.get_secret_value()


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
