"""Card ids and card numbers: generation, Luhn check digit, masking, salted hashing."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from events.masking import luhn_check_digit

CARD_BIN = "440043"
CARD_ID_PREFIX = "9002"


def new_card_number(bin_: str = CARD_BIN) -> str:
    """A fresh 16-digit Luhn-valid card number. It is hashed and masked, never stored."""
    body = bin_ + "".join(secrets.choice("0123456789") for _ in range(15 - len(bin_)))
    return body + luhn_check_digit(body)


def new_card_id() -> str:
    """A 12-digit card id (shorter than any card number, so never mistaken for one)."""
    return CARD_ID_PREFIX + "".join(secrets.choice("0123456789") for _ in range(8))


def mask(number: str) -> str:
    """``5432********1234``: first four and last four digits only (seed 002)."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def number_hash(number: str, salt: str) -> str:
    """Salted SHA-256 of a card number (seed 004), hex."""
    return hmac.new(salt.encode("utf-8"), number.encode("utf-8"), hashlib.sha256).hexdigest()
