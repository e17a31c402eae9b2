"""Background offset commits and fetch pacing: pure logic against fake consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog.testing
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from orchestrator import kafka, wiring
from orchestrator.fetch_pacing import FetchPacing
from orchestrator.offsets import OffsetCommitter
from orchestrator.settings import Settings

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


@dataclass
class SlowConsumer:
    """Answers each commit only when released; can be told to fail."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.release.wait()
        if self.fail:
            raise RuntimeError("rebalanced")
        self.commits.append(dict(offsets))


async def test_batches_handled_while_a_commit_is_in_flight_go_in_the_next_one() -> None:
    consumer = SlowConsumer()
    committer = OffsetCommitter("g")
    committer.handled(consumer, {T0: 7})
    await asyncio.sleep(0)  # the first commit is now waiting on the broker
    committer.handled(consumer, {T0: 8, T1: 3})
    committer.handled(consumer, {T0: 10})
    consumer.release.set()
    await committer.flush()
    assert consumer.commits == [{T0: 7}, {T0: 10, T1: 3}]


async def test_a_failed_commit_is_logged_not_raised_and_later_batches_still_commit() -> None:
    consumer = SlowConsumer(fail=True)
    consumer.release.set()
    committer = OffsetCommitter("g")
    with structlog.testing.capture_logs():
        await committer.handled(consumer, {T0: 2})
    consumer.fail = False
    await committer.handled(consumer, {T0: 3})
    assert consumer.commits == [{T0: 3}]


async def test_after_flush_the_caller_can_wait_for_its_own_commit() -> None:
    consumer = SlowConsumer()
    consumer.release.set()
    committer = OffsetCommitter("g")
    await committer.flush()
    assert committer.closing
    await committer.handled(consumer, {T1: 42})
    assert consumer.commits == [{T1: 42}]


class Fetcher:
    _fetch_max_wait_ms = 500


class Consumer:
    def __init__(self) -> None:
        self._fetcher = Fetcher()


def test_pacing_waits_briefly_after_a_lone_record_less_under_load_and_long_when_idle() -> None:
    pacing = FetchPacing(quick_ms=2, busy_ms=6, steady_ms=20)
    consumer = Consumer()
    polls = ((1, 2), (30, 6), (0, 20), (1, 2), (0, 20), (25, 6), (0, 20))
    for records, wait_ms in polls:
        pacing.after(consumer, records)
        assert consumer._fetcher._fetch_max_wait_ms == wait_ms


def test_pacing_is_on_only_where_the_settings_set_a_quick_wait() -> None:
    kafka = Settings(consumer_fetch_max_wait_ms=500)
    embedded = kafka.model_copy(
        update={
            "consumer_fetch_max_wait_ms": 20,
            "consumer_fetch_quick_wait_ms": 2,
            "consumer_fetch_busy_wait_ms": 6,
        }
    )
    without_busy = embedded.model_copy(update={"consumer_fetch_busy_wait_ms": None})
    assert FetchPacing.configured(kafka) is None
    assert FetchPacing.configured(embedded) == FetchPacing(quick_ms=2, busy_ms=6, steady_ms=20)
    assert FetchPacing.configured(without_busy) == FetchPacing(2, 20, 20)


def test_pacing_leaves_a_consumer_without_a_fetcher_alone() -> None:
    FetchPacing(quick_ms=2, busy_ms=6, steady_ms=20).after(object(), 1)


async def test_commits_are_spaced_by_the_interval_and_merge_what_came_between() -> None:
    consumer = SlowConsumer()
    consumer.release.set()
    committer = OffsetCommitter("g", interval_s=0.2)
    await committer.handled(consumer, {T0: 1})
    second = committer.handled(consumer, {T0: 2})
    committer.handled(consumer, {T0: 3})
    await asyncio.sleep(0.05)
    assert consumer.commits == [{T0: 1}]
    await second
    assert consumer.commits == [{T0: 1}, {T0: 3}]


async def test_flush_does_not_wait_out_the_interval() -> None:
    consumer = SlowConsumer()
    consumer.release.set()
    committer = OffsetCommitter("g", interval_s=60)
    await committer.handled(consumer, {T0: 1})
    committer.handled(consumer, {T0: 2})
    await asyncio.wait_for(committer.flush(), 1)
    assert consumer.commits == [{T0: 1}, {T0: 2}]


@dataclass
class RebalancedConsumer:
    """Partition 0 was revoked while the batch was handled; partition 1 is still ours. Seeks
    like aiokafka's: a partition not assigned is an error."""

    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {T1}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self.assignment():
            raise IllegalStateError(f"No current assignment for partition {partition}")
        self.seeks.append((partition, offset))


async def test_a_failed_batch_rewinds_the_partitions_still_assigned_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr(wiring, "_FAILED_BATCH_PAUSE_S", 0)
    batches = wiring._Batches(failing, OffsetCommitter("g"))
    consumer = RebalancedConsumer()
    records = [
        ConsumerRecord("t", p, o, 0, 0, None, b"{}", None, 0, 2, [])
        for p, o in ((0, 10), (0, 11), (1, 6), (1, 5))
    ]
    await batches.handle(consumer, records)  # type: ignore[arg-type]
    assert consumer.seeks == [(T1, 5)]


def test_a_partition_the_group_never_committed_counts_from_its_start() -> None:
    """The broker answers -1 for it: an empty partition, or one retention has emptied, is not
    behind; a commit older than the partition's start counts from that start."""
    committed = {T0: OffsetAndMetadata(-1, ""), T1: OffsetAndMetadata(7, "")}
    t2 = TopicPartition("t", 2)
    assert [kafka._committed(committed, tp, 0) for tp in (T0, T1, t2)] == [0, 7, 0]
    assert [kafka._committed(committed, tp, 9) for tp in (T0, T1, t2)] == [9, 9, 9]
