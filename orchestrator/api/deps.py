"""What a request handler needs from the application: settings, database, outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.api.publishing import ApiOutbox
from orchestrator.settings import Settings
from workers.card_issuance.card_service import CardServiceError

T = TypeVar("T")


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def engine(request: Request) -> AsyncEngine:
    value: AsyncEngine = request.app.state.engine
    return value


def outbox(request: Request) -> ApiOutbox:
    value: ApiOutbox = request.app.state.outbox
    return value


async def transact(db: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction. A refusal that recorded a transaction (a decline)
    is committed before it is answered; any other refusal rolls back."""
    kept: CardServiceError | None = None
    async with db.begin() as conn:
        try:
            return await work(conn)
        except CardServiceError as refusal:
            if refusal.transaction_id is None:
                raise
            kept = refusal
    assert kept is not None
    raise kept
