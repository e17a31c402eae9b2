"""Card issuance (seed 000): upstream request, outcome, card-issuance commands, replies."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from events.base import Command, Identifier, Outcome, Reply, UpstreamRecord
from events.card_invoices import CloseInvoicePayment, RestoreCardLimit, UndoCardLimitRestore
from events.money import Balance, CurrencyCode


class CardType(StrEnum):
    VIRTUAL = "virtual"
    PHYSICAL = "physical"


class CardIssueStatus(StrEnum):
    ISSUED = "ISSUED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


class CardIssueRequested(UpstreamRecord):
    """``cards.issue-requested``: a user asks for a new card."""

    event_type: ClassVar[str] = "cards.issue-requested.v1"

    request_id: Identifier
    user_id: Identifier
    card_type: CardType
    currency: CurrencyCode = "KZT"

    def business_key(self) -> str:
        return self.request_id


class CardStatusChanged(Outcome):
    """``cards.status``: the terminal record of one card-issuance saga."""

    request_id: str
    saga_id: str
    status: CardIssueStatus
    reason: str | None = None
    card_id: str | None = None
    masked_number: str | None = None
    balance: Balance | None = None
    currency: str | None = None


class ReserveCard(Command):
    """Check the user has no active card of the type and take a card id from the inventory."""

    kind: Literal["ReserveCard"] = "ReserveCard"
    request_id: str
    user_id: str
    card_type: CardType


class ReleaseCard(Command):
    """Compensation: give the card id back and cancel the card (idempotent)."""

    kind: Literal["ReleaseCard"] = "ReleaseCard"
    request_id: str
    user_id: str
    card_type: CardType


class ActivateCard(Command):
    """Save the reserved card as ACTIVE."""

    kind: Literal["ActivateCard"] = "ActivateCard"


class CardReserved(Reply):
    kind: Literal["CardReserved"] = "CardReserved"
    card_id: str
    masked_number: str


class CardActivated(Reply):
    kind: Literal["CardActivated"] = "CardActivated"
    card_id: str


CardIssuanceCommand = Annotated[
    ReserveCard
    | ReleaseCard
    | ActivateCard
    | RestoreCardLimit
    | UndoCardLimitRestore
    | CloseInvoicePayment,
    Field(discriminator="kind"),
]

ACTIVE_CARD_EXISTS = "ACTIVE_CARD_EXISTS"
CARD_RELEASED = "CARD_RELEASED"
