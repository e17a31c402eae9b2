"""The consume loop on the embedded broker: a consumer fetches its next batch only once the
one in hand is handled, so that batch takes everything that arrived meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.records import RawRecord
from orchestrator.kafka import client_kwargs, ensure_topics
from orchestrator.settings import Settings
from orchestrator.wiring import OrchestraBroker, subscribe_batches
from tests.integration.helpers import unique


async def _batches_while_busy(settings: Settings) -> list[list[bytes]]:
    """One record, then twenty more while its batch is being handled; the batches seen."""
    topic = unique("loop")
    await ensure_topics(settings, [topic])
    batches: list[list[bytes]] = []
    first_in_hand, all_sent, all_in = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(records: Sequence[RawRecord]) -> None:
        batches.append([r.value for r in records])
        if sum(map(len, batches)) >= 21:
            all_in.set()
        if len(batches) == 1:  # busy until the twenty are sent, however slow the machine
            first_in_hand.set()
            await asyncio.wait_for(all_sent.wait(), timeout=60)

    broker = OrchestraBroker(settings.bootstrap_servers)
    subscribe_batches(broker, [topic], unique("g"), settings, handler, title="t", description="d")
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=0)
    await broker.start()
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first")
        await asyncio.wait_for(first_in_hand.wait(), timeout=30)
        for n in range(20):
            await producer.send_and_wait(topic, str(n).encode())
            await asyncio.sleep(0.005)
        all_sent.set()
        await asyncio.wait_for(all_in.wait(), timeout=30)
    finally:
        await producer.stop()
        await broker.stop()
    return batches


async def test_records_arriving_during_a_batch_come_in_one_batch_after_it(
    stack: EmbeddedStack,
) -> None:
    batches = await _batches_while_busy(stack.settings())
    assert batches == [[b"first"], [str(n).encode() for n in range(20)]]


async def test_with_prefetch_the_next_fetch_goes_out_during_the_batch(
    stack: EmbeddedStack,
) -> None:
    batches = await _batches_while_busy(stack.settings(consumer_prefetch=True))
    assert batches[0] == [b"first"]
    assert len(batches) > 2  # the fetch sent during the first batch took only the first few
    assert [v for batch in batches[1:] for v in batch] == [str(n).encode() for n in range(20)]
