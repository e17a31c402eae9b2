"""Seeds 004 and 001: cards registered by number, and purchases on them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import parse_uuid
from events.card_api import (
    CardCreated,
    CreateCard,
    CreatePurchase,
    Problem,
    Purchase,
    PurchaseCreated,
    RegisteredCard,
)
from events.money import from_minor, to_minor
from orchestrator.api import deps
from orchestrator.api.problems import CREATED, ApiError
from orchestrator.settings import Settings
from schemas.card_service import card_purchases, registered_cards
from workers.card_issuance.numbers import number_hash

router = APIRouter(tags=["cards and purchases (seeds 004, 001)"])
CardId = Annotated[str, Path(alias="cardId")]


def _problems(*pairs: tuple[int, str]) -> dict[int | str, dict[str, object]]:
    return {code: {"model": Problem, "description": why} for code, why in pairs}


def _not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "RES-4040", "Not found", f"{what} with ID {ident} not found")


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return parse_uuid(value)
    except ValueError:
        raise _not_found(what, value) from None


@router.post(
    "/cards",
    status_code=201,
    response_model=CardCreated,
    responses=CREATED
    | _problems((400, "VAL-0001: invalid number or limit"), (409, "DB-4090: duplicate")),
)
async def create_card(
    body: CreateCard,
    response: Response,
    db: Annotated[AsyncEngine, Depends(deps.engine)],
    settings: Annotated[Settings, Depends(deps.settings)],
) -> CardCreated:
    card_id = uuid.uuid4()
    digest = number_hash(body.card_number, settings.card_number_salt.get_secret_value())
    async with db.begin() as conn:
        inserted = await conn.execute(
            pg_insert(registered_cards)
            .values(
                card_id=card_id,
                number_hash=digest,
                credit_limit_cents=to_minor(body.credit_limit_usd),
            )
            .on_conflict_do_nothing(index_elements=[registered_cards.c.number_hash])
            .returning(registered_cards.c.card_id)
        )
        if inserted.first() is None:
            raise ApiError(
                409, "DB-4090", "Duplicate card", "A card with this number already exists"
            )
    response.headers["Location"] = f"/cards/{card_id}"
    return CardCreated(card_id=str(card_id))


@router.get(
    "/cards/{cardId}", response_model=RegisteredCard, responses=_problems((404, "RES-4040"))
)
async def get_card(
    db: Annotated[AsyncEngine, Depends(deps.engine)], card_id: CardId
) -> RegisteredCard:
    row = await _registered(db, card_id)
    return RegisteredCard(
        card_id=str(row.card_id),
        credit_limit_usd=from_minor(row.credit_limit_cents),
        created_at=row.created_at,
    )


@router.post(
    "/cards/{cardId}/purchases",
    status_code=201,
    response_model=PurchaseCreated,
    responses=CREATED
    | _problems((400, "VAL-0001: invalid purchase"), (404, "RES-4040: no such card")),
)
async def create_purchase(
    body: CreatePurchase,
    response: Response,
    db: Annotated[AsyncEngine, Depends(deps.engine)],
    card_id: CardId,
) -> PurchaseCreated:
    card = await _registered(db, card_id)
    purchase_id = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(
            pg_insert(card_purchases).values(
                purchase_id=purchase_id,
                card_id=card.card_id,
                description=body.description,
                transaction_date=dt.date.fromisoformat(body.transaction_date),
                amount_cents=to_minor(body.amount_usd),
            )
        )
    response.headers["Location"] = f"/cards/{card.card_id}/purchases/{purchase_id}"
    return PurchaseCreated(purchase_id=str(purchase_id))


@router.get(
    "/cards/{cardId}/purchases/{purchaseId}",
    response_model=Purchase,
    responses=_problems((404, "RES-4040")),
)
async def get_purchase(
    db: Annotated[AsyncEngine, Depends(deps.engine)],
    card_id: CardId,
    purchase_id: Annotated[str, Path(alias="purchaseId")],
) -> Purchase:
    card = await _registered(db, card_id)
    key = _uuid(purchase_id, "Purchase")
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(card_purchases).where(
                    card_purchases.c.purchase_id == key, card_purchases.c.card_id == card.card_id
                )
            )
        ).first()
    if row is None:
        raise _not_found("Purchase", purchase_id)
    return Purchase(
        purchase_id=str(row.purchase_id),
        card_id=str(row.card_id),
        description=row.description,
        transaction_date=row.transaction_date,
        amount_usd=from_minor(row.amount_cents),
    )


async def _registered(db: AsyncEngine, card_id: str):  # type: ignore[no-untyped-def]
    key = _uuid(card_id, "Card")
    async with db.connect() as conn:
        row = (
            await conn.execute(select(registered_cards).where(registered_cards.c.card_id == key))
        ).first()
    if row is None:
        raise _not_found("Card", card_id)
    return row
