"""Seed 000: ``POST /v1/cards/virtual`` runs the card-issuance saga for the token's user."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events import topics
from events.card_api import (
    Problem,
    RequestId,
    SagaAccepted,
    VirtualCard,
    VirtualCardRequest,
    VirtualCardStatus,
)
from events.cards import ACTIVE_CARD_EXISTS, CardIssueRequested, CardType
from orchestrator.api import deps
from orchestrator.api.auth import Caller, caller
from orchestrator.api.problems import ApiError, accepted, still_running
from orchestrator.api.publishing import ApiOutbox
from orchestrator.api.sagas import find, find_on, wait_for_end
from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.settings import Settings
from schemas.card_service import virtual_card_requests

SAGA = "card-issuance"
router = APIRouter(prefix="/v1/cards", tags=["virtual cards (seed 000)"])
WHY = {
    400: "invalid request (body or path)",
    401: "token missing, expired or forged",
    404: "no such request of this user",
    409: "an active card of the type exists (ACTIVE_CARD_EXISTS), or the request id is "
    "another user's or was asked for another currency (REQ-4090)",
    422: "refused by the saga (e.g. UNSUPPORTED_CURRENCY)",
    500: "SAGA-5000: the card could not be issued nor fully undone; an operator is on it",
}


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": Problem, "description": WHY[code]} for code in codes}


@router.post(
    "/virtual",
    status_code=201,
    response_model=VirtualCard,
    responses={
        **accepted(SagaAccepted),
        **_errors(400, 401, 409, 422, 500),
    },
)
async def issue_virtual_card(
    response: Response,
    who: Annotated[Caller, Depends(caller)],
    db: Annotated[AsyncEngine, Depends(deps.engine)],
    outbox: Annotated[ApiOutbox, Depends(deps.outbox)],
    settings: Annotated[Settings, Depends(deps.settings)],
    body: Annotated[VirtualCardRequest | None, Body()] = None,
    idempotency_key: Annotated[RequestId | None, Header()] = None,
) -> VirtualCard | JSONResponse:
    wanted = body or VirtualCardRequest()
    request_id = wanted.request_id or idempotency_key or str(uuid.uuid4())
    record = CardIssueRequested(
        request_id=request_id,
        user_id=who.user_id,
        card_type=CardType.VIRTUAL,
        currency=wanted.currency,
    )
    async with db.begin() as conn:
        await _accept(conn, record)
        started = await find_on(conn, SAGA, record.business_key())
        if started is not None and not _asked_by(started, record):
            raise _another_request(request_id)
        rows = await outbox.start_saga(
            conn, SAGA, topics.CARDS_ISSUE_REQUESTED, record, correlation_id=request_id
        )
    outbox.publish(rows)
    instance = await wait_for_end(db, SAGA, request_id, settings.api_saga_wait_s)
    if instance is not None and not _asked_by(instance, record):  # an earlier record's saga
        raise _another_request(request_id)
    if instance is None or not instance.status.terminal:
        status_url = f"/v1/cards/virtual/requests/{request_id}"
        return still_running(
            SagaAccepted(request_id=request_id, status="RUNNING", status_url=status_url),
            status_url,
        )
    return _issued_or_refused(instance)


@router.get(
    "/virtual/requests/{request_id}",
    response_model=VirtualCardStatus,
    responses=_errors(400, 401, 404),
)
async def virtual_card_request(
    request_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")],
    who: Annotated[Caller, Depends(caller)],
    db: Annotated[AsyncEngine, Depends(deps.engine)],
) -> VirtualCardStatus:
    async with db.connect() as conn:
        owner = (
            await conn.execute(
                select(virtual_card_requests.c.user_id).where(
                    virtual_card_requests.c.request_id == request_id
                )
            )
        ).scalar_one_or_none()
    if owner != who.user_id:
        raise ApiError(404, "RES-4040", "Not found", f"no card request {request_id} of yours")
    instance = await find(db, SAGA, request_id)
    if instance is not None and instance.data.get("user_id") != who.user_id:
        raise ApiError(404, "RES-4040", "Not found", f"no card request {request_id} of yours")
    if instance is None:
        return VirtualCardStatus(request_id=request_id, status="RUNNING")
    status = {
        SagaStatus.COMPLETED: "ISSUED",
        SagaStatus.ABORTED: "REJECTED",
        SagaStatus.FAILED: "FAILED",
    }.get(instance.status, "RUNNING")
    card = _card(instance) if instance.status == SagaStatus.COMPLETED else None
    return VirtualCardStatus(
        request_id=request_id, status=status, reason=instance.reason, card=card
    )


async def _accept(conn: AsyncConnection, record: CardIssueRequested) -> None:
    """Record the request (idempotent); a request id of another user, or asked again for
    another currency, is a conflict."""
    await conn.execute(
        pg_insert(virtual_card_requests)
        .values(request_id=record.request_id, user_id=record.user_id, currency=record.currency)
        .on_conflict_do_nothing()
    )
    first = (
        await conn.execute(
            select(virtual_card_requests.c.user_id, virtual_card_requests.c.currency).where(
                virtual_card_requests.c.request_id == record.request_id
            )
        )
    ).one()
    if first.user_id != record.user_id:
        raise ApiError(409, "REQ-4090", "Conflict", "this request id belongs to another user")
    if first.currency != record.currency:
        raise ApiError(
            409,
            "REQ-4090",
            "Conflict",
            f"request {record.request_id} asked for a {first.currency} card, not {record.currency}",
        )


def _asked_by(instance: SagaInstance, record: CardIssueRequested) -> bool:
    """Whether the saga of this request id is this request's: a request id sent on
    ``cards.issue-requested`` for another user, card type or currency must not answer
    with that card."""
    data = instance.data
    return (data.get("user_id"), data.get("card_type"), data.get("currency")) == (
        record.user_id,
        record.card_type.value,
        record.currency,
    )


def _another_request(request_id: str) -> ApiError:
    return ApiError(409, "REQ-4090", "Conflict", f"request id {request_id} is another request's")


def _issued_or_refused(instance: SagaInstance) -> VirtualCard:
    if instance.status == SagaStatus.COMPLETED:
        return _card(instance)
    if instance.reason == ACTIVE_CARD_EXISTS:
        raise ApiError(
            409,
            "CARD-4090",
            "Card already exists",
            "you already have an active virtual card",
            reason=ACTIVE_CARD_EXISTS,
        )
    if instance.status == SagaStatus.FAILED:
        raise ApiError(
            500,
            "SAGA-5000",
            "Issuance failed",
            "the card could not be issued nor fully undone; an operator is on it",
            reason=instance.reason or "FAILED",
        )
    raise ApiError(
        422,
        "CARD-4220",
        "Card not issued",
        f"the card was not issued: {instance.reason}",
        reason=instance.reason or "REJECTED",
    )


def _card(instance: SagaInstance) -> VirtualCard:
    data = instance.data
    return VirtualCard(
        card_id=str(data["card_id"]),
        masked_id=str(data["masked_number"]),
        balance=Decimal(str(data.get("balance") or "0")),
        currency=str(data["currency"]),
    )
