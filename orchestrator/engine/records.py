"""Turning raw Kafka records into typed messages, or into dead letters with a reason."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from events import envelope as env
from events.base import unstorable
from events.dlq import DEAD_LETTER_TYPE, DeadLetter, DeadLetterReason
from events.envelope import Envelope, decode_headers, malformed_headers
from events.masking import mask_text
from orchestrator import metrics
from orchestrator.engine.outbox import OutboundMessage

T = TypeVar("T")
V = TypeVar("V")
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


_UNSTORABLE = "\x00"
"""PostgreSQL text and jsonb hold any Unicode but NUL (and no lone surrogate)."""

_ESCAPED_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""A JSON escape that may decode to NUL or to a surrogate: only then is the document walked."""


def _not_json(constant: str) -> None:
    """Python reads NaN and Infinity; JSON has neither."""
    raise ValueError(f"{constant} is not a JSON value")


def text_key(raw: bytes | None) -> str | None:
    """A record key as text that can be stored: bad UTF-8 and NUL become U+FFFD."""
    if raw is None:
        return None
    return _readable(raw.decode("utf-8", "replace"))


def _integer(digits: str) -> int | Decimal:
    """A JSON integer; one longer than Python converts to ``int`` (4300 digits) as a
    ``Decimal``, which a member that must be an integer refuses by name and an unknown member
    never reads: the record is not refused as JSON that is not."""
    return int(digits) if len(digits) <= _INT_DIGITS else Decimal(digits)


_INT_DIGITS = 4000


def _unstorable_text(document: Any) -> bool:
    """Whether a JSON document holds a string (or key) no database text column can hold
    (walked without recursion: a document may nest as deep as the parser allows)."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if unstorable(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _storable_headers(headers: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The headers with NUL replaced by U+FFFD, and the names of those that held one."""
    bad = [name for name, value in headers.items() if _UNSTORABLE in name or _UNSTORABLE in value]
    if not bad:
        return headers, []
    kept = {_readable(name): _readable(value) for name, value in headers.items()}
    return kept, [_readable(name) for name in bad]


def record_letter(
    record: RawRecord,
    reason: DeadLetterReason,
    error: str,
    headers: dict[str, str] | None = None,
) -> DeadLetter:
    """The dead letter of a raw record, its value and (storable) headers kept."""
    if headers is None:
        headers = _storable_headers(decode_headers(record.headers or ()))[0]
    return DeadLetter(
        reason=reason,
        error=error[:1_000],
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=headers,
        raw_headers=tuple(record.headers or ()),
    )


