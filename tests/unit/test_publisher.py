"""The outbox publisher's batching, against a fake producer with aiokafka's batch contract:
a handed-over batch stays open until the producer takes it for a request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from orchestrator.engine.clock import utc_now
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.errors import MessageTooLarge
from orchestrator.publisher import KafkaPublisher
from orchestrator.settings import Settings


@dataclass
class Batch:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    stamps: list[int | None] = field(default_factory=list)
    closed: bool = False

    def append(
        self, *, key: bytes | None, value: bytes, timestamp: int | None, headers: Any
    ) -> Any:
        if self.closed:
            return None
        self.records.append((key, value))
        self.stamps.append(timestamp)
        return object()

    def close(self) -> None:
        self.closed = True


class Cluster:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


class Client:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.cluster = Cluster(partitions)


class Producer:
    """Takes a handed-over batch for a request only when ``take`` is called."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.client = Client(partitions)
        self.handed: list[tuple[str, int, Batch, asyncio.Future[None]]] = []
        self.fail_next = False

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return self.client.cluster.partitions[topic]

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next = False
            raise KafkaTimeoutError()
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handed.append((topic, partition, batch, acked))
        return acked

    def take_and_ack(self) -> list[tuple[str, int, list[tuple[bytes | None, bytes]]]]:
        """Closes every handed-over batch (a request took it) and acknowledges it."""
        taken = []
        for topic, partition, batch, acked in self.handed:
            batch.close()
            if not acked.done():
                acked.set_result(None)
            taken.append((topic, partition, batch.records))
        self.handed.clear()
        return taken


def message(topic: str, key: str, n: int) -> OutboundMessage:
    return OutboundMessage(topic, key, {"ce_id": f"m-{n}"}, f"{n}".encode())


def publisher(producer: Producer, clock: Callable[[], datetime] = utc_now) -> KafkaPublisher:
    publisher = KafkaPublisher(Settings(), "test", clock)
    publisher._producer = producer  # type: ignore[assignment]
    return publisher


async def test_messages_published_while_a_batch_waits_join_it_in_order() -> None:
    producer = Producer({"t": {0}})
    pub = publisher(producer)
    first = asyncio.create_task(pub.publish([message("t", "a", 1), message("t", "b", 2)]))
    second = asyncio.create_task(pub.publish([message("t", "c", 3)]))
    await asyncio.sleep(0.01)
    assert not first.done()
    assert not second.done()
    taken = producer.take_and_ack()
    await asyncio.gather(first, second)
    assert taken == [("t", 0, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])]


async def test_a_message_after_the_batch_left_goes_in_a_new_batch() -> None:
    producer = Producer({"t": {0}})
    pub = publisher(producer)
    first = asyncio.create_task(pub.publish([message("t", "a", 1)]))
    await asyncio.sleep(0.01)
    assert producer.take_and_ack() == [("t", 0, [(b"a", b"1")])]
    await first
    second = asyncio.create_task(pub.publish([message("t", "b", 2)]))
    await asyncio.sleep(0.01)
    assert producer.take_and_ack() == [("t", 0, [(b"b", b"2")])]
    await second


async def test_an_idempotent_producers_batch_takes_no_message_once_handed_over() -> None:
    """aiokafka numbers an idempotent batch's records when it takes the batch, before it
    closes it: a message joining then would go out unnumbered, and Kafka would refuse the
    partition's every later batch (OUT_OF_ORDER_SEQUENCE_NUMBER)."""
    producer = Producer({"t": {0}})
    pub = KafkaPublisher(Settings(kafka_idempotent_producer=True), "test")
    pub._producer = producer  # type: ignore[assignment]
    first = asyncio.create_task(pub.publish([message("t", "a", 1), message("t", "b", 2)]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(pub.publish([message("t", "c", 3)]))
    await asyncio.sleep(0.01)
    taken = producer.take_and_ack()
    await asyncio.gather(first, second)
    assert taken == [("t", 0, [(b"a", b"1"), (b"b", b"2")]), ("t", 0, [(b"c", b"3")])]


async def test_keys_go_to_the_partition_the_producer_would_pick() -> None:
    partitions = [0, 1, 2, 3]
    producer = Producer({"t": set(partitions)})
    pub = publisher(producer)
    keys = [f"saga-{n}" for n in range(20)]
    task = asyncio.create_task(pub.publish([message("t", k, n) for n, k in enumerate(keys)]))
    await asyncio.sleep(0.01)
    taken = producer.take_and_ack()
    await task
    placed = {key.decode(): p for _, p, records in taken for key, _ in records if key}
    expected = {k: DefaultPartitioner()(k.encode(), partitions, partitions) for k in keys}
    assert placed == expected


async def test_a_failed_hand_over_fails_its_callers_and_the_next_publish_starts_afresh() -> None:
    producer = Producer({"t": {0}})
    pub = publisher(producer)
    producer.fail_next = True
    with pytest.raises(KafkaTimeoutError):
        await pub.publish([message("t", "a", 1)])
    task = asyncio.create_task(pub.publish([message("t", "b", 2)]))
    await asyncio.sleep(0.01)
    assert producer.take_and_ack() == [("t", 0, [(b"b", b"2")])]
    await task


async def test_a_batch_the_broker_refuses_for_its_size_is_said_as_such() -> None:
    producer = Producer({"t": {0}})
    pub = publisher(producer)
    task = asyncio.create_task(pub.publish([message("t", "a", 1)]))
    await asyncio.sleep(0.01)
    (_, _, _, acked), *_ = producer.handed
    acked.set_exception(MessageSizeTooLargeError())
    with pytest.raises(MessageTooLarge, match="MessageSizeTooLargeError"):
        await task


async def test_records_are_stamped_with_the_publishers_clock() -> None:
    """The database's time where the process keeps it: the sweeper reads topics back by it."""
    producer = Producer({"t": {0}})
    database_time = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    pub = publisher(producer, lambda: database_time)
    task = asyncio.create_task(pub.publish([message("t", "a", 1), message("t", "b", 2)]))
    await asyncio.sleep(0.01)
    ((_, _, batch, _),) = producer.handed
    producer.take_and_ack()
    await task
    assert batch.stamps == [int(database_time.timestamp() * 1000)] * 2
