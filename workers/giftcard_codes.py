"""Gift card activation codes: derived from the card id with a secret key, stored only as a hash.

Billing and notification both hold the key, so the code itself never travels on a saga's
topics (commands, replies, statuses) or sits in a table: billing stores ``stored_hash`` of its
digest, notification derives the code to put it in the recipient's e-mail, the client types
it back. The e-mail itself is the one place it is written: the built-in e-mail channel, the
stand-in for a mail provider, publishes what it delivers on ``notifications.sent``, as the
contract asks, so that topic is to be guarded like a mailbox."""

from __future__ import annotations

import base64
import hashlib
import hmac

from events.giftcards import code_digest


def derive_code(key: str, gift_card_id: str) -> str:
    mac = hmac.new(key.encode(), f"giftcard:{gift_card_id}".encode(), hashlib.sha256).digest()
    letters = base64.b32encode(mac).decode()[:16]
    return "-".join(letters[i : i + 4] for i in range(0, 16, 4))


def stored_hash(key: str, digest: str) -> str:
    """What billing keeps: a keyed hash of the code's SHA-256 digest."""
    return hmac.new(key.encode(), f"stored:{digest}".encode(), hashlib.sha256).hexdigest()


def stored_hash_of_card(key: str, gift_card_id: str) -> str:
    return stored_hash(key, code_digest(derive_code(key, gift_card_id)))
