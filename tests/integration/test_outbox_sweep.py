"""The sweeper publishes what a crash left in an outbox, but not what the broker already holds:
a row published just before the crash, not yet deleted, goes out once, not twice. Within one
process a row is published by the relay or by the sweeper, never both, and the rows of another
live process are left to it; a read-back that keeps failing does not hold rows back for good."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.envelope import H_DLQ_REASON, H_DLQ_VALUE_DROPPED, H_ID, Envelope
from orchestrator.db import create_engine
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine import clock
from orchestrator.engine.clock import AlignedClock
from orchestrator.engine.outbox import (
    UNCHECKED_AFTER,
    OutboundMessage,
    OutboxRelay,
    write_outbox,
)
from orchestrator.errors import KafkaUnavailable, MessageTooLarge
from orchestrator.kafka import ensure_topics
from orchestrator.ops.records import Selection, read
from orchestrator.published import published_ids
from orchestrator.publisher import KafkaPublisher
from orchestrator.writers import WriterLease, WriterTaken, new_writer_id
from schemas.sagas import orchestrator_outbox
from tests.integration.helpers import Sent, unique


async def test_a_row_the_broker_holds_is_not_published_again(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    settings = stack.settings()
    topic = unique("sweep")
    await ensure_topics(settings, [topic])
    table = await _outbox(engine)

    def message(key: str) -> OutboundMessage:
        return OutboundMessage(topic, key, Envelope(type="sweep.v1").headers(), b"{}")

    delivered, stranded = message("k-1"), message("k-2")
    publisher = KafkaPublisher(settings, "sweep-test")
    await publisher.start()
    try:
        await publisher.publish([delivered])  # acknowledged, then the process "dies"
        async with engine.begin() as conn:
            await write_outbox(conn, table, [delivered, stranded])
            await conn.execute(
                text(f"UPDATE {table.name} SET created_at = now() - interval '1 minute'")
            )
        relay = OutboxRelay(
            engine, table, publisher, published=functools.partial(published_ids, settings)
        )
        assert await relay.sweep_once() == 2
    finally:
        await publisher.stop()

    copies = Counter(r.headers.get(H_ID) for r in await read(settings, topic, Selection()))
    assert copies == {delivered.headers[H_ID]: 1, stranded.headers[H_ID]: 1}
    async with engine.connect() as conn:
        left = await conn.execute(text(f"SELECT count(*) FROM {table.name}"))
        assert left.scalar_one() == 0


async def test_a_record_stamped_by_a_machine_whose_clock_runs_behind_is_read_back(
    stack: EmbeddedStack, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-back looks for records stamped from a little before the row's ``created_at``,
    the database's time; the publisher stamps them with the database's time too, as its
    process last measured it, so a machine clock ten minutes slow hides nothing."""
    settings = stack.settings()
    topic = unique("skewed")
    await ensure_topics(settings, [topic])
    table = await _outbox(engine)
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC) - timedelta(minutes=10))
    aligned = AlignedClock()
    async with engine.connect() as conn:
        await aligned.align(conn)
    delivered = OutboundMessage(topic, "k-1", Envelope(type="sweep.v1").headers(), b"{}")
    publisher = KafkaPublisher(settings, "skew-test", aligned)
    await publisher.start()
    try:
        async with engine.begin() as conn:
            await write_outbox(conn, table, [delivered])
        await publisher.publish([delivered])  # acknowledged, then the process "dies"
        async with engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE {table.name} SET created_at = created_at - interval '3 seconds'")
            )
        relay = OutboxRelay(
            engine, table, publisher, published=functools.partial(published_ids, settings)
        )
        assert await relay.sweep_once() == 1
    finally:
        await publisher.stop()

    copies = Counter(r.headers.get(H_ID) for r in await read(settings, topic, Selection()))
    assert copies == {delivered.headers[H_ID]: 1}


async def _outbox(engine: AsyncEngine) -> Table:
    """An empty outbox table of the orchestrator's shape, for this test alone."""
    name = unique("sweep_outbox").replace("-", "_")
    async with engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE {name} (LIKE {orchestrator_outbox.name} INCLUDING ALL)")
        )
        return await conn.run_sync(lambda sync: Table(name, MetaData(), autoload_with=sync))


async def _rows_left(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table.name}"))).scalar_one())