def _place(record: RawRecord) -> str:
    """A record's own id when it has no ``ce_id``: where it lies."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def _log_headers(event: str, record: RawRecord, headers: list[str]) -> None:
    log.warning(
        event,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        headers=headers,
    )


def parse_record(
    record: RawRecord,
    adapter: TypeAdapter[T],
    max_bytes: int,
    default_type: str,
    require_envelope: bool,
) -> Parsed[T] | DeadLetter:
    """Validate one record; never raises for bad input, returns a DeadLetter instead."""
    headers, nul_headers = _storable_headers(decode_headers(record.headers or ()))
    value = record.value or b""

    def dead(reason: DeadLetterReason, error: str) -> DeadLetter:
        return record_letter(record, reason, error, headers)

    if len(value) > max_bytes:
        return dead(DeadLetterReason.TOO_LARGE, f"record of {len(value)} bytes exceeds {max_bytes}")
    if nul_headers and require_envelope:
        return dead(
            DeadLetterReason.INVALID_ENVELOPE,
            f"header(s) {', '.join(nul_headers)} hold a NUL character, which cannot be stored",
        )
    try:
        document = json.loads(
            value.decode("utf-8").removeprefix("\ufeff"),
            parse_constant=_not_json,
            parse_int=_integer,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        return dead(DeadLetterReason.INVALID_JSON, f"value is not valid UTF-8 JSON: {exc}")
    except RecursionError:
        return dead(DeadLetterReason.INVALID_JSON, "value nests arrays or objects too deeply")
    if not isinstance(document, dict):
        return dead(DeadLetterReason.INVALID_PAYLOAD, "value must be a JSON object")
    try:
        body = adapter.validate_python(document)
    except ValidationError as exc:
        return dead(DeadLetterReason.INVALID_PAYLOAD, _describe(exc))
    if _ESCAPED_UNSTORABLE.search(value) and _unstorable_text(adapter.dump_python(body)):
        return dead(  # in what is kept: members the message does not have are dropped
            DeadLetterReason.INVALID_PAYLOAD,
            "text with a NUL character or a lone surrogate, which cannot be stored",
        )
    if nul_headers:  # an upstream record's: kept with U+FFFD, as a malformed one would be
        _log_headers("NUL characters of an upstream record's headers replaced", record, nul_headers)
    if require_envelope and env.H_ID not in headers:
        return dead(DeadLetterReason.INVALID_ENVELOPE, "internal message without ce_id header")
    headers.setdefault(env.H_TYPE, default_type)
    if env.H_ID not in headers:
        headers[env.H_ID] = _place(record)
    try:
        envelope = Envelope.from_headers(headers)
    except ValidationError as exc:
        if require_envelope:
            return dead(DeadLetterReason.INVALID_ENVELOPE, _describe(exc))
        # upstream records may lack headers, so a malformed one counts as absent
        ignored = malformed_headers(exc)
        kept = {name: value for name, value in headers.items() if name not in ignored}
        kept.setdefault(env.H_TYPE, default_type)
        kept.setdefault(env.H_ID, _place(record))
        try:
            envelope = Envelope.from_headers(kept)
        except ValidationError as again:
            return dead(DeadLetterReason.INVALID_ENVELOPE, _describe(again))
        _log_headers("malformed headers of an upstream record ignored", record, ignored)
    return Parsed(record, envelope, body)


def report_dead_letters(letters: Sequence[DeadLetter]) -> None:
    """Log and count dead letters, once written."""
    for letter in letters:
        metrics.DEAD_LETTERS.labels(letter.topic, letter.reason.value).inc()
        log.warning(
            "dead-lettered",
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            reason=letter.reason,
            error=letter.error,
        )


def dead_letter_message(letter: DeadLetter) -> OutboundMessage:
    """The copy of a refused record for ``<topic>.dlq``: original key, value and headers
    kept, but its CloudEvents attributes under ``dlq_original_``: the copy is a message of
    its own, with its own id, time and type, caused by the refused record."""
    source_id = f"{letter.topic}/{letter.partition}/{letter.offset}"
    original_id = letter.headers.get(env.H_ID) or source_id
    envelope = Envelope(
        type=DEAD_LETTER_TYPE,
        correlation_id=(letter.headers.get(env.H_CORRELATION) or original_id)[:200],
        causation_id=original_id[:200],
    )
    headers = {
        (env.H_DLQ_ORIGINAL_PREFIX + name if name in _OWN else name): value
        for name, value in letter.headers.items()
    }
    headers.update({name: value for name, value in envelope.headers().items() if name in _OWN})
    for earlier in _OF_AN_EARLIER_LETTER:  # this letter holds its record's value and bytes
        headers.pop(earlier, None)
    headers.update(
        {
            env.H_DLQ_REASON: letter.reason.value,
            env.H_DLQ_ERROR: mask_text(letter.error),
            env.H_DLQ_TOPIC: letter.topic,
            env.H_DLQ_PARTITION: str(letter.partition),
            env.H_DLQ_OFFSET: str(letter.offset),
            **_exact_bytes(letter),
        }
    )
    return OutboundMessage(letter.topic + ".dlq", text_key(letter.key), headers, letter.value)


_OF_AN_EARLIER_LETTER = (env.H_DLQ_VALUE_DROPPED, env.H_DLQ_KEY_B64, env.H_DLQ_HEADERS_B64)
"""What a record replayed from a DLQ may carry that speaks of its earlier letter."""


def _exact_bytes(letter: DeadLetter) -> dict[str, str]:
    """``dlq_key_b64`` and ``dlq_headers_b64`` for what the letter's text key and headers
    do not hold as the record had it (an outbox row's key and headers are text)."""
    exact: dict[str, str] = {}
    if letter.key is not None and not _text_as_is(letter.key):
        exact[env.H_DLQ_KEY_B64] = _b64(letter.key)
    inexact = _inexact_headers(letter.raw_headers)
    if inexact:
        exact[env.H_DLQ_HEADERS_B64] = json.dumps(
            [
                [_b64(name.encode()), None if value is None else _b64(value)]
                for name, value in inexact
            ]
        )
    return exact


def _text_as_is(raw: bytes) -> bool:
    """Whether bytes are text a database holds as they are: UTF-8 without NUL."""
    try:
        return not unstorable(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def _inexact_headers(raw: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """The headers a letter's text headers cannot give back as they were: a value that is
    not text as it is or is null, a name with a NUL, each of the names that read the same
    (one repeated, or one with a NUL beside one with U+FFFD in its place)."""
    headers = list(raw)
    times = Counter(_readable(name) for name, _ in headers)
    return [
        (name, value)
        for name, value in headers
        if value is None
        or not _text_as_is(value)
        or _UNSTORABLE in name
        or times[_readable(name)] > 1
    ]


def _readable(text: str) -> str:
    """Text as a letter's key and headers hold it: NUL as U+FFFD."""
    return text.replace(_UNSTORABLE, "\ufffd")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def exact_key(headers: Mapping[str, str], key: bytes | None) -> bytes | None:
    """A dead letter's key as its record had it, byte for byte; ValueError when its
    ``dlq_key_b64`` is not base64."""
    coded = headers.get(env.H_DLQ_KEY_B64)
    return key if coded is None else _unb64(coded)


def exact_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes | None]]:
    """The headers a dead letter holds in ``dlq_headers_b64``; ValueError when malformed."""
    coded = headers.get(env.H_DLQ_HEADERS_B64)
    if coded is None:
        return []
    pairs = json.loads(coded)
    if not isinstance(pairs, list) or not all(map(_is_pair, pairs)):
        raise ValueError(f"{env.H_DLQ_HEADERS_B64} is not a JSON list of [name, value] pairs")
    return [
        (_unb64(name).decode("utf-8"), None if value is None else _unb64(value))
        for name, value in pairs
    ]


def _is_pair(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], str)
        and (item[1] is None or isinstance(item[1], str))
    )


