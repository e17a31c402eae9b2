"""What may be shown of a text that could hold card data: in a log line, an error echoing a
client's input, a dead letter's reason, an operator's terminal."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

_DIGIT_RUN = re.compile(r"\d+(?:[ _-]\d+)*")
"""Digits, in groups joined by single spaces, underscores or dashes."""
_TOKEN_RUN = re.compile(r"\d+(?:[\s._/,\u2010-\u2015\u200b-\u200d\u2060\ufeff-]+\d+)*")
"""Digits as a card number may be written in a token or a text: groups apart by spaces of any
kind and width, dots, underscores, slashes, commas, dashes of any kind, invisible joiners."""
_SPELLED_RUN = re.compile(r"\d+(?:[\s.,/\u2010-\u2015\u200b-\u200d\u2060\ufeff]+\d+)+")
"""Digit groups apart as ``_DIGIT_RUN`` does not take them (dots, commas, slashes, other
spaces and dashes, invisible joiners): a card number spelled so in a text echoed to a log."""
_GROUP = re.compile(r"\d+")
_ALNUM = re.compile(r"[0-9A-Za-z]")
_ACTIVATION_CODE = re.compile(r"\b[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}\b", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def _interior(span: range) -> range:
    """A card number's digits but its first and last four."""
    return range(span.start + 4, span.stop - 4)


def _card_spans(groups: Sequence[str], longest_group: int = 19) -> Iterator[tuple[int, int]]:
    """``(first, last)`` of every span of consecutive groups, none longer than
    ``longest_group``, that makes 13 to 19 digits passing the Luhn check."""
    for first in range(len(groups)):
        number = ""
        for last in range(first, len(groups)):
            if len(groups[last]) > longest_group:
                break
            number += groups[last]
            if len(number) > 19:
                break
            if len(number) >= 13 and luhn_valid(number):
                yield first, last


class _Run:
    """A run of digit groups, and which of its digits are hidden."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.groups = [(g.start(), g.end()) for g in _GROUP.finditer(text)]
        self.numbers = [text[start:end] for start, end in self.groups]
        self._digits = [i for i, char in enumerate(text) if char.isdigit()]
        self._index = {position: n for n, position in enumerate(self._digits)}
        self._hidden: set[int] = set()

    def hide(self, first: int, last: int) -> None:
        """Hide groups ``first`` to ``last`` as one number, but for its first and last four
        digits."""
        span = range(self._index[self.groups[first][0]], self._index[self.groups[last][1] - 1] + 1)
        self._hidden.update(self._digits[i] for i in _interior(span))

    def shown(self) -> str:
        return "".join("*" if i in self._hidden else char for i, char in enumerate(self.text))


def _masked_run(found: re.Match[str]) -> str:
    """A run of digits as it may be shown. Hidden, but for the first and last four digits of
    each: every group of 13 digits or more, unless it is the whole part of a decimal amount
    that fails the Luhn check; and every span of consecutive groups of at most six digits,
    13 to 19 in all, that passes it, as every card number does, standing apart from letters
    and digits at both ends (a UUID's hex groups, a date, a phone number are left as they
    are)."""
    string = found.string
    run = _Run(found.group(0))
    sep_before = found.start() == 0 or not _ALNUM.match(string, found.start() - 1)
    sep_after = found.end() == len(string) or not _ALNUM.match(string, found.end())
    decimal = string[found.end() : found.end() + 2]
    whole_part = len(decimal) == 2 and decimal[0] == "." and decimal[1].isdigit()
    last_group = len(run.groups) - 1
    for n, number in enumerate(run.numbers):
        if len(number) >= 13 and not (whole_part and n == last_group and not luhn_valid(number)):
            run.hide(n, n)
    for first, last in _card_spans(run.numbers, longest_group=6):  # a card's: 4-4-4-4, 4-6-5
        opened = first > 0 or sep_before
        closed = last < last_group or sep_after
        if last > first and opened and closed:
            run.hide(first, last)
    return run.shown()


def mask_text(text: str) -> str:
    """Card numbers (13 digits or more in one group, or 13 to 19 in groups that pass the Luhn
    check) keep their first and last four digits; gift card codes and bearer tokens are hidden
    whole."""
    text = _DIGIT_RUN.sub(_masked_run, text)
    text = _SPELLED_RUN.sub(_masked_card_number, text)
    text = _ACTIVATION_CODE.sub("****-****-****-****", text)
    return _JWT.sub("eyJ***", text)


def mask_card_numbers(text: str) -> str:
    """``text`` as it may be stored: each card number in it (13 to 19 digits passing the Luhn
    check, in one group or several apart as ``_TOKEN_RUN`` allows) kept to its first and last
    four digits, and nothing else changed (an order number, a bar code that fails the check
    stay whole)."""
    return _TOKEN_RUN.sub(_masked_card_number, text)


def _masked_card_number(found: re.Match[str]) -> str:
    run = _Run(found.group(0))
    for first, last in _card_spans(run.numbers):
        if first < last and max(len(n) for n in run.numbers[first : last + 1]) > 6:
            continue  # a card's groups have 4-6 digits: a reference and a card's first four
        run.hide(first, last)
    return run.shown()


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (decimal digits of any script) passes the Luhn check."""
    return (
        number.isdecimal()
        and len(number) >= 2
        and luhn_check_digit(number[:-1]) == str(int(number[-1]))
    )


def holds_card_number(text: str) -> bool:
    """Somewhere in ``text``, consecutive groups of digits (joined by spaces, dots, dashes or
    underscores) that make 13 to 19 digits passing the Luhn check."""
    return any(
        next(_card_spans(_GROUP.findall(run)), None) is not None for run in _TOKEN_RUN.findall(text)
    )


_SECRET_KEYS = (
    "password",
    "secret",
    "token",
    "activation_code",
    "code_digest",
    "cvv",
    "card_number",
    "cardnumber",
    "securitycode",
    "authorization",
    "pares",
    "apikey",
)
_SECRET_NAMES = frozenset({"pin", "cvc", "cvv2", "pan", "otp"})
"""Short names, secret only when a key is exactly one of them (``span_id`` is no ``pan``)."""


def _normal(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


_SECRETS = tuple(_normal(key) for key in _SECRET_KEYS)


def masked(value: Any, key: str = "") -> Any:
    """A value (of a log line, a saga's data) fit to show: hidden whole under a secret's name,
    else its texts masked, walking into mappings and sequences."""
    name = _normal(key)
    if name in _SECRET_NAMES or any(secret in name for secret in _SECRETS):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool) and _large(value):
        shown = mask_text(str(value))
        return value if shown == str(value) else shown
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def _large(number: float | Decimal) -> bool:
    """Whether a number may hold a card number (13 digits or more before its point)."""
    try:
        return abs(Decimal(number)) >= 10**12
    except ArithmeticError:  # a signalling NaN
        return False