class _SlowSent(Sent):
    """A publisher whose broker takes its time to acknowledge."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        await self.release.wait()
        await super().publish(messages)


async def _nothing_held(messages: Sequence[OutboundMessage], since: datetime) -> set[str]:
    return set()


def _message(key: str) -> OutboundMessage:
    return OutboundMessage("sweep.topic", key, Envelope(type="sweep.v1").headers(), b"{}")


async def test_a_row_the_relay_is_publishing_is_left_to_it(engine: AsyncEngine) -> None:
    table = await _outbox(engine)
    sent = _SlowSent()
    relay = OutboxRelay(
        engine, table, sent, sweep_age_s=0.0, delete_delay_s=0.0, published=_nothing_held
    )
    async with engine.begin() as conn:
        rows = await write_outbox(conn, table, [_message("k-1")])
    relay.publish_soon(rows)  # waits on the broker, past the sweep age
    assert await relay.sweep_once() == 0
    sent.release.set()
    await relay.drain()
    assert [m.key for m in sent.messages] == ["k-1"]
    assert await _rows_left(engine, table) == 0


async def test_a_row_the_sweeper_took_is_not_published_by_the_relay(engine: AsyncEngine) -> None:
    table = await _outbox(engine)
    sent = _SlowSent()
    checking = asyncio.Event()

    async def held(messages: Sequence[OutboundMessage], since: datetime) -> set[str]:
        checking.set()  # the sweeper has taken the rows
        return set()

    relay = OutboxRelay(engine, table, sent, sweep_age_s=0.0, delete_delay_s=0.0, published=held)
    async with engine.begin() as conn:
        rows = await write_outbox(conn, table, [_message("k-1")])
    sweeping = asyncio.create_task(relay.sweep_once())
    await asyncio.wait_for(checking.wait(), timeout=10)
    relay.publish_soon(rows)  # a long transaction's rows, handed over after the sweep took them
    sent.release.set()
    assert await sweeping == 1
    await relay.drain()
    assert [m.key for m in sent.messages] == ["k-1"]
    assert await _rows_left(engine, table) == 0


async def test_rows_are_published_unchecked_after_failed_read_backs(engine: AsyncEngine) -> None:
    table = await _outbox(engine)
    sent = Sent()
    attempts = 0

    async def unreadable(messages: Sequence[OutboundMessage], since: datetime) -> set[str]:
        nonlocal attempts
        attempts += 1
        raise KafkaUnavailable("cannot read back")

    relay = OutboxRelay(engine, table, sent, sweep_age_s=0.0, published=unreadable)
    async with engine.begin() as conn:
        await write_outbox(conn, table, [_message("k-1")])
    for _ in range(UNCHECKED_AFTER - 1):
        with pytest.raises(KafkaUnavailable):
            await relay.sweep_once()
        assert sent.messages == []
    assert await relay.sweep_once() == 1
    assert attempts == UNCHECKED_AFTER
    assert [m.key for m in sent.messages] == ["k-1"]
    assert await _rows_left(engine, table) == 0


async def test_rows_of_another_live_process_are_left_to_it_until_it_is_gone(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    """A process that is publishing its rows slowly keeps them: another process's sweeper
    takes them only once the writer's lock is gone (it died) or they are very old."""
    table = await _outbox(engine)
    writer = new_writer_id()
    theirs = create_engine(stack.settings(), writer=writer)
    lease = WriterLease(theirs, writer)
    await lease.hold()
    sent = Sent()

    def sweeper(**options: float) -> OutboxRelay:
        return OutboxRelay(engine, table, sent, sweep_age_s=0.0, published=_nothing_held, **options)

    async def written(key: str) -> None:
        async with theirs.begin() as conn:
            await write_outbox(conn, table, [_message(key)])

    try:
        await written("k-1")
        assert await sweeper().sweep_once() == 0
        assert await sweeper(others_after_s=0.0).sweep_once() == 1
        await written("k-2")
        own = OutboxRelay(
            theirs, table, sent, sweep_age_s=0.0, published=_nothing_held, writer=writer
        )
        assert await own.sweep_once() == 1
        await written("k-3")
        assert await sweeper().sweep_once() == 0
    finally:
        await lease.release()
        await theirs.dispose()
    assert await sweeper().sweep_once() == 1
    assert [m.key for m in sent.messages] == ["k-1", "k-2", "k-3"]
    assert await _rows_left(engine, table) == 0


