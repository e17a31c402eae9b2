"""The sweeper publishes what a crash left in an outbox, but not what the broker already holds:
a row published just before the crash, not yet deleted, goes out once, not twice."""

from __future__ import annotations

import functools
from collections import Counter

from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from events.envelope import H_ID, Envelope
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay, write_outbox
from orchestrator.kafka import ensure_topics
from orchestrator.ops.records import Selection, read
from orchestrator.published import published_ids
from orchestrator.publisher import KafkaPublisher
from schemas.sagas import orchestrator_outbox
from tests.integration.helpers import unique


async def test_a_row_the_broker_holds_is_not_published_again(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    settings = stack.settings()
    topic = unique("sweep")
    await ensure_topics(settings, [topic])
    name = unique("sweep_outbox").replace("-", "_")
    async with engine.begin() as conn:
        await conn.execute(
            text(f"CREATE TABLE {name} (LIKE {orchestrator_outbox.name} INCLUDING ALL)")
        )
        table = await conn.run_sync(lambda sync: Table(name, MetaData(), autoload_with=sync))

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
