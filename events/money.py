"""Money on the wire: a positive decimal with at most two fractional digits."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from events.currencies import ISO_4217
from events.masking import mask_text

LIMIT = Decimal("1e13")
"""Amounts stay below ten trillion (so minor units fit a BIGINT with room to spare)."""
MAX_MINOR = int(LIMIT * 100) - 1
"""The largest amount, total or balance in minor units (9999999999999.99)."""
CENT = Decimal("0.01")
_DOUBLE_DIGITS = 16
"""A double's shortest repr has up to 17 significant digits; a binary rounding error shows
in the 16th or 17th."""
_DECIMAL_STRING = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")


def coerce_amount(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, float):
        exact = Decimal(repr(value))
        if not exact.is_finite() or abs(exact) >= LIMIT:
            return exact
        cents = exact.quantize(CENT)
        # A JSON number is a binary float: 0.57 may arrive as 0.5700000000000001, a sum
        # computed in binary. Such a number spells out (almost) all the digits a double
        # has; one with fewer, like 10.5000000001, was written that way and is refused.
        spelled_out = len(exact.as_tuple().digits) >= _DOUBLE_DIGITS
        tolerance = Decimal("1e-9") * max(Decimal(1), abs(exact))
        return cents if spelled_out and abs(exact - cents) < tolerance else exact
    if isinstance(value, str):
        if not _DECIMAL_STRING.fullmatch(value):
            raise ValueError(f"not a decimal amount: {mask_text(value[:40])!r}")
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {mask_text(value[:40])!r}") from None
    return value


def plain(value: Decimal) -> Decimal:
    """The amount without trailing fractional zeros (10.50 and 10.5 alike, 10.0 as 10, -0.00
    as 0): one spelling for content that is compared, or hashed, by its text."""
    return value.normalize() if value else Decimal(0)


def spellings(value: Decimal) -> list[Decimal]:
    """Every way an amount of at most two fractional digits may have been written, as a
    Decimal keeps it: 10 as 10, 10.0 and 10.00; 10.5 as 10.5 and 10.50."""
    written = {str(value.quantize(Decimal(1).scaleb(-places))) for places in range(3)}
    return [Decimal(text) for text in sorted(written) if Decimal(text) == value]


def price_keys(
    price: Decimal | None, key_of: Callable[[Decimal | None], str]
) -> tuple[str, list[str]]:
    """A record's content key with its price spelled one way (``plain``), and the keys of
    its price's other spellings (``spellings``), which earlier releases keyed it by as
    written. ``key_of``: the record's key with the price given."""
    if price is None:
        return key_of(None), []
    key = key_of(plain(price))
    return key, sorted({key_of(spelled) for spelled in spellings(price)} - {key})


def _check_scale(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("amount has more than 2 fractional digits")
    if abs(value) >= LIMIT:
        raise ValueError("amount is too large (at most 9999999999999.99)")
    return value


def _check_positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("amount must be positive")
    return value


def _check_non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("amount must not be negative")
    return value


_serialize = PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")

_DECIMAL_TEXT = r"^[0-9]{1,13}(\.[0-9]{1,2})?$"
_POSITIVE_TEXT = r"^(?!0+(\.0{1,2})?$)[0-9]{1,13}(\.[0-9]{1,2})?$"


def money_schema(positive: bool) -> WithJsonSchema:
    number: dict[str, object] = {"type": "number", "exclusiveMaximum": 1e13, "multipleOf": 0.01}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    text = {"type": "string", "pattern": _POSITIVE_TEXT if positive else _DECIMAL_TEXT}
    return WithJsonSchema({"anyOf": [number, text]}, mode="validation")


money_out = WithJsonSchema(
    {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$"}, mode="serialization"
)

Amount = Annotated[
    Decimal,
    BeforeValidator(coerce_amount),
    AfterValidator(_check_scale),
    AfterValidator(_check_positive),
    _serialize,
    money_schema(positive=True),
    money_out,
]
"""A positive amount: JSON number or decimal string, at most two fractional digits."""

Balance = Annotated[
    Decimal,
    BeforeValidator(coerce_amount),
    AfterValidator(_check_scale),
    AfterValidator(_check_non_negative),
    _serialize,
    money_schema(positive=False),
    money_out,
]
"""A balance: like Amount, but zero is allowed."""


def _as_number(value: Decimal) -> float:
    """Exact: below 1e13 with two fractional digits, a float's repr reads back as the amount."""
    return float(value)


_serialize_number = PlainSerializer(_as_number, return_type=float, when_used="json")


def number_out(positive: bool) -> WithJsonSchema:
    number: dict[str, object] = {"type": "number", "exclusiveMaximum": 1e13}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    return WithJsonSchema(number, mode="serialization")


AmountNumber = Annotated[Amount, _serialize_number, number_out(positive=True)]
"""Amount, but a JSON number in answers (the HTTP API's money, as its seeds show it)."""

BalanceNumber = Annotated[Balance, _serialize_number, number_out(positive=False)]
"""Balance, but a JSON number in answers."""

CurrencyCode = Annotated[
    str,
    AfterValidator(lambda code: _check_currency(code)),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$"}),
]


def _check_currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError("currency must be an ISO 4217 code such as KZT or RUB")
    return code


def to_minor(amount: Decimal) -> int:
    """Decimal amount -> integer minor units (cents, kopecks, tiyn)."""
    return int((amount * 100).to_integral_exact())


def from_minor(units: int) -> Decimal:
    """Integer minor units -> decimal amount with two fractional digits."""
    return (Decimal(units) / 100).quantize(Decimal("0.01"))
