"""The bank API behind bank card and SBP payments: an interface and the built-in simulator.

The simulator follows the contract's test data rules: token ``tok_decline`` is declined,
``tok_unavailable`` finds the acquirer unavailable on every try (seed 002: 503), any
other token is approved. Charges are idempotent by key on the bank's side, as real
acquirers' are, and the simulator keeps its own book so tests can reconcile with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import uuid4

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.payment import bank_simulator_book
from workers.sql import add_within

DECLINE_TOKEN = "tok_decline"
UNAVAILABLE_TOKEN = "tok_unavailable"

# Statements built once, not per command (see workers/operations.py).
_NEW_BOOKING = pg_insert(bank_simulator_book)
# a key already booked keeps its row (the no-op update only makes it returned): one round trip
_BOOK = _NEW_BOOKING.on_conflict_do_update(
    index_elements=[bank_simulator_book.c.idempotency_key],
    set_={"idempotency_key": _NEW_BOOKING.excluded.idempotency_key},
).returning(bank_simulator_book.c.reference, bank_simulator_book.c.amount_minor)
_REFUND = add_within(bank_simulator_book, "reference", "refunded_minor", cap="amount_minor")


class BankDeclined(Exception):
    """The issuer refused the charge (a business answer: not retried)."""


class BankUnavailable(Exception):
    """The acquirer did not answer (transient: retried with backoff)."""


@dataclass(frozen=True)
class BankCharge:
    reference: str
    amount_minor: int


class BankApi(Protocol):
    async def charge(
        self,
        conn: AsyncConnection,
        idempotency_key: str,
        token: str | None,
        amount_minor: int,
        currency: str,
    ) -> BankCharge:
        """Charges ``amount_minor`` hundredths of ``currency``: the project keeps every
        amount in hundredths (the contract allows 2 fractional digits in any currency),
        whatever the currency's ISO 4217 exponent, so an adapter for a real acquirer converts
        to the acquirer's unit (a yen has no minor unit, a dinar has thousandths) and refuses
        an amount that unit cannot hold."""

    async def refund(
        self, conn: AsyncConnection, idempotency_key: str, reference: str, amount_minor: int
    ) -> None:
        """Gives back ``amount_minor`` of the charge ``reference``; the same key again is the
        same refund (a batch retried after a database fault)."""


class SimulatedBank:
    """The built-in bank; its book lives in ``bank_simulator_book``."""

    async def charge(
        self,
        conn: AsyncConnection,
        idempotency_key: str,
        token: str | None,
        amount_minor: int,
        currency: str,
    ) -> BankCharge:
        if token == UNAVAILABLE_TOKEN:
            raise BankUnavailable("acquirer unavailable (503)")
        if token == DECLINE_TOKEN:
            raise BankDeclined("declined by the issuer")
        reference = f"BNK-{uuid4().hex[:20]}"
        booked = (
            await conn.execute(
                _BOOK,
                {
                    "reference": reference,
                    "idempotency_key": idempotency_key,
                    "amount_minor": amount_minor,
                    "refunded_minor": 0,
                    "currency": currency,
                },
            )
        ).one()
        return BankCharge(booked.reference, booked.amount_minor)

    async def refund(
        self, conn: AsyncConnection, idempotency_key: str, reference: str, amount_minor: int
    ) -> None:
        """Refunds within the charge (the book caps them at its amount), in the caller's
        transaction: a retried batch cannot refund twice here."""
        await conn.execute(_REFUND, {"b_key": reference, "b_amount": amount_minor})
