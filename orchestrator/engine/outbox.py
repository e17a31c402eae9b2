"""Transactional outbox: write messages with the state change, publish them after commit.

A handler inserts its outgoing messages into its owner's outbox table inside the same
transaction as its state change. Right after commit the relay publishes exactly those
rows; the rows acknowledged by the broker are deleted a few milliseconds later, many
batches in one statement. If the process dies between commit and delete, the sweeper
finds the rows later and publishes those the broker does not hold yet (it reads the topics
back, ``orchestrator.published``): a message goes out never zero times and, but for a
publish still under way a minute after its commit, once. A sweeper leaves the rows of another
live process to it (``orchestrator.writers``). Consumers deduplicate all the same (inbox by
message id, saga by pending command id).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import structlog
from sqlalchemy import Table, TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.base import Message
from events.envelope import H_DLQ_REASON, H_DLQ_VALUE_DROPPED, H_ID, Envelope
from orchestrator.errors import MessageTooLarge, error_of
from orchestrator.writers import LIVE_WRITERS

log = structlog.get_logger(__name__)


UNCHECKED_AFTER = 3
"""Failed read-backs in a row after which the sweeper publishes without one."""


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    key: str | None
    headers: dict[str, str]
    payload: bytes

    @classmethod
    def of(cls, topic: str, key: str | None, envelope: Envelope, body: Message) -> OutboundMessage:
        return cls(topic, key, envelope.headers(), body.to_bytes())


def without_value(letter: OutboundMessage, refusal: str) -> OutboundMessage | None:
    """A dead letter refused for its size, lightened to its headers: the refused record
    stays in its own topic, where the letter points. None for any other message, which
    cannot go without its payload."""
    if H_DLQ_REASON not in letter.headers:
        return None
    why = f"{len(letter.payload)} bytes refused: {refusal}"[:500]
    return OutboundMessage(
        letter.topic, letter.key, {**letter.headers, H_DLQ_VALUE_DROPPED: why}, b""
    )


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message: OutboundMessage


@dataclass(frozen=True)
class _Swept:
    """What a sweep did with one topic's rows."""

    published: int = 0
    held: int = 0
    """Rows the broker held already: deleted, not published again."""
    refused: frozenset[int] = frozenset()
    """Rows refused for their size: left alone until a restart."""
    kept: frozenset[int] = frozenset()
    """Rows of a topic the sweep failed on: tried again by the next sweep."""


class Publisher(Protocol):
    async def publish(self, messages: Sequence[OutboundMessage]) -> None: ...


PublishedCheck = Callable[[Sequence[OutboundMessage], datetime], Awaitable[set[str]]]
"""The ``ce_id`` of those messages the broker holds among the records stamped at or after the
given time: ``orchestrator.published.published_ids``."""


@dataclass(frozen=True)
class _Statements:
    insert: TextClause
    delete: TextClause


@functools.cache
def _statements(table: Table) -> _Statements:
    """Fixed statements per outbox: prepared once per connection, never recompiled."""
    return _Statements(
        insert=text(
            f"""
            INSERT INTO {table.name} (topic, key, headers, payload)
            SELECT m.topic, m.key, CAST(m.headers AS jsonb), m.payload
            FROM unnest(
                CAST(:topics AS text[]), CAST(:keys AS text[]),
                CAST(:headers AS text[]), CAST(:payloads AS bytea[])
            ) WITH ORDINALITY AS m(topic, key, headers, payload, n)
            ORDER BY m.n
            RETURNING id
            """
        ),
        delete=text(f"DELETE FROM {table.name} WHERE id = ANY(CAST(:ids AS bigint[]))"),
    )


