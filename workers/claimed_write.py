"""One statement claims a batch of commands in the inbox and writes their replies.

For handlers that decide from the command alone (``runtime.Decider``): the replies are
computed before the statement, and the statement writes only those whose command it
claimed, so a redelivered command leaves no second reply. A single statement is atomic
without BEGIN and COMMIT: one round trip to PostgreSQL per batch instead of four.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from orchestrator.engine.outbox import (
    OutboundMessage,
    OutboxRow,
    outbox_columns,
    owned_outbox_insert,
)


@dataclass(frozen=True)
class Claimed:
    fresh: set[str]
    """The command ids that were not in the inbox yet: the ones answered now."""
    rows: list[OutboxRow]
    """The outbox rows written, to publish after the statement."""


@functools.cache
def _statement(inbox: str, outbox: str) -> str:
    """Fixed per worker: prepared once per connection (asyncpg's statement cache)."""
    return f"""
        WITH claimed AS (
            INSERT INTO {inbox} (message_id) SELECT unnest($1::text[])
            ON CONFLICT DO NOTHING
            RETURNING message_id
        ), outbox AS ({owned_outbox_insert(outbox, 2, "text", "SELECT message_id FROM claimed")}
        )
        SELECT ARRAY(SELECT message_id FROM claimed), ARRAY(SELECT id FROM outbox ORDER BY id)
        """


async def claim_and_write(
    driver: Any,
    inbox: Table,
    outbox: Table,
    command_ids: Sequence[str],
    messages: Sequence[tuple[OutboundMessage, str | None]],
) -> Claimed:
    """Claim ``command_ids`` and write ``messages``, each (message, the command it answers,
    or None to write it whatever is claimed), on asyncpg's connection
    (``db.driver_connection``)."""
    columns = outbox_columns([m for m, _ in messages])
    claimed, ids = await driver.fetchrow(
        _statement(inbox.name, outbox.name),
        sorted(command_ids),  # key order, as every batch claims: no cycle on the inbox's key
        [claim for _, claim in messages],
        columns["topics"],
        columns["keys"],
        columns["headers"],
        columns["payloads"],
    )
    fresh = set(claimed)
    kept = [m for m, claim in messages if claim is None or claim in fresh]
    # ids come from the outbox's sequence in insertion order, which is ``m.n`` order
    return Claimed(fresh, [OutboxRow(id_, m) for id_, m in zip(ids, kept, strict=True)])
