"""Notification worker tables: client accounts, their channels, delivered notifications."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
from schemas.metadata import metadata

OWNER = "notification"

accounts = Table(
    "notification_accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False, unique=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # ACTIVE | CLOSED
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

channels = Table(
    "notification_channels",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("channel", String(16), primary_key=True),  # email | sms | push
    Column("address", String(254), nullable=False),
    Column("status", String(16), nullable=False),  # ACTIVE | BOUNCED
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("template", String(64), nullable=False),
    Column("channel", String(16), nullable=True),
    Column("recipient", String(254), nullable=False),
    Column("status", String(16), nullable=False),  # SENT | BOUNCED | UNDELIVERED
    Column("detail", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

notification_inbox = inbox_table(OWNER)
notification_outbox = outbox_table(OWNER)
notification_operations = operations_table(OWNER)
