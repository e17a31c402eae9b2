"""``orchestra sagas prune``: the step history of sagas that ended long ago, deleted.

A saga's history (about a dozen lines) is most of what a saga leaves in the database, and
only operators read it (``sagas show`` and ``trace``). The saga's own row stays: its business
key is how a record sent again or replayed is recognised as handled, and the API reads it.
Sagas that ended FAILED keep their history: they wait for an operator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

BATCH = 1_000
"""Sagas per transaction: short locks, and progress kept if the command stops."""

_PRUNABLE = "s.status IN ('COMPLETED', 'ABORTED') AND s.ended_at < :cutoff"
"""Sagas whose history goes: ended long enough ago, and not waiting for an operator."""
_ENDED = text(
    f"SELECT s.id FROM saga_instances s WHERE {_PRUNABLE} AND s.id > :after "
    "ORDER BY s.id LIMIT :batch"
)
_DELETE = text("DELETE FROM saga_history WHERE saga_id = ANY(:ids) RETURNING saga_id")
_COUNT = text(
    "SELECT count(DISTINCT h.saga_id), count(*) FROM saga_history h "
    f"JOIN saga_instances s ON s.id = h.saga_id WHERE {_PRUNABLE}"
)


@dataclass(frozen=True)
class Pruned:
    sagas: int
    lines: int


async def prune_history(engine: AsyncEngine, cutoff: datetime, dry_run: bool) -> Pruned:
    """Delete (or, with ``dry_run``, count) the history of every saga that ended COMPLETED or
    ABORTED before ``cutoff``, a thousand sagas per transaction, in saga id order."""
    if dry_run:
        async with engine.connect() as conn:
            sagas, lines = (await conn.execute(_COUNT, {"cutoff": cutoff})).one()
        return Pruned(sagas, lines)
    after = UUID(int=0)
    sagas = lines = 0
    while True:
        params = {"cutoff": cutoff, "after": after, "batch": BATCH}
        async with engine.begin() as conn:
            ids = list((await conn.execute(_ENDED, params)).scalars())
            if not ids:
                return Pruned(sagas, lines)
            deleted = list((await conn.execute(_DELETE, {"ids": ids})).scalars())
        sagas += len(set(deleted))
        lines += len(deleted)
        after = ids[-1]
