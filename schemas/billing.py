"""Billing worker tables: card wallets."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, outbox_table
from schemas.metadata import metadata

OWNER = "billing"

card_wallets = Table(
    "card_wallets",
    metadata,
    Column("wallet_id", String(64), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("card_id", String(32), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # OPEN | CLOSED
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

billing_inbox = inbox_table(OWNER)
billing_outbox = outbox_table(OWNER)
