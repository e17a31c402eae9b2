"""The envelope: CloudEvents headers (Kafka binding, binary mode) plus saga extensions."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SPEC_VERSION: Final = "1.0"
SOURCE: Final = "orchestra"

H_SPECVERSION: Final = "ce_specversion"
H_ID: Final = "ce_id"
H_TYPE: Final = "ce_type"
H_SOURCE: Final = "ce_source"
H_TIME: Final = "ce_time"
H_CORRELATION: Final = "ce_correlationid"
H_CAUSATION: Final = "ce_causationid"
H_SAGA_ID: Final = "ce_sagaid"
H_SAGA_TYPE: Final = "ce_sagatype"
H_SAGA_STEP: Final = "ce_sagastep"
H_CONTENT_TYPE: Final = "content-type"
H_TRACEPARENT: Final = "traceparent"

CLOUDEVENTS_HEADERS: Final = (
    H_SPECVERSION,
    H_ID,
    H_TYPE,
    H_SOURCE,
    H_TIME,
    H_CORRELATION,
    H_CAUSATION,
)
"""The CloudEvents attributes the contract requires on every message."""

H_DLQ_REASON: Final = "dlq_reason"
H_DLQ_ERROR: Final = "dlq_error"
H_DLQ_TOPIC: Final = "dlq_topic"
H_DLQ_PARTITION: Final = "dlq_partition"
H_DLQ_OFFSET: Final = "dlq_offset"
H_DLQ_VALUE_DROPPED: Final = "dlq_value_dropped"
"""On a dead letter the broker refused for its size, sent again without the refused
record's value: why. The record stays at ``dlq_topic``/``dlq_partition``/``dlq_offset``."""
H_DLQ_KEY_B64: Final = "dlq_key_b64"
"""On a dead letter whose record's key is not text a database holds as it is (not UTF-8, or
with a NUL): the key's bytes, base64. The letter's own key is its readable form (U+FFFD for
what is not text)."""
H_DLQ_HEADERS_B64: Final = "dlq_headers_b64"
"""On a dead letter of a record with headers its text headers cannot give back (a value
that is not UTF-8 or holds a NUL, a null value, a name with a NUL, a name that repeats): those
headers, in their order, as a JSON list of ``[name, value]`` pairs, each base64 (a null value
``null``). The letter keeps what it can read of them as before."""
H_DLQ_ORIGINAL_PREFIX: Final = "dlq_original_"
"""A dead letter keeps the refused record's CloudEvents headers under this prefix; its own
``ce_*`` headers describe the dead letter."""


def now() -> datetime:
    return datetime.now(UTC)


class _RandomBytes(threading.local):
    """Bytes from ``os.urandom``, read 4 KiB at a time: one system call per 256 ids instead
    of one per id (under load each call could cost a reschedule). Per thread; a forked
    child starts afresh, so no two processes share a pool."""

    def __init__(self) -> None:
        self.pool = b""
        self.pos = 0


_random = _RandomBytes()


def _forget_pool() -> None:
    global _random
    _random = _RandomBytes()


os.register_at_fork(after_in_child=_forget_pool)

_VARIANT = "89ab" * 4
"""The RFC 4122 variant digit for each hex digit drawn there (its two top bits 10)."""


def new_id() -> str:
    """A random (version 4) UUID as text: ``str(uuid4())`` without building a UUID object."""
    source = _random
    pos = source.pos
    if pos >= len(source.pool):
        source.pool = os.urandom(4096)
        pos = 0
    source.pos = pos + 16
    h = source.pool[pos : pos + 16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"


class Envelope(BaseModel):
    """Metadata of one message; travels as Kafka headers, never in the payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_id, min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    source: str = SOURCE
    time: datetime = Field(default_factory=now)
    correlation_id: str | None = Field(default=None, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    saga_id: UUID | None = None
    saga_type: str | None = Field(default=None, max_length=64)
    saga_step: str | None = Field(default=None, max_length=64)

    def headers(self) -> dict[str, str]:
        """CloudEvents binary-mode headers, every one the contract names."""
        headers = {
            H_SPECVERSION: SPEC_VERSION,
            H_ID: self.id,
            H_TYPE: self.type,
            H_SOURCE: self.source,
            H_TIME: self.time.isoformat().replace("+00:00", "Z"),
            H_CORRELATION: self.correlation_id or self.id,
            H_CAUSATION: self.causation_id or self.id,
            H_CONTENT_TYPE: "application/json",
        }
        if self.saga_id is not None:
            headers[H_SAGA_ID] = str(self.saga_id)
        if self.saga_type is not None:
            headers[H_SAGA_TYPE] = self.saga_type
        if self.saga_step is not None:
            headers[H_SAGA_STEP] = self.saga_step
        if self.saga_id is not None:
            # W3C trace context: the saga's trace, the span that sent this message.
            span = int.from_bytes(hashlib.sha256(self.id.encode()).digest()[:8], "big") or 1
            headers[H_TRACEPARENT] = f"00-{self.saga_id.hex}-{span:016x}-01"
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Envelope:
        """Read an envelope back; raises pydantic.ValidationError when malformed."""
        return cls.model_validate(
            {
                "id": headers.get(H_ID),
                "type": headers.get(H_TYPE),
                "source": headers.get(H_SOURCE, SOURCE),
                "time": headers.get(H_TIME) or now(),
                "correlation_id": headers.get(H_CORRELATION),
                "causation_id": headers.get(H_CAUSATION),
                "saga_id": headers.get(H_SAGA_ID),
                "saga_type": headers.get(H_SAGA_TYPE),
                "saga_step": headers.get(H_SAGA_STEP),
            }
        )


_HEADER_OF_FIELD = {
    "id": H_ID,
    "type": H_TYPE,
    "source": H_SOURCE,
    "time": H_TIME,
    "correlation_id": H_CORRELATION,
    "causation_id": H_CAUSATION,
    "saga_id": H_SAGA_ID,
    "saga_type": H_SAGA_TYPE,
    "saga_step": H_SAGA_STEP,
}


def malformed_headers(error: ValidationError) -> list[str]:
    """The headers whose values ``Envelope.from_headers`` refused with ``error``."""
    fields = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
    return sorted(_HEADER_OF_FIELD[f] for f in fields if f in _HEADER_OF_FIELD)


def decode_headers(raw: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka record headers -> str mapping (undecodable values are dropped)."""
    decoded: dict[str, str] = {}
    for name, value in raw:
        if value is None:
            continue
        try:
            decoded[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return decoded