async def test_a_writer_id_held_by_a_live_process_is_refused(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    writer = new_writer_id()
    first, second = WriterLease(engine, writer), WriterLease(engine, writer)
    await first.hold()
    try:
        with pytest.raises(WriterTaken):
            await second.hold()
    finally:
        await first.release()
    await second.hold()
    await second.release()


class _SizeLimited(Sent):
    """A broker that refuses a message larger than ``limit`` bytes, and takes the others of
    the same request (it answers for each partition apart)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        await super().publish([m for m in messages if len(m.payload) <= self.limit])
        if any(len(m.payload) > self.limit for m in messages):
            raise MessageTooLarge("MessageSizeTooLargeError: [Error 10]")

    async def held(self, messages: Sequence[OutboundMessage], since: datetime) -> set[str]:
        return {m.headers[H_ID] for m in self.messages}


async def test_a_row_refused_for_its_size_holds_no_other_back(engine: AsyncEngine) -> None:
    """A dead letter too large for its topic goes without its value; an outgoing message
    too large stays in the outbox; the rows beside them go out."""
    table = await _outbox(engine)
    sent = _SizeLimited(limit=1_000)
    letter_headers = {**Envelope(type="dlq.v1").headers(), H_DLQ_REASON: "TOO_LARGE"}
    letter = OutboundMessage("orders.submitted.dlq", "o-1", letter_headers, b"x" * 5_000)
    command = OutboundMessage("sweep.topic", "k-big", _message("k").headers, b"y" * 5_000)
    relay = OutboxRelay(engine, table, sent, sweep_age_s=0.0, published=sent.held)
    async with engine.begin() as conn:
        rows = await write_outbox(conn, table, [_message("k-1"), letter, command, _message("k-2")])
    assert await relay.sweep_once() == 3

    assert [m.key for m in sent.messages] == ["k-1", "k-2", "o-1"], "each once"
    lightened = sent.messages[2]
    assert lightened.payload == b""
    assert lightened.headers[H_DLQ_VALUE_DROPPED].startswith("5000 bytes refused")
    assert {k: v for k, v in lightened.headers.items() if k != H_DLQ_VALUE_DROPPED} == (
        letter_headers
    )
    async with engine.connect() as conn:
        left = await conn.execute(text(f"SELECT id FROM {table.name}"))
        assert left.scalars().all() == [rows[2].id]
    async with engine.begin() as conn:
        await write_outbox(conn, table, [_message("k-3")])
    assert await relay.sweep_once() == 1  # the kept row is left alone: the new one goes out
    assert [m.key for m in sent.messages][-1] == "k-3"
    assert await _rows_left(engine, table) == 1


class _TopicGone(Sent):
    """A broker on which one topic was deleted (and is not created again on publish)."""

    def __init__(self, gone: str) -> None:
        super().__init__()
        self.gone = gone

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        for message in messages:
            if message.topic == self.gone:
                raise KafkaUnavailable(f"no topic {self.gone}")
            self.messages.append(message)


async def test_a_topic_the_broker_fails_on_holds_no_other_back(engine: AsyncEngine) -> None:
    """The rows of other topics are published once and deleted; the failing topic's rows
    stay, tried again by each sweep, until the topic is back."""
    table = await _outbox(engine)
    broker = _TopicGone("gone.topic")

    async def nothing_held(messages: Sequence[OutboundMessage], since: datetime) -> set[str]:
        return set()

    relay = OutboxRelay(engine, table, broker, sweep_age_s=0.0, published=nothing_held)

    def message(topic: str, key: str) -> OutboundMessage:
        return OutboundMessage(topic, key, Envelope(type="sweep.v1").headers(), b"{}")

    async with engine.begin() as conn:
        await write_outbox(
            conn,
            table,
            [
                message("a.topic", "a-1"),
                message("gone.topic", "g-1"),
                message("a.topic", "a-2"),
                message("c.topic", "c-1"),
            ],
        )
    assert await relay.sweep_once() == 3
    with pytest.raises(KafkaUnavailable):  # its rows alone left: the sweep fails as a whole
        await relay.sweep_once()
    assert sorted(m.key for m in broker.messages) == ["a-1", "a-2", "c-1"]
    assert await _rows_left(engine, table) == 1

    broker.gone = "none"
    assert await relay.sweep_once() == 1
    assert sorted(m.key for m in broker.messages) == ["a-1", "a-2", "c-1", "g-1"]
    assert await _rows_left(engine, table) == 0
