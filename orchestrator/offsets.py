"""Offset commits off the consumer's path: the next batch does not wait for the broker.

A consumer hands the committer its positions after each batch it has handled (its write
committed), before it polls again: positions, not the last record's offset plus one, step
over what is not a record (transaction markers), as Kafka's own commit does. One request
at a time is in flight, at most one per ``interval_s`` (Kafka's auto-commit has 5 s); what
arrives meanwhile is merged, so under load one request covers many batches. Only handled
batches are ever committed. A commit lost to a crash or a rebalance means those records are
delivered again, and every handler deduplicates them (inbox by message id, sagas by version
and pending command).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog
from aiokafka import TopicPartition

from orchestrator.errors import error_of

log = structlog.get_logger(__name__)


class Committing(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class OffsetCommitter:
    """Commits one consumer group's offsets in the background."""

    def __init__(self, group_id: str, interval_s: float = 0.0) -> None:
        self.group_id = group_id
        self.interval_s = interval_s
        self.closing = False
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_commit = -interval_s
        self._hurry = asyncio.Event()

    def handled(
        self, consumer: Committing, positions: dict[TopicPartition, int]
    ) -> asyncio.Task[None]:
        """Commit ``positions`` (the consumer's, right after a handled batch) soon; returns
        the task that will, to await at a stop."""
        pending = self._pending
        for partition, offset in positions.items():
            if offset >= pending.get(partition, 0):
                pending[partition] = offset
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit(consumer))
        return self._task

    async def _commit(self, consumer: Committing) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_commit + self.interval_s - loop.time()
            if wait > 0 and not self.closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), wait)
            self._last_commit = loop.time()
            offsets, self._pending = self._pending, {}
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # redelivered and deduplicated; nothing is lost
                log.warning("offset commit failed", group=self.group_id, error=error_of(exc))

    async def flush(self) -> None:
        """At a stop: from now on handlers wait for their commit; wait for the one running."""
        self.closing = True
        self._hurry.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