def owned_outbox_insert(outbox: str, first: int, owner_type: str, owners: str) -> str:
    """The outbox insert of a one-statement write (``batch_write``, ``workers.claimed_write``):
    the messages as arrays, parameters ``$first`` to ``$first + 4`` (owner, then the columns
    ``outbox_columns`` gives), each written if its owner is NULL or among ``owners`` (a
    subquery on the statement's earlier writes). Returns the ids, in message order."""
    p = [f"${first + i}" for i in range(5)]
    return f"""
            INSERT INTO {outbox} (topic, key, headers, payload)
            SELECT m.topic, m.key, CAST(m.headers AS jsonb), m.payload
            FROM unnest(
                {p[0]}::{owner_type}[], {p[1]}::text[], {p[2]}::text[], {p[3]}::text[],
                {p[4]}::bytea[]
            ) WITH ORDINALITY AS m(owner, topic, key, headers, payload, n)
            WHERE m.owner IS NULL OR m.owner IN ({owners})
            ORDER BY m.n
            RETURNING id"""


def outbox_columns(messages: Sequence[OutboundMessage]) -> dict[str, list[Any]]:
    """The array parameters an outbox insert takes, one element per message."""
    return {
        "topics": [m.topic for m in messages],
        "keys": [m.key for m in messages],
        "headers": [orjson.dumps(m.headers).decode() for m in messages],
        "payloads": [m.payload for m in messages],
    }


async def write_outbox(
    conn: AsyncConnection, table: Table, messages: Sequence[OutboundMessage]
) -> list[OutboxRow]:
    """Insert ``messages`` in the caller's transaction; returns the rows to publish after commit."""
    if not messages:
        return []
    result = await conn.execute(_statements(table).insert, outbox_columns(messages))
    ids = [row[0] for row in result]
    return [OutboxRow(id_, message) for id_, message in zip(ids, messages, strict=True)]