def redriven_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A dead letter's headers as the refused record had them: its ``dlq_*`` headers and
    its own CloudEvents attributes dropped, the original ones restored."""
    return dict(_restored(headers.items()))


def _restored(headers: Iterable[tuple[str, V]]) -> Iterator[tuple[str, V]]:
    for name, value in headers:
        if name.startswith(env.H_DLQ_ORIGINAL_PREFIX):
            yield name.removeprefix(env.H_DLQ_ORIGINAL_PREFIX), value
        elif name not in _OWN and not name.startswith(_DLQ):
            yield name, value


def redriven_raw_headers(
    raw: Sequence[tuple[str, bytes | None]],
) -> list[tuple[str, bytes | None]]:
    """A dead letter's headers as the refused record had them, byte for byte: those
    ``redriven_headers`` keeps, with the ones ``dlq_headers_b64`` holds in place of their
    readable form (ValueError when it is malformed)."""
    exact = exact_headers({n: v.decode("utf-8", "replace") for n, v in raw if v is not None})
    readable = {_readable(name) for name, _ in exact}
    return [*((n, v) for n, v in _restored(raw) if n not in readable), *exact]


_OWN = frozenset(env.CLOUDEVENTS_HEADERS)
"""The CloudEvents headers a dead letter sets for itself; saga extensions stay as they were."""
_DLQ = "dlq_"


def _after_its_items(error: ErrorDetails) -> bool:
    """A collection "too short after validation" only because its items failed (they are
    reported on their own)."""
    given, ctx = error.get("input"), error.get("ctx") or {}
    return (
        error["type"] == "too_short"
        and isinstance(given, list | tuple)
        and len(given) >= int(ctx.get("min_length", 0))
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in [e for e in exc.errors() if not _after_its_items(e)][:5]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def envelope_letter(
    parsed: Parsed[Any], error: str, reason: DeadLetterReason = DeadLetterReason.INVALID_ENVELOPE
) -> DeadLetter:
    """A well-formed record refused after parsing: its envelope lacks what its topic
    requires, or (``HANDLER_ERROR``) its handler failed on it. The record's own headers are
    kept (a re-drive's ``redriven_from`` among them), the envelope's as it was read."""
    record = parsed.record
    own = _storable_headers(decode_headers(record.headers or ()))[0]
    return DeadLetter(
        reason=reason,
        error=error,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers={**own, **parsed.envelope.headers()},
        raw_headers=tuple(record.headers or ()),
    )
