"""Dead-letter records: why a record was not processed, and where it came from."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

DEAD_LETTER_TYPE: Final = "orchestra.dead-letter.v1"
"""The ``ce_type`` of every record on a ``<topic>.dlq``."""


class DeadLetterReason(StrEnum):
    INVALID_JSON = "INVALID_JSON"
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    INVALID_ENVELOPE = "INVALID_ENVELOPE"
    TOO_LARGE = "TOO_LARGE"
    HANDLER_ERROR = "HANDLER_ERROR"
    UNKNOWN_SAGA = "UNKNOWN_SAGA"
    KEY_REUSED = "KEY_REUSED"
    """An upstream record whose business key has a saga already, started by a record that
    asked something else: the first one decides."""


class DeadLetter(BaseModel):
    """A refused record, to be copied to ``<topic>.dlq`` with its reason in headers."""

    model_config = ConfigDict(frozen=True)

    reason: DeadLetterReason
    error: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()
    """The record's headers as read, for those ``headers`` cannot hold as they were."""
