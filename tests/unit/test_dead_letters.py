"""What is dead-lettered, and how: only UTF-8 JSON that validates is read; a dead letter
is a message of its own (every CloudEvents header, its own id) that keeps the refused
record's key, value and headers, and gives them back when re-driven."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter

from events import envelope as env
from events.dlq import DEAD_LETTER_TYPE, DeadLetter, DeadLetterReason
from events.orders import OrderSubmitted
from events.store import StockReceived
from orchestrator.engine.records import dead_letter_message, parse_record, redriven_headers

CE_HEADERS = env.CLOUDEVENTS_HEADERS


def _letter(headers: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        reason=DeadLetterReason.INVALID_ENVELOPE,
        error="ce_time: not a date",
        topic="orders.submitted",
        partition=2,
        offset=41,
        key=b"o-1",
        value=b'{"order_id": "o-1"}',
        headers=headers,
    )


def test_a_dead_letter_has_its_own_cloudevents_headers_and_keeps_the_originals() -> None:
    original = {
        env.H_ID: "m-1",
        env.H_TYPE: "orders.submitted.v1",
        env.H_TIME: "yesterday",
        env.H_CORRELATION: "corr-7",
        "traceparent": "00-abc-def-01",
    }
    message = dead_letter_message(_letter(original))

    assert message.topic == "orders.submitted.dlq"
    assert (message.key, message.payload) == ("o-1", b'{"order_id": "o-1"}')
    headers = message.headers
    assert all(headers.get(name) for name in CE_HEADERS)
    assert headers[env.H_SPECVERSION] == "1.0"
    assert headers[env.H_TYPE] == DEAD_LETTER_TYPE
    assert headers[env.H_ID] != "m-1"
    datetime.fromisoformat(headers[env.H_TIME])
    assert (headers[env.H_CORRELATION], headers[env.H_CAUSATION]) == ("corr-7", "m-1")
    assert headers["dlq_original_ce_time"] == "yesterday"
    assert headers["traceparent"] == "00-abc-def-01"
    assert (headers[env.H_DLQ_REASON], headers[env.H_DLQ_OFFSET]) == ("INVALID_ENVELOPE", "41")

    assert redriven_headers(headers) == original


def test_a_record_without_headers_is_named_by_its_place() -> None:
    headers = dead_letter_message(_letter({})).headers

    assert all(headers.get(name) for name in CE_HEADERS)
    assert headers[env.H_CAUSATION] == headers[env.H_CORRELATION] == "orders.submitted/2/41"
    assert redriven_headers(headers) == {}


@dataclass
class _Record:
    value: bytes
    topic: str = "store.stock-received"
    partition: int = 0
    offset: int = 5
    key: bytes | None = b"S-1"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def _refused(value: bytes) -> DeadLetterReason | None:
    parsed = parse_record(
        _Record(value), TypeAdapter(StockReceived), 1_000_000, "store.stock-received.v1", False
    )
    return parsed.reason if isinstance(parsed, DeadLetter) else None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2}', None),
        (b'\xef\xbb\xbf{"sku": "S-1", "warehouse_id": "W1", "quantity": 2}', None),
        (
            '{"sku": "S-1", "warehouse_id": "W1", "quantity": 2}'.encode("utf-16"),
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2, "note": NaN}',
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": Infinity}',
            DeadLetterReason.INVALID_JSON,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": "2"}',
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2, "x": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            DeadLetterReason.INVALID_JSON,
        ),
        (  # a member the message does not have is dropped, whatever it holds
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2, "x": '
            + b"[" * 900
            + b'"\\u0000", "\\ud800", {"\\u0000": 1}'
            + b"]" * 900
            + b', "n": '
            + b"9" * 5000
            + b"}",
            None,
        ),
        (
            b'{"sku": "S-\\u0000", "warehouse_id": "W1", "quantity": 2}',
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "\\udfff", "quantity": 2}',
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": ' + b"9" * 5000 + b"}",
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": true}',
            DeadLetterReason.INVALID_PAYLOAD,
        ),
        (
            b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2.0}',
            DeadLetterReason.INVALID_PAYLOAD,
        ),
    ],
)
def test_only_utf8_json_with_whole_numbers_is_read(
    value: bytes, reason: DeadLetterReason | None
) -> None:
    assert _refused(value) == reason


_STOCK = b'{"sku": "S-1", "warehouse_id": "W1", "quantity": 2}'


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        (
            ((env.H_ID, b"m-1"), (env.H_TIME, b"not a time")),
            {"id": "m-1", "time": None},
        ),
        (
            ((env.H_ID, b"x" * 300), (env.H_CORRELATION, b"y" * 300), (env.H_CAUSATION, b"c-1")),
            {"id": "store.stock-received/0/5", "correlation_id": None, "causation_id": "c-1"},
        ),
        (
            ((env.H_SAGA_ID, b"not-a-uuid"), (env.H_TIME, b"2026-11-27T03:00:00Z")),
            {"saga_id": None, "time": datetime(2026, 11, 27, 3, tzinfo=UTC)},
        ),
    ],
)
def test_an_upstream_record_with_malformed_headers_is_read_as_if_they_were_absent(
    headers: tuple[tuple[str, bytes], ...], kept: dict[str, object]
) -> None:
    parsed = parse_record(
        _Record(_STOCK, headers=headers),
        TypeAdapter(StockReceived),
        1_000_000,
        "store.stock-received.v1",
        False,
    )

    assert not isinstance(parsed, DeadLetter)
    assert parsed.body.quantity == 2
    assert parsed.envelope.type == "store.stock-received.v1"
    for field, value in kept.items():
        if field == "time" and value is None:  # absent: the time it was read
            assert parsed.envelope.time.year >= 2026
        else:
            assert getattr(parsed.envelope, field) == value, field


def test_an_internal_message_with_a_malformed_header_is_dead_lettered() -> None:
    parsed = parse_record(
        _Record(_STOCK, headers=((env.H_ID, b"m-1"), (env.H_TIME, b"not a time"))),
        TypeAdapter(StockReceived),
        1_000_000,
        "command",
        True,
    )

    assert isinstance(parsed, DeadLetter)
    assert parsed.reason == DeadLetterReason.INVALID_ENVELOPE
    assert "time" in parsed.error


def test_a_bad_item_is_named_once_not_also_as_a_list_too_short() -> None:
    order = (
        b'{"order_id": "o-1", "customer_id": "c-1", "currency": "RUB",'
        b' "items": [{"sku": "S-1", "quantity": "2", "unit_price": 1}],'
        b' "payment": {"method": "sbp"}, "delivery": {"method": "pickup", "point_id": "P"}}'
    )
    parsed = parse_record(
        _Record(order, topic="orders.submitted"),
        TypeAdapter(OrderSubmitted),
        1_000_000,
        "orders.submitted.v1",
        False,
    )

    assert isinstance(parsed, DeadLetter)
    assert parsed.error == "items.0.quantity: Input should be a valid integer"


def test_a_card_number_in_a_record_is_refused_and_not_echoed_by_its_dead_letter() -> None:
    """A card number sent as a token is no token; one typed as an amount is named in the
    letter's reason only masked."""
    order = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "RUB",
        "items": [{"sku": "S-1", "quantity": 1, "unit_price": "4012 8888 8888 1881"}],
        "payment": {"method": "bank_card", "card_token": "5500005555555559"},
        "delivery": {"method": "pickup", "point_id": "PP-1", "cost": "1"},
    }
    record = _Record(value=json.dumps(order).encode())
    letter = parse_record(record, TypeAdapter(OrderSubmitted), 10_000, "orders", False)
    assert isinstance(letter, DeadLetter)
    error = dead_letter_message(letter).headers[env.H_DLQ_ERROR]
    assert "payment: Value error, card_token is a card number, not a token" in error
    assert "'4012 **** **** 1881'" in error
    assert "8888 8888" not in error


def test_a_letter_holding_its_value_says_nothing_of_a_dropped_one() -> None:
    """A record replayed from a DLQ may carry an earlier letter's ``dlq_value_dropped``; its
    own letter holds its value, so a re-drive must not look for it elsewhere."""
    message = dead_letter_message(_letter({env.H_DLQ_VALUE_DROPPED: "3026 bytes refused"}))
    assert env.H_DLQ_VALUE_DROPPED not in message.headers
    assert message.payload == b'{"order_id": "o-1"}'
