"""Turning raw Kafka records into typed messages, or into dead letters with a reason."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pydantic import TypeAdapter, ValidationError

from events import envelope as env
from events.dlq import DeadLetter, DeadLetterReason
from events.envelope import Envelope, decode_headers
from orchestrator.engine.outbox import OutboundMessage

T = TypeVar("T")
log = structlog.get_logger(__name__)


class RawRecord(Protocol):
    """The part of aiokafka's ConsumerRecord the engine reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    timestamp: int


@dataclass(frozen=True)
class Parsed(Generic[T]):
    record: RawRecord
    envelope: Envelope
    body: T

    @property
    def key(self) -> str | None:
        return self.record.key.decode("utf-8", "replace") if self.record.key is not None else None


def parse_record(
    record: RawRecord,
    adapter: TypeAdapter[T],
    max_bytes: int,
    default_type: str,
    require_envelope: bool,
) -> Parsed[T] | DeadLetter:
    """Validate one record; never raises for bad input, returns a DeadLetter instead."""
    headers = decode_headers(record.headers or ())
    value = record.value or b""

    def dead(reason: DeadLetterReason, error: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error=error[:1_000],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=value,
            headers=headers,
        )

    if len(value) > max_bytes:
        return dead(DeadLetterReason.TOO_LARGE, f"record of {len(value)} bytes exceeds {max_bytes}")
    try:
        document = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return dead(DeadLetterReason.INVALID_JSON, f"value is not valid UTF-8 JSON: {exc}")
    if not isinstance(document, dict):
        return dead(DeadLetterReason.INVALID_PAYLOAD, "value must be a JSON object")
    try:
        body = adapter.validate_python(document)
    except ValidationError as exc:
        return dead(DeadLetterReason.INVALID_PAYLOAD, _describe(exc))
    if require_envelope and env.H_ID not in headers:
        return dead(DeadLetterReason.INVALID_ENVELOPE, "internal message without ce_id header")
    headers.setdefault(env.H_TYPE, default_type)
    if env.H_ID not in headers:
        headers[env.H_ID] = f"{record.topic}/{record.partition}/{record.offset}"
    try:
        envelope = Envelope.from_headers(headers)
    except ValidationError as exc:
        return dead(DeadLetterReason.INVALID_ENVELOPE, _describe(exc))
    return Parsed(record, envelope, body)


def log_dead_letters(letters: Sequence[DeadLetter]) -> None:
    for letter in letters:
        log.warning(
            "dead-lettered",
            topic=letter.topic,
            offset=letter.offset,
            reason=letter.reason,
            error=letter.error,
        )


def dead_letter_message(letter: DeadLetter) -> OutboundMessage:
    """The copy of a refused record for ``<topic>.dlq``: original key, value and headers kept."""
    headers = dict(letter.headers)
    headers.update(
        {
            env.H_DLQ_REASON: letter.reason.value,
            env.H_DLQ_ERROR: letter.error,
            env.H_DLQ_TOPIC: letter.topic,
            env.H_DLQ_PARTITION: str(letter.partition),
            env.H_DLQ_OFFSET: str(letter.offset),
        }
    )
    key = letter.key.decode("utf-8", "replace") if letter.key is not None else None
    return OutboundMessage(letter.topic + ".dlq", key, headers, letter.value)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def envelope_letter(
    parsed: Parsed[Any], error: str, reason: DeadLetterReason = DeadLetterReason.INVALID_ENVELOPE
) -> DeadLetter:
    """A well-formed record refused after parsing: its envelope lacks what its topic
    requires, or (``HANDLER_ERROR``) its handler failed on it."""
    record = parsed.record
    return DeadLetter(
        reason=reason,
        error=error,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=parsed.envelope.headers(),
    )
