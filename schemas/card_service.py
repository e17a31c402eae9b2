"""Card service tables behind the HTTP API (seeds 001, 002, 004), owned by card-issuance."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import outbox_table
from schemas.metadata import metadata

registered_cards = Table(
    "registered_cards",
    metadata,
    Column("card_id", UUID(as_uuid=True), primary_key=True),
    Column("number_hash", String(64), nullable=False, unique=True),
    Column("credit_limit_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Seed 004: a card registered by number; only the salted SHA-256 of the number is kept."""

card_purchases = Table(
    "card_purchases",
    metadata,
    Column("purchase_id", UUID(as_uuid=True), primary_key=True),
    Column("card_id", UUID(as_uuid=True), ForeignKey("registered_cards.card_id"), nullable=False),
    Column("description", String(50), nullable=False),
    Column("transaction_date", Date, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_card_purchases_card", "card_id"),
    CheckConstraint("amount_cents > 0", name="ck_card_purchases_positive"),
)
"""Seed 001: purchases on a registered card, in cents."""

service_cards = Table(
    "service_cards",
    metadata,
    Column("card_id", UUID(as_uuid=True), primary_key=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("number_hash", String(64), nullable=False, unique=True),
    Column("masked_number", String(19), nullable=False),
    Column("last_four", String(4), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("type", String(16), nullable=False),  # DEBIT | CREDIT | MULTIPLE
    Column("variant", String(16), nullable=False),  # PHYSICAL | VIRTUAL
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # ACTIVE | BLOCKED
    Column("block_reason", String(32), nullable=True),
    Column("credit_limit_minor", BigInteger, nullable=True),
    Column("available_minor", BigInteger, nullable=True),
    Column("daily_limit_minor", BigInteger, nullable=True),
    Column("transaction_limit_minor", BigInteger, nullable=True),
    Column("international_enabled", Boolean, nullable=False),
    Column("expiry_month", Integer, nullable=False),
    Column("expiry_year", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("available_minor IS NULL OR available_minor >= 0", name="ck_service_cards"),
)
"""Seed 002: cards of the card service, with limits; the number only hashed and masked."""

card_transactions = Table(
    "card_transactions",
    metadata,
    Column("transaction_id", UUID(as_uuid=True), primary_key=True),
    Column("card_id", UUID(as_uuid=True), ForeignKey("service_cards.card_id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("captured_minor", BigInteger, nullable=False, server_default="0"),
    Column("reversed_minor", BigInteger, nullable=False, server_default="0"),
    # what was given back of the captured amount; reversed_minor also counts what was voided of
    # the hold before the capture (NULL on rows captured before this column: reversed_minor)
    Column("refunded_minor", BigInteger, nullable=True),
    Column("held_minor", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False),
    Column("merchant_name", String(100), nullable=False),
    Column("merchant_category", String(4), nullable=False),
    Column("installments", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("authorization_code", String(6), nullable=True),
    Column("decline_reason", String(64), nullable=True),
    Column("three_ds", String(24), nullable=True),  # CHALLENGE_REQUIRED | AUTHENTICATED | FAILED
    Column("return_url", String(500), nullable=True),
    Column("invoice_id", UUID(as_uuid=True), nullable=True),
    # when the amount was approved (a 3-D Secure one later than created): the daily limit's day
    Column("authorized_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_card_transactions_card", "card_id", "created_at"),
)
"""Seed 002: authorizations and their capture, reversal, 3-D Secure state."""

invoice_payments = Table(
    "invoice_payments",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("card_id", UUID(as_uuid=True), ForeignKey("service_cards.card_id"), nullable=False),
    Column("source_account_id", String(128), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # PENDING | PAID | REJECTED
    Column("reason", String(64), nullable=True),
    Column("saga_id", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Seed 002: invoice payments; each runs as a saga (billing debits, the limit is restored)."""

virtual_card_requests = Table(
    "virtual_card_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
"""Seed 000: requests accepted by ``POST /v1/cards/virtual`` (their saga may start later)."""

API = "api"
api_outbox = outbox_table(API)
"""The records the HTTP API starts sagas with, committed with the request's own rows."""
