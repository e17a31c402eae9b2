"""Outbox and inbox tables, one pair per owner (the orchestrator and each worker).

The outbox holds messages written in the same transaction as the state change that
caused them; the relay publishes and deletes them after commit. The inbox holds the id
of every command a worker has handled, written in the same transaction as its effect,
so a redelivered command hits the primary key and is skipped.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from schemas.metadata import metadata

_outboxes: dict[str, Table] = {}
_inboxes: dict[str, Table] = {}
_operations: dict[str, Table] = {}


def _table_prefix(owner: str) -> str:
    return owner.replace("-", "_")


OUTBOX_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}
"""Every outbox row is deleted within milliseconds of its insert: vacuum after a fixed
number of them, not a fraction of a table that is almost always empty, so the sweeper's
index scans do not walk an ever longer run of dead entries."""


WRITER_SETTING = "orchestra.writer"
"""The connection setting that names the process writing (``orchestrator.writers``)."""


def outbox_table(owner: str) -> Table:
    """The outbox of ``owner`` (created on first use, then shared)."""
    if owner not in _outboxes:
        name = f"{_table_prefix(owner)}_outbox"
        _outboxes[owner] = Table(
            name,
            metadata,
            Column("id", BigInteger, Identity(), primary_key=True),
            Column("topic", String(249), nullable=False),
            Column("key", Text, nullable=True),
            Column("headers", JSONB, nullable=False),
            Column("payload", LargeBinary, nullable=False),
            Column(
                "created_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
            Column(
                "writer",
                Integer,
                nullable=True,
                server_default=text(
                    f"NULLIF(current_setting('{WRITER_SETTING}', true), '')::integer"
                ),
            ),
            postgresql_with=OUTBOX_STORAGE,
        )
    return _outboxes[owner]


def inbox_table(owner: str) -> Table:
    """The processed-message table of ``owner``."""
    if owner not in _inboxes:
        name = f"{_table_prefix(owner)}_inbox"
        _inboxes[owner] = Table(
            name,
            metadata,
            Column("message_id", String(200), primary_key=True),
            Column(
                "received_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
        )
    return _inboxes[owner]


def operations_table(owner: str) -> Table:
    """What ``owner`` did for each saga step: the reply it gave, and whether it was undone.

    A retried command (a new message id for the same saga step) finds its row and gets
    the same reply; a compensation that arrives first leaves an UNDONE tombstone, so the
    late command is refused instead of taking effect after its own undo.
    """
    if owner not in _operations:
        name = f"{_table_prefix(owner)}_operations"
        _operations[owner] = Table(
            name,
            metadata,
            Column("saga_id", UUID(as_uuid=True), primary_key=True),
            Column("step", String(100), primary_key=True),
            Column("status", String(16), nullable=False),  # DONE | REFUSED | UNDONE
            Column("reply", JSONB, nullable=True),
            Column(
                "created_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
            Column(
                "updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()
            ),
        )
    return _operations[owner]
