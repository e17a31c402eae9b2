"""The client an upstream system's role is played with (``send --wait``, the demo): a record
on a watched topic whose key or header is not UTF-8 is collected, not fatal to its batch."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack


async def test_a_binary_key_or_header_is_collected_readably_with_the_records_after_it(
    stack: EmbeddedStack,
) -> None:
    topic = f"client-{uuid.uuid4().hex[:12]}"
    async with UpstreamClient(stack.settings(), watch=[topic], publishes=[topic]) as client:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic,
                b"binary",
                key=b"\x00\xff\xfe",
                headers=[("schema", b"\xff\x01")],
                partition=0,
            )
            await producer.send_and_wait(topic, b"text", key=b"k-1", partition=0)
        finally:
            await producer.stop()
        first = await asyncio.wait_for(client.received.get(), 30)
        second = await asyncio.wait_for(client.received.get(), 30)

    assert (first.key, first.headers, first.value) == (
        "\x00\ufffd\ufffd",
        {"schema": "\ufffd\x01"},
        b"binary",
    )
    assert (second.key, second.value) == ("k-1", b"text")
