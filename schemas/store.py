"""Store worker tables: products, stock per SKU and warehouse, reservations, picking cases."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from schemas.messaging import inbox_table, operations_table, outbox_table
from schemas.metadata import metadata

OWNER = "store"

products = Table(
    "products",
    metadata,
    Column("sku", String(128), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("price_minor", BigInteger, nullable=True),
    Column("discount_percent", Float, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

stock = Table(
    "stock",
    metadata,
    Column("sku", String(128), primary_key=True),
    Column("warehouse_id", String(128), primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("available >= 0 AND reserved >= 0", name="ck_stock_not_negative"),
)

stock_receipts = Table(
    "stock_receipts",
    metadata,
    Column("receipt_key", String(200), primary_key=True),
    Column("sku", String(128), nullable=False),
    Column("warehouse_id", String(128), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

reservations = Table(
    "stock_reservations",
    metadata,
    Column("saga_id", UUID(as_uuid=True), primary_key=True),
    Column("sku", String(128), primary_key=True),
    Column("warehouse_id", String(128), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # RESERVED | RELEASED
)

picking_cases = Table(
    "picking_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("order_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # OPEN | CANCELLED
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

store_inbox = inbox_table(OWNER)
store_outbox = outbox_table(OWNER)
store_operations = operations_table(OWNER)