class OutboxRelay:
    """Publishes committed outbox rows of one owner and sweeps what a crash left behind."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        publisher: Publisher,
        sweep_interval_s: float = 1.0,
        sweep_age_s: float = 2.0,
        sweep_batch: int = 1_000,
        max_in_flight: int = 64,
        delete_delay_s: float = 0.05,
        published: PublishedCheck | None = None,
        writer: int | None = None,
        others_after_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table = table
        self.publisher = publisher
        self.sweep_interval_s = sweep_interval_s
        self.sweep_age_s = sweep_age_s
        self.sweep_batch = sweep_batch
        self.delete_delay_s = delete_delay_s
        self.published = published
        self.writer = writer
        self.others_after_s = others_after_s
        self._in_flight: set[asyncio.Task[None]] = set()
        self._publishing: set[int] = set()
        """Ids of the rows this relay is publishing: the sweeper leaves them alone."""
        self._sweeping: set[int] = set()
        """Ids of the rows the sweeper took: publishing them is left to it."""
        self._failed_checks: dict[str, int] = {}
        """Read-backs failed in a row, by topic."""
        self._refused: set[int] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._published: list[int] = []
        self._deleter: asyncio.Task[None] | None = None

    def publish_soon(self, rows: Sequence[OutboxRow]) -> None:
        """Publish committed rows in the background, so the consumer can take its next batch.

        Safe because the rows are already durable: if this never completes, the sweeper
        publishes them. Order per key holds, since a saga's next message is only written
        after the reply to this one, which needs this one delivered first.
        """
        rows = [row for row in rows if row.id not in self._sweeping]
        if not rows:
            return
        ids = {row.id for row in rows}
        self._publishing |= ids
        task = asyncio.create_task(self._publish_in_slot(rows, ids))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _publish_in_slot(self, rows: Sequence[OutboxRow], ids: set[int]) -> None:
        try:
            async with self._slots:
                await self.publish(rows)
        finally:
            self._publishing -= ids

    async def drain(self) -> None:
        """Wait for background publishing and delete what it published (at a graceful stop)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._deleter is not None:  # a delete already running has taken its ids along
            await asyncio.gather(self._deleter, return_exceptions=True)
        await self.delete_published()

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        """Publish rows just committed; once acknowledged they are deleted soon after, with
        the rows of other batches. A failure leaves them to the sweeper."""
        if not rows:
            return
        try:
            await self.publisher.publish([row.message for row in rows])
        except Exception as exc:  # the rows stay in the outbox: the sweeper retries them
            log.warning(
                "outbox publish failed; left to the sweeper",
                table=self.table.name,
                error=error_of(exc),
            )
            return
        self._published.extend(row.id for row in rows)
        if self._deleter is None or self._deleter.done():
            self._deleter = asyncio.create_task(self._delete_soon())

    async def _delete_soon(self) -> None:
        await asyncio.sleep(self.delete_delay_s)
        await self.delete_published()

    async def delete_published(self) -> None:
        """Delete every row published so far, in one statement without BEGIN/COMMIT. If that
        fails the ids are kept for the next attempt; a crash before it only means the sweeper
        publishes them again, and consumers deduplicate."""
        ids, self._published = self._published, []
        if not ids:
            return
        try:
            async with self._autocommit.connect() as conn:
                await conn.execute(_statements(self.table).delete, {"ids": ids})
        except Exception as exc:
            self._published[:0] = ids
            log.warning(
                "outbox delete failed; kept for later", table=self.table.name, error=error_of(exc)
            )

    async def sweep_once(self) -> int:
        """Publish rows older than ``sweep_age_s`` (left by a crash or a failed publish) that
        the broker does not hold yet, and delete them; returns how many rows it took.

        Walks the outbox in id order, oldest first, with no index on ``created_at``: the
        table holds only the rows of the last moments, so the walk is short, and no insert
        pays for a second index. Rows this relay is publishing, or has published and not yet
        deleted, are left out; the rows taken are the sweeper's until it ends (``publish_soon``
        leaves them), so one process never publishes a row twice. The rows of another live
        process (``orchestrator.writers``) are left to it until they are ``others_after_s``
        old: it may be publishing them."""
        await self.delete_published()
        table = self.table
        async with self.engine.begin() as conn:
            result = await conn.execute(
                select(
                    table.c.id,
                    table.c.topic,
                    table.c.key,
                    table.c.headers,
                    table.c.payload,
                    table.c.created_at,
                )
                .where(table.c.created_at < text(f"now() - interval '{self.sweep_age_s} seconds'"))
                .where(text("id <> ALL(CAST(:ours AS bigint[]))").bindparams(ours=self._ours()))
                .where(self._ownerless())
                .order_by(table.c.id)
                .limit(self.sweep_batch)
                .with_for_update(skip_locked=True)
            )
            ours = self._ours()  # rows committed and handed to the relay while we selected
            found = [r for r in result if r.id not in ours]
            if not found:
                return 0
            taken = {r.id for r in found}
            self._sweeping |= taken
            try:
                rows = [
                    OutboxRow(
                        r.id, OutboundMessage(r.topic, r.key, dict(r.headers), bytes(r.payload))
                    )
                    for r in found
                ]
                oldest = min(r.created_at for r in found)
                swept = await self._sweep_by_topic(rows, oldest)
                refused = set().union(*(s.refused for s in swept))
                kept = set().union(*(s.kept for s in swept))
                await conn.execute(
                    _statements(table).delete, {"ids": sorted(taken - refused - kept)}
                )
                self._refused |= refused
            finally:
                self._sweeping -= taken
        log.info(
            "outbox swept",
            table=table.name,
            published=sum(s.published for s in swept),
            held=sum(s.held for s in swept),
            refused=len(refused),
            kept=len(kept),
        )
        return len(rows) - len(refused) - len(kept)

    async def _sweep_by_topic(self, rows: Sequence[OutboxRow], oldest: datetime) -> list[_Swept]:
        """Each topic's rows checked and published apart: a topic the broker fails on (gone,
        refused) keeps its rows for the next sweep and holds no other topic's back, and the
        rows published are deleted, not published again with it. Fails, publishing nothing,
        only when every topic failed (the broker is away)."""
        by_topic: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_topic.setdefault(row.message.topic, []).append(row)
        outcomes = await asyncio.gather(
            *(self._sweep_topic(topic, group, oldest) for topic, group in by_topic.items()),
            return_exceptions=True,
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for error in failed:
            if not isinstance(error, Exception) or len(failed) == len(outcomes):
                raise error
        swept: list[_Swept] = []
        for (topic, topic_rows), outcome in zip(by_topic.items(), outcomes, strict=True):
            if isinstance(outcome, _Swept):
                swept.append(outcome)
                continue
            log.warning(
                "outbox rows of a topic not published; kept for the next sweep",
                table=self.table.name,
                topic=topic,
                rows=len(topic_rows),
                error=error_of(outcome),
            )
            swept.append(_Swept(kept=frozenset(row.id for row in topic_rows)))
        return swept

    async def _sweep_topic(self, topic: str, rows: Sequence[OutboxRow], oldest: datetime) -> _Swept:
        fresh = await self._not_yet_published(topic, rows, oldest)
        refused = await self._publish_swept(topic, fresh, oldest)
        return _Swept(
            published=len(fresh) - len(refused),
            held=len(rows) - len(fresh),
            refused=frozenset(refused),
        )

    async def _publish_swept(
        self, topic: str, rows: Sequence[OutboxRow], oldest: datetime
    ) -> set[int]:
        """Publish the rows; if the broker refuses one for its size, each alone, so that it
        holds no other back (the broker acknowledges partitions apart: those it holds already
        are read back and left out). A dead letter so refused goes without its value; any
        other such row stays in the outbox, left alone by this process from then on (its ids
        are returned), and is logged as an error."""
        try:
            await self.publisher.publish([row.message for row in rows])
            return set()
        except MessageTooLarge:
            rows = await self._not_yet_published(topic, rows, oldest)
        refused: set[int] = set()
        for row in rows:
            try:
                await self.publisher.publish([row.message])
            except MessageTooLarge as exc:
                where = {"table": self.table.name, "id": row.id, "topic": row.message.topic}
                if await self._sent_without_value(row.message, str(exc)):
                    log.warning("dead letter sent without its value", **where, error=str(exc))
                else:
                    log.error("outbox row refused for its size; kept", **where, error=str(exc))
                    refused.add(row.id)
        return refused

    async def _sent_without_value(self, message: OutboundMessage, refusal: str) -> bool:
        """Whether the message, a dead letter, went out lightened to its headers."""
        lighter = without_value(message, refusal)
        if lighter is None:
            return False
        try:
            await self.publisher.publish([lighter])
        except MessageTooLarge:
            return False
        return True

    def _ownerless(self) -> TextClause:
        """Rows no other live process may be publishing."""
        return text(
            "(writer IS NULL OR writer = CAST(:me AS integer)"
            f" OR created_at < now() - interval '{self.others_after_s} seconds'"
            f" OR writer <> ALL({LIVE_WRITERS}))"
        ).bindparams(me=self.writer)

    def _ours(self) -> list[int]:
        """Rows the sweeper leaves out: this relay's, and those the broker refused for their
        size (until a restart, after the topic's limit is raised, tries them again)."""
        return sorted(self._publishing.union(self._published, self._refused))

    async def _not_yet_published(
        self, topic: str, rows: Sequence[OutboxRow], oldest: datetime
    ) -> Sequence[OutboxRow]:
        """The rows of a topic whose message the broker does not hold (all of them, with no
        check).

        A check that fails fails the topic's sweep, and its rows wait; after
        ``UNCHECKED_AFTER`` failures in a row they are published unchecked: a copy too many
        is better than a saga that never moves on."""
        if self.published is None:
            return rows
        try:
            held = await self.published([row.message for row in rows], oldest)
        except Exception as exc:
            failures = self._failed_checks[topic] = self._failed_checks.get(topic, 0) + 1
            if failures < UNCHECKED_AFTER:
                raise
            log.warning(
                "outbox rows published without checking the broker",
                table=self.table.name,
                rows=len(rows),
                error=error_of(exc),
            )
            return rows
        self._failed_checks.pop(topic, None)
        return [row for row in rows if row.message.headers.get(H_ID) not in held]

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.sweep_once() == self.sweep_batch and not stop.is_set():
                    pass
            except Exception as exc:  # keep sweeping; the rows stay until published
                log.warning("outbox sweep failed", table=self.table.name, error=error_of(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.sweep_interval_s)
