"""Money on the wire: a positive decimal with at most two fractional digits."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer


def _coerce(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {value!r}") from None
    return value


def _check_scale(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("amount has more than 2 fractional digits")
    if abs(value) >= Decimal("1e15"):
        raise ValueError("amount is too large")
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

Amount = Annotated[
    Decimal,
    BeforeValidator(_coerce),
    AfterValidator(_check_scale),
    AfterValidator(_check_positive),
    _serialize,
]
"""A positive amount: JSON number or decimal string, at most two fractional digits."""

Balance = Annotated[
    Decimal,
    BeforeValidator(_coerce),
    AfterValidator(_check_scale),
    AfterValidator(_check_non_negative),
    _serialize,
]
"""A balance: like Amount, but zero is allowed."""

CurrencyCode = Annotated[str, AfterValidator(lambda code: _check_currency(code))]


def _check_currency(code: str) -> str:
    if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
        raise ValueError("currency must be an ISO 4217 code such as KZT or RUB")
    return code


def to_minor(amount: Decimal) -> int:
    """Decimal amount -> integer minor units (cents, kopecks, tiyn)."""
    return int((amount * 100).to_integral_exact())


def from_minor(units: int) -> Decimal:
    """Integer minor units -> decimal amount with two fractional digits."""
    return (Decimal(units) / 100).quantize(Decimal("0.01"))
