"""A dead letter goes out through an outbox whose key and headers are text, yet it keeps its
record's key and header values byte for byte (``dlq_key_b64``, ``dlq_headers_b64``), and a
re-drive sends those bytes back; a replay copies them as they are."""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass

import pytest
from pydantic import TypeAdapter

from events import envelope as env
from events.base import unstorable
from events.dlq import DeadLetter, DeadLetterReason
from events.store import StockReceived
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.engine.records import (
    dead_letter_message,
    envelope_letter,
    exact_headers,
    exact_key,
    parse_record,
    redriven_raw_headers,
)
from orchestrator.ops.records import Record
from orchestrator.ops.topics_cli import REDRIVEN_FROM, _redriven, _replayed, _with_record_keys

SCHEMA_REGISTRY_KEY = b"\x00\x00\x00\x00\x01\xff\xfe"
"""Confluent framing: magic byte 0, a 4-byte schema id, then Avro (here not UTF-8)."""
HEADERS = (
    (env.H_ID, b"m-1"),
    ("schema", b"\x00\x00\x00\x07"),
    ("binary", b"\xff\xfe\x80"),
    ("with-nul", b"a\x00b"),
    ("twice", b"1"),
    ("twice", b"2"),
    ("null", None),
    ("a\x00name", b"v"),
    ("text", "текст".encode()),
)
STOCK = b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2}'


@dataclass
class _Record:
    value: bytes
    key: bytes | None = SCHEMA_REGISTRY_KEY
    headers: tuple[tuple[str, bytes | None], ...] = HEADERS
    topic: str = "store.stock-received"
    partition: int = 3
    offset: int = 41
    timestamp: int = 0


def _letter(record: _Record, handler_failed: bool) -> DeadLetter:
    parsed = parse_record(record, TypeAdapter(StockReceived), 1_000_000, "stock.v1", False)
    if handler_failed:
        assert not isinstance(parsed, DeadLetter)
        return envelope_letter(parsed, "boom", DeadLetterReason.HANDLER_ERROR)
    assert isinstance(parsed, DeadLetter)
    return parsed


def _as_read(message: OutboundMessage, offset: int = 0) -> Record:
    """The dead letter as ``orchestra dlq`` reads it from ``<topic>.dlq``."""
    raw_key = None if message.key is None else message.key.encode()
    headers = tuple((name, value.encode()) for name, value in message.headers.items())
    return Record(message.topic, 0, offset, 0, raw_key, message.payload, headers)


@pytest.mark.parametrize(
    ("value", "handler_failed"), [(b"not json", False), (STOCK, True)], ids=["refused", "failed"]
)
def test_a_letter_is_text_that_gives_back_its_records_bytes(
    value: bytes, handler_failed: bool
) -> None:
    message = dead_letter_message(_letter(_Record(value), handler_failed))

    assert message.key is not None
    assert not unstorable(message.key)
    assert not any(unstorable(n) or unstorable(v) for n, v in message.headers.items())
    json.dumps(message.headers)  # a JSONB column of text takes it
    assert message.key == "\ufffd" * 4 + "\x01\ufffd\ufffd"  # its readable form
    assert base64.b64decode(message.headers[env.H_DLQ_KEY_B64]) == SCHEMA_REGISTRY_KEY
    assert exact_key(message.headers, message.key.encode()) == SCHEMA_REGISTRY_KEY
    inexact = [h for h in HEADERS if h[0] not in (env.H_ID, "text")]
    assert exact_headers(message.headers) == inexact

    redriven = redriven_raw_headers(_as_read(message).raw_headers)
    assert not Counter(HEADERS) - Counter(redriven), "nothing of the record's is lost"
    added = {name for name, _ in (Counter(redriven) - Counter(HEADERS))}
    read = {*env.CLOUDEVENTS_HEADERS, env.H_CONTENT_TYPE} - {env.H_ID}
    assert added == (read if handler_failed else set())  # the envelope as read, as before
    assert [v for n, v in redriven if n == "twice"] == [b"1", b"2"]


def test_a_letter_of_text_has_no_bytes_headers() -> None:
    record = _Record(b"not json", key=b"S-1", headers=((env.H_ID, b"m-1"), ("t", b"ok")))
    message = dead_letter_message(_letter(record, handler_failed=False))

    assert message.key == "S-1"
    assert not {env.H_DLQ_KEY_B64, env.H_DLQ_HEADERS_B64} & set(message.headers)
    assert redriven_raw_headers(_as_read(message).raw_headers) == [
        (env.H_ID, b"m-1"),
        ("t", b"ok"),
    ]


def test_a_record_replayed_from_a_dlq_does_not_carry_its_earlier_letters_bytes() -> None:
    stale = ((env.H_DLQ_KEY_B64, b"AAAA"), (env.H_DLQ_HEADERS_B64, b"[]"))
    record = _Record(b"not json", key=b"S-1", headers=stale)
    message = dead_letter_message(_letter(record, handler_failed=False))

    assert not {env.H_DLQ_KEY_B64, env.H_DLQ_HEADERS_B64} & set(message.headers)


def test_a_redrive_sends_the_key_and_headers_as_the_record_had_them() -> None:
    message = dead_letter_message(_letter(_Record(b"not json"), handler_failed=False))

    (keyed,), refused = _with_record_keys([_as_read(message, offset=7)])

    assert refused == []
    assert keyed.raw_key == SCHEMA_REGISTRY_KEY
    sent = _redriven(keyed)
    assert sent[-1] == (REDRIVEN_FROM, b"store.stock-received.dlq/0/7")
    assert Counter(sent[:-1]) == Counter(HEADERS)


@pytest.mark.parametrize(
    "bad",
    [
        {env.H_DLQ_KEY_B64: "not base64!"},
        {env.H_DLQ_HEADERS_B64: "not json"},
        {env.H_DLQ_HEADERS_B64: '{"a": "b"}'},
        {env.H_DLQ_HEADERS_B64: '[["YQ==", 1]]'},
        {env.H_DLQ_HEADERS_B64: '[["YQ=="]]'},
        {env.H_DLQ_HEADERS_B64: '[["/w==", "YQ=="]]'},  # a name that is not UTF-8
    ],
)
def test_a_letter_whose_bytes_cannot_be_read_is_not_sent(bad: dict[str, str]) -> None:
    headers = tuple((n, v.encode()) for n, v in {env.H_DLQ_TOPIC: "t", **bad}.items())
    letter = Record("t.dlq", 0, 3, 0, b"k", b"{}", headers)

    sendable, refused = _with_record_keys([letter])

    assert sendable == []
    assert [(r.record, "bytes cannot be read" in r.reason) for r in refused] == [(letter, True)]


def test_a_replay_copies_key_and_headers_byte_for_byte() -> None:
    record = Record("t", 2, 5, 0, SCHEMA_REGISTRY_KEY, b"{}", (*HEADERS, ("replayed_from", b"x")))

    assert _replayed(record) == (*HEADERS, ("replayed_from", b"t/2/5"))


def test_a_name_with_a_nul_beside_the_name_it_reads_as_are_both_given_back() -> None:
    headers = ((env.H_ID, b"m-1"), ("a\x00b", b"1"), ("a\ufffdb", b"2"))
    message = dead_letter_message(_letter(_Record(b"not json", key=b"k", headers=headers), False))
    (keyed,), unreadable = _with_record_keys([_as_read(message)])
    assert not unreadable
    sent = _redriven(keyed)
    assert Counter(headers) - Counter(sent) == Counter()
