"""The card service of seed 002: cards with limits, authorizations, capture, reversal, 3-D
Secure and invoices. Functions take a connection inside the caller's transaction; refusals
are exceptions that say which HTTP answer they mean."""

from workers.card_issuance.card_service.cards import (
    block,
    by_account,
    details,
    get,
    issue,
    set_limits,
    unblock,
)
from workers.card_issuance.card_service.errors import (
    AcquirerUnavailable,
    CardBlocked,
    CardServiceError,
    Declined,
    NotFound,
)
from workers.card_issuance.card_service.invoices import invoice, owed
from workers.card_issuance.card_service.rows import locked_card, transaction
from workers.card_issuance.card_service.three_ds import acs_answer, complete_3ds, start_3ds
from workers.card_issuance.card_service.transactions import (
    ACQUIRER_DOWN,
    THREE_DS_WINDOW,
    authorize,
    capture,
    history,
    reverse,
)

__all__ = [
    "ACQUIRER_DOWN",
    "THREE_DS_WINDOW",
    "AcquirerUnavailable",
    "CardBlocked",
    "CardServiceError",
    "Declined",
    "NotFound",
    "acs_answer",
    "authorize",
    "block",
    "by_account",
    "capture",
    "complete_3ds",
    "details",
    "get",
    "history",
    "invoice",
    "issue",
    "locked_card",
    "owed",
    "reverse",
    "set_limits",
    "start_3ds",
    "transaction",
    "unblock",
]
