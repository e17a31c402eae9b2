"""Money in the HTTP API's answers: a JSON number that reads back as the exact amount, while
the topics' ``Amount``/``Balance`` stay decimal strings."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from events.money import Amount, AmountNumber, Balance, BalanceNumber


class Answer(BaseModel):
    amount: AmountNumber
    balance: BalanceNumber


class Record(BaseModel):
    amount: Amount
    balance: Balance


EDGES = ["0.01", "0.57", "4.50", "1000", "1234567890123.45", "9999999999999.99"]


@pytest.mark.parametrize("text", EDGES)
def test_answers_carry_numbers_that_read_back_exactly(text: str) -> None:
    dumped = json.loads(Answer(amount=Decimal(text), balance=Decimal(text)).model_dump_json())
    assert isinstance(dumped["amount"], float)
    assert Decimal(str(dumped["amount"])) == Decimal(text)


def test_every_amount_below_the_limit_round_trips() -> None:
    rng = random.Random(20261126)
    cents = [rng.randrange(1, 10**15) for _ in range(20_000)]
    cents += [rng.randrange(1, 10**k) for k in range(1, 16) for _ in range(500)]
    for value in (Decimal(units).scaleb(-2) for units in cents):
        parsed = json.loads(Answer(amount=value, balance=value).model_dump_json())
        assert Decimal(repr(parsed["balance"])) == value, value


def test_zero_balance_and_python_mode_keep_the_decimal() -> None:
    answer = Answer(amount=Decimal("1.10"), balance=Decimal(0))
    assert json.loads(answer.model_dump_json()) == {"amount": 1.1, "balance": 0.0}
    assert answer.model_dump() == {"amount": Decimal("1.10"), "balance": Decimal(0)}


def test_numbers_validate_like_amounts() -> None:
    assert Answer(amount="10.50", balance=0).amount == Decimal("10.50")  # type: ignore[arg-type]
    for bad in (0, "1.001", -1, True):
        with pytest.raises(ValidationError):
            Answer(amount=bad, balance=0)  # type: ignore[arg-type]


def test_topic_money_is_still_a_decimal_string() -> None:
    record = Record(amount=Decimal("4.50"), balance=Decimal(0))
    assert json.loads(record.model_dump_json()) == {"amount": "4.50", "balance": "0"}


def test_json_schema_of_answers_is_a_number() -> None:
    answer = Answer.model_json_schema(mode="serialization")["properties"]
    assert answer["amount"].items() >= {"type": "number", "exclusiveMinimum": 0}.items()
    assert answer["balance"].items() >= {"type": "number", "minimum": 0}.items()
    asked = Answer.model_json_schema(mode="validation")["properties"]["amount"]["anyOf"]
    assert [kind["type"] for kind in asked] == ["number", "string"]
