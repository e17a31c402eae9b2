"""What may be shown of a text that could hold card data: in a log line, an error echoing a
client's input, a dead letter's reason, an operator's terminal."""

from __future__ import annotations

import re
from typing import Any

_CARD_NUMBER = re.compile(r"(?<!\w)(?<!\d\.)\d(?:[ -]?\d){12,18}(?!\w|\.\d)")
"""13 to 19 digits, run together or grouped by single spaces or dashes, standing alone: not
inside a word or an id (a UUID's groups), not the whole part of a decimal amount."""
_ACTIVATION_CODE = re.compile(r"\b[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}\b", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def _masked_number(found: re.Match[str]) -> str:
    """A card number (it passes the Luhn check, as every card number does): first and last
    four digits kept, every other digit starred, the grouping kept."""
    text = found.group(0)
    if not looks_like_card_number(text):
        return text
    digits = [i for i, char in enumerate(text) if char.isdigit()]
    hidden = set(digits[4:-4])
    return "".join("*" if i in hidden else char for i, char in enumerate(text))


def mask_text(text: str) -> str:
    """Card numbers (13-19 digits, grouped or not, Luhn-valid) keep their first and last four
    digits; gift card codes and bearer tokens are hidden whole."""
    text = _CARD_NUMBER.sub(_masked_number, text)
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
