"""Log lines are JSON off a terminal and never carry card numbers, codes or tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest
import structlog

from events.masking import mask_text
from orchestrator import logging as orchestra_logging


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """These tests point the logs at pytest's captured stderr, closed once each test ends:
    later tests that log would write to it."""
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.configure(**config)
    root.handlers = handlers
    root.setLevel(level)


def test_masking_processor_hides_secrets_in_every_shape(capsys: pytest.CaptureFixture[str]) -> None:
    orchestra_logging.configure("INFO", "json")
    structlog.contextvars.bind_contextvars(saga_id="s-1", message_id="m-1")
    try:
        structlog.get_logger("test").info(
            "charging 4111111111111111 for AAAA-BBBB-CCCC-DDDD",
            card_token="tok_visa",
            request={"cardNumber": "5500005555555559", "note": "paid by 4000056655665556"},
            headers={"Authorization": "Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"},
            codes=["QRST-UVWX-YZ23-4567"],
            activation_code="AAAA-BBBB-CCCC-DDDD",
        )
    finally:
        structlog.contextvars.clear_contextvars()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["event"] == "charging 4111********1111 for ****-****-****-****"
    assert event["saga_id"] == "s-1"
    assert event["message_id"] == "m-1"
    assert event["card_token"] == "***"
    assert event["request"] == {"cardNumber": "***", "note": "paid by 4000********5556"}
    assert event["headers"] == {"Authorization": "***"}
    assert event["codes"] == ["****-****-****-****"]
    assert event["activation_code"] == "***"
    for secret in ("4111111111111111", "5500005555555559", "AAAA-BBBB", "QRST", "c2lnbmF0dXJl"):
        assert secret not in line


def test_short_secret_names_and_numbers_given_as_integers_are_hidden(
    capsys: pytest.CaptureFixture[str],
) -> None:
    orchestra_logging.configure("INFO", "json")
    structlog.get_logger("t").info(
        "entered",
        pin="8462",
        cvc="123",
        otp="839201",
        span_id="ab12",
        number=4111111111111111,
        amount=Decimal("4012888888881881.00"),
        ratio=4111111111111111.0,
        total=Decimal("1234567890123.45"),
        nan=Decimal("sNaN"),
    )
    event = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (event["pin"], event["cvc"], event["otp"]) == ("***", "***", "***")
    assert event["span_id"] == "ab12"
    assert event["number"] == "4111********1111"
    assert event["amount"] == "4012********1881.00"
    assert event["ratio"] == "4111********1111.0"
    assert "1234567890123.45" in event["total"]  # no card number: a large amount stays whole


def test_free_text_tokens_are_hidden() -> None:
    text = "got Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.abc-DEF_123 from the client"
    assert mask_text(text) == "got Bearer eyJ*** from the client"


def test_library_lines_are_json_with_their_traceback_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    orchestra_logging.configure("INFO", "json")
    try:
        raise ValueError("card 4111111111111111 declined")
    except ValueError:
        logging.getLogger("aiokafka").exception("fetch for 5500005555555559 failed")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["event"] == "fetch for 5500********5559 failed"
    assert event["logger"] == "aiokafka"
    assert event["level"] == "error"
    assert "Traceback" in event["exception"]
    assert "ValueError: card 4111********1111 declined" in event["exception"]
    assert "4111111111111111" not in line
    assert "5500005555555559" not in line
