"""Delivery worker tables: pickup points and courier companies, their updates, delivery cases."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
from schemas.metadata import metadata

OWNER = "delivery"

delivery_points = Table(
    "delivery_points",
    metadata,
    Column("point_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # pickup | courier
    Column("name", String(200), nullable=False),
    Column("capacity", BigInteger, nullable=False),
    Column("price_minor", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("capacity >= 0", name="ck_delivery_points_capacity"),
)

point_updates = Table(
    "delivery_point_updates",
    metadata,
    Column("update_key", String(300), primary_key=True),
    Column("point_id", String(128), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

delivery_cases = Table(
    "delivery_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("order_id", String(128), nullable=False),
    Column("point_id", String(128), nullable=False),
    Column("method", String(16), nullable=False),
    Column("address", String(500), nullable=True),
    Column("status", String(16), nullable=False),  # OPEN | CANCELLED
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

delivery_inbox = inbox_table(OWNER)
delivery_outbox = outbox_table(OWNER)
delivery_operations = operations_table(OWNER)
