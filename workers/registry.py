"""Every worker the process can run: its command topic, its tables, its handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Table

from events import topics
from events.billing import BillingCommand
from events.cards import CardIssuanceCommand
from orchestrator.settings import Settings
from schemas import billing, card_issuance
from workers.billing.service import BillingService
from workers.card_issuance.service import CardIssuanceService
from workers.runtime import CommandHandler


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    topic: str
    commands: TypeAdapter[Any]
    inbox: Table
    outbox: Table
    build: Callable[[Settings], CommandHandler]


WORKERS: dict[str, WorkerSpec] = {
    spec.name: spec
    for spec in (
        WorkerSpec(
            card_issuance.OWNER,
            topics.CARD_ISSUANCE_COMMANDS,
            TypeAdapter(CardIssuanceCommand),
            card_issuance.card_issuance_inbox,
            card_issuance.card_issuance_outbox,
            lambda settings: CardIssuanceService(settings.card_number_salt.get_secret_value()),
        ),
        WorkerSpec(
            billing.OWNER,
            topics.BILLING_COMMANDS,
            TypeAdapter(BillingCommand),
            billing.billing_inbox,
            billing.billing_outbox,
            lambda _settings: BillingService(),
        ),
    )
}
