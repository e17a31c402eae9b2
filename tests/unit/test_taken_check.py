"""The broker's answer to "has the participant taken this command?", for many late sagas at
once: each saga is judged by its own command's place, also when several share a partition."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata, OffsetAndTimestamp

from events.topics import SAGA_REPLIES
from orchestrator import taken_check
from orchestrator.engine.waiting import Awaiting
from orchestrator.publisher import partition_for
from orchestrator.settings import Settings
from orchestrator.taken_check import KafkaTakenCheck

TOPIC = "payment.commands"
PARTITIONS = [0, 1, 2]
RECORDS = 40
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(offset: int) -> datetime:
    """Records of every partition are 10 s apart: offset n at T0 + 10 n s."""
    return T0 + timedelta(seconds=10 * offset)


class Broker:
    """Kafka's answers: the first offset stamped at or after a time, and the participant
    group's committed offsets; counts the time lookups."""

    def __init__(self, committed: dict[int, int]) -> None:
        self.committed = committed
        self.lookups = 0

    async def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    async def offsets_for_times(
        self, asked: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        self.lookups += 1
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ms in asked.items():
            hit = next((o for o in range(RECORDS) if stamp(o).timestamp() * 1000 >= ms), None)
            found[tp] = None if hit is None else OffsetAndTimestamp(hit, ms)
        return found

    async def list_consumer_group_offsets(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        return {
            TopicPartition(TOPIC, p): OffsetAndMetadata(offset, "")
            for p, offset in self.committed.items()
        }

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass


def check_on(broker: Broker) -> KafkaTakenCheck:
    check = KafkaTakenCheck(
        Settings(kafka_bootstrap_servers="unused:9092", database_url="postgresql+asyncpg://u:@/d")
    )

    async def clients() -> tuple[Broker, Broker]:
        return broker, broker

    async def replies_client() -> Broker:
        return broker

    check._clients = clients  # type: ignore[method-assign,assignment]
    check._ends_client = replies_client  # type: ignore[method-assign,assignment]
    return check


def late(saga_id: UUID, offset: int) -> Awaiting:
    return Awaiting(saga_id, f"cmd-{offset}", TOPIC, "payment", stamp(offset), False, False)


async def test_every_saga_of_a_partition_is_judged_by_its_own_command() -> None:
    rng = random.Random(7)
    committed = {0: 12, 1: 30, 2: 0}
    broker = Broker(committed)
    sagas: dict[UUID, tuple[int, int]] = {}
    while len(sagas) < 60:
        saga_id = uuid4()
        partition = partition_for(str(saga_id).encode(), PARTITIONS)
        sagas[saga_id] = (partition, rng.randrange(RECORDS))
    awaiting = [late(saga_id, offset) for saga_id, (_, offset) in sagas.items()]
    rng.shuffle(awaiting)

    untaken = await check_on(broker).untaken(awaiting)

    expected = {s for s, (partition, offset) in sagas.items() if committed[partition] <= offset}
    assert untaken == expected
    assert 0 < len(expected) < len(sagas)
    assert broker.lookups <= 7, "searched by halves, not one lookup a saga"


async def test_a_participant_that_never_consumed_its_topic_is_not_waited_for() -> None:
    untaken = await check_on(Broker({})).untaken([late(uuid4(), 5), late(uuid4(), 39)])
    assert untaken == set()


class Replies(Broker):
    """The replies topic: its end offsets move as replies come; the orchestrators' group has
    committed ``handled``."""

    def __init__(self) -> None:
        super().__init__({})
        self.ends = dict.fromkeys(PARTITIONS, 0)
        self.handled = dict.fromkeys(PARTITIONS, 0)

    async def list_consumer_group_offsets(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        assert group.endswith(".orchestrator.replies")
        return {
            TopicPartition(SAGA_REPLIES, p): OffsetAndMetadata(offset, "")
            for p, offset in self.handled.items()
        }

    async def end_offsets_of(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp.partition] for tp in partitions}


async def test_a_late_step_waits_until_the_replies_sent_by_its_deadline_are_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An orchestrator paused (or in a rebalance) while the answers came: on resuming, its
    timer finds them unhandled and waits for its consumer rather than time the steps out."""
    broker = Replies()

    async def ends(
        consumer: Replies, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await consumer.end_offsets_of(partitions)

    monkeypatch.setattr(taken_check, "end_offsets", ends)
    check = check_on(broker)
    saga = uuid4()
    partition = partition_for(str(saga).encode(), PARTITIONS)
    due = T0 + timedelta(seconds=30)
    step = dataclasses.replace(late(saga, 0), due_at=due)
    broker.ends[partition] = 7  # its reply among them, not yet handled

    assert await check.replies_behind([step], due) == {saga}, "not yet a second past due"
    assert await check.replies_behind([step], due + timedelta(seconds=3)) == {saga}
    broker.handled = dict(broker.ends)  # the consumer caught up; more replies came since
    broker.ends = {p: end + 5 for p, end in broker.ends.items()}
    assert await check.replies_behind([step], due + timedelta(seconds=4)) == set()
