"""What may be shown of a text that could hold card data: in a log line, an error echoing a
client's input, a dead letter's reason, an operator's terminal."""

from __future__ import annotations

import re
from typing import Any

_DIGIT_RUN = re.compile(r"\d+(?:[ _-]\d+)*")
"""Digits, in groups joined by single spaces, underscores or dashes."""
_GROUP = re.compile(r"\d+")
_DECIMAL_AFTER = re.compile(r"\.\d")
_ACTIVATION_CODE = re.compile(r"\b[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}\b", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def _starred(text: str) -> str:
    """First and last four digits kept, every other digit starred, the grouping kept."""
    digits = [i for i, char in enumerate(text) if char.isdigit()]
    hidden = set(digits[4:-4])
    return "".join("*" if i in hidden else char for i, char in enumerate(text))


def _masked_run(found: re.Match[str]) -> str:
    """A run of digits as it may be shown. A group of 13 or more digits is hidden (unless it
    is the whole part of a decimal amount and no card number); so are consecutive groups of
    13 to 19 digits in all that pass the Luhn check, as every card number does (a UUID's
    groups, a date, a phone number are left as they are)."""
    text = found.group(0)
    amount = _DECIMAL_AFTER.match(found.string, found.end()) is not None
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(text)]
    hidden: list[tuple[int, int]] = []
    first = 0
    while first < len(groups):
        start, end = groups[first]
        whole_part = amount and first == len(groups) - 1
        if end - start >= 13 and not (whole_part and not luhn_valid(text[start:end])):
            hidden.append((start, end))
            first += 1
            continue
        last = _card_number_ending(text, groups, first)
        if last is None:
            first += 1
            continue
        hidden.append((start, groups[last][1]))
        first = last + 1
    for start, end in reversed(hidden):
        text = text[:start] + _starred(text[start:end]) + text[end:]
    return text


def _card_number_ending(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last of the groups from ``first`` on that make, together, a card number."""
    digits = ""
    for last in range(first, len(groups)):
        digits += text[groups[last][0] : groups[last][1]]
        if len(digits) > 19:
            return None
        if len(digits) >= 13 and last > first and luhn_valid(digits):
            return last
    return None


def mask_text(text: str) -> str:
    """Card numbers (13 digits or more in one group, or 13 to 19 in groups that pass the Luhn
    check) keep their first and last four digits; gift card codes and bearer tokens are hidden
    whole."""
    text = _DIGIT_RUN.sub(_masked_run, text)
    text = _ACTIVATION_CODE.sub("****-****-****-****", text)
    return _JWT.sub("eyJ***", text)


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
    return number.isdigit() and len(number) >= 2 and luhn_check_digit(number[:-1]) == number[-1]


def looks_like_card_number(text: str) -> bool:
    """13 to 19 digits (spaces, dashes and dots aside) that pass the Luhn check."""
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


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
    if isinstance(value, int) and looks_like_card_number(str(value)):
        return mask_text(str(value))
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value
