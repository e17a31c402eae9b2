"""The orchestrator's tables: saga instances and their history."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from schemas.messaging import outbox_table
from schemas.metadata import metadata

OWNER = "orchestrator"

saga_instances = Table(
    "saga_instances",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("saga_type", String(64), nullable=False),
    Column("business_key", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("compensating", Boolean, nullable=False, server_default=text("false")),
    Column("pending_command_id", String(64), nullable=True),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("next_action_at", DateTime(timezone=True), nullable=True),
    Column("data", JSONB, nullable=False),
    Column("reason", String(64), nullable=True),
    Column("correlation_id", String(200), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("request_digest", String(40), nullable=True),
    UniqueConstraint("saga_type", "business_key", name="uq_saga_instances_business_key"),
    Index(
        "ix_saga_instances_due",
        "next_action_at",
        postgresql_where=text("next_action_at IS NOT NULL"),
    ),
    Index("ix_saga_instances_status", "saga_type", "status"),
)

saga_history = Table(
    "saga_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "saga_id",
        UUID(as_uuid=True),
        ForeignKey("saga_instances.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),
    Column("step", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("message_id", String(200), nullable=True),
    Column("message_type", String(200), nullable=True),
    Column("topic", String(249), nullable=True),
    Column("detail", Text, nullable=True),
    Column("actor", String(128), nullable=True),
    Index("ix_saga_history_saga", "saga_id", "id"),
)

orchestrator_outbox = outbox_table(OWNER)
