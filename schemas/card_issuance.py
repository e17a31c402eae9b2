"""Card-issuance worker tables: the card id inventory and the cards."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table, func, text
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
from schemas.metadata import metadata

OWNER = "card-issuance"

card_inventory = Table(
    "card_inventory",
    metadata,
    Column("card_id", String(32), primary_key=True),
    Column("card_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # AVAILABLE | RESERVED | USED
    Column("saga_id", UUID(as_uuid=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_card_inventory_available",
        "card_type",
        postgresql_where=text("status = 'AVAILABLE'"),
    ),
)

cards = Table(
    "cards",
    metadata,
    Column("saga_id", UUID(as_uuid=True), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("card_type", String(16), nullable=False),
    Column("card_id", String(32), nullable=True, unique=True),
    Column("number_hash", String(64), nullable=True, unique=True),
    Column("masked_number", String(19), nullable=True),
    Column("status", String(16), nullable=False),  # PENDING | ACTIVE | CANCELLED
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "uq_cards_one_live_per_user_type",
        "user_id",
        "card_type",
        unique=True,
        postgresql_where=text("status IN ('PENDING', 'ACTIVE')"),
    ),
)

card_issuance_inbox = inbox_table(OWNER)
card_issuance_outbox = outbox_table(OWNER)
card_issuance_operations = operations_table(OWNER)
