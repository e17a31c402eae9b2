"""Billing worker tables: card wallets (seed 000), client wallets, gift cards and the ledger."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
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

customer_wallets = Table(
    "customer_wallets",
    metadata,
    Column("wallet_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # PENDING (registering) | OPEN | CLOSED
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance_minor >= 0", name="ck_customer_wallets_not_negative"),
)

gift_cards = Table(
    "gift_cards",
    metadata,
    Column("gift_card_id", String(64), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("initial_minor", BigInteger, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # INACTIVE | ACTIVATING | ACTIVE | CANCELLED
    Column("purchaser_id", String(128), nullable=False),
    Column("owner_id", String(128), nullable=True),
    Column("recipient_name", String(100), nullable=False),
    Column("design", String(64), nullable=False),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("activated_by_saga", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("balance_minor >= 0", name="ck_gift_cards_not_negative"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger, Identity(), primary_key=True),
    Column("movement_id", String(64), nullable=False),
    Column("account", String(100), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("step", String(100), nullable=False),
    Column("memo", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_ledger_entries_account", "account"),
    Index("ix_ledger_entries_saga_step", "saga_id", "step"),
)
"""Double entry: every movement is two rows summing to zero; an account's balance is the
sum of its rows (``wallet:<id>``, ``giftcard:<id>``, and the counter accounts
``clearing:bank`` and ``sales:<purpose>``)."""

billing_inbox = inbox_table(OWNER)
billing_outbox = outbox_table(OWNER)
billing_operations = operations_table(OWNER)
