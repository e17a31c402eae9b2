"""Refusals of the card service, each naming the HTTP answer it means."""

from __future__ import annotations


class CardServiceError(Exception):
    status = 400
    code = "VAL-0001"
    title = "Invalid request"

    def __init__(self, detail: str, transaction_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transaction_id = transaction_id


class NotFound(CardServiceError):
    status, code, title = 404, "RES-4040", "Not found"


class CardBlocked(CardServiceError):
    status, code, title = 403, "CARD-4030", "Card blocked"


class Declined(CardServiceError):
    status, code, title = 422, "TXN-4220", "Declined"


class AcquirerUnavailable(CardServiceError):
    status, code, title = 503, "ACQ-5030", "Acquirer unavailable"
