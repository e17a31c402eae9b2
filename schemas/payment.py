"""Payment worker tables: bank payments, gift card bindings, and the bank simulator's book."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
from schemas.metadata import metadata

OWNER = "payment"

bank_payments = Table(
    "bank_payments",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("step", String(100), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("method", String(16), nullable=False),
    Column("token_hint", String(16), nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("bank_reference", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # CAPTURED | REFUNDED
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

gift_card_bindings = Table(
    "gift_card_bindings",
    metadata,
    Column("gift_card_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False, index=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False),  # BOUND | UNBOUND
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

bank_simulator_book = Table(
    "bank_simulator_book",
    metadata,
    Column("reference", String(64), primary_key=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""The built-in bank simulator's own record of what it captured and refunded."""

payment_inbox = inbox_table(OWNER)
payment_outbox = outbox_table(OWNER)
payment_operations = operations_table(OWNER)
