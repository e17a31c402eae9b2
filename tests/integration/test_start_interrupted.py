"""Start-up on the embedded broker: a stop signal ends it promptly, even while a group join
waits; a group the broker holds for a departed leader is released."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from events import topics
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack, free_port
from orchestrator.kafka import ensure_topics
from orchestrator.serve import StartInterrupted, start_unless_stopped
from orchestrator.settings import Settings
from tests.integration.helpers import card_outcomes, card_request

# The embedded broker holds a first JoinGroup about half the session timeout: with a minute,
# the join below is still waiting when the stop comes.
_SLOW_JOIN = {"consumer_session_timeout_ms": 60_000, "consumer_heartbeat_interval_ms": 3_000}


async def test_a_stop_during_a_group_join_ends_the_start_within_seconds(
    stack: EmbeddedStack,
) -> None:
    settings = stack.settings(group_prefix=f"stuck-{uuid.uuid4().hex[:8]}", **_SLOW_JOIN)
    app = Application(settings, ["billing"])
    stop = asyncio.Event()
    starting = asyncio.create_task(start_unless_stopped(app, stop))
    deadline = time.monotonic() + 30
    while not app.broker.not_joined():
        assert not starting.done(), "the start finished before its group join"
        assert time.monotonic() < deadline, "the group join never began"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert app.broker.not_joined() == [f"{settings.group_prefix}.billing"]

    stopped_at = time.monotonic()
    stop.set()
    with pytest.raises(StartInterrupted, match=r"billing"):
        await asyncio.wait_for(starting, timeout=15)
    assert time.monotonic() - stopped_at < 6
    assert app.broker.not_joined() == []


def test_sigterm_during_a_group_join_stops_within_seconds(stack: EmbeddedStack) -> None:
    settings = stack.settings(group_prefix=f"stuck-{uuid.uuid4().hex[:8]}", **_SLOW_JOIN)
    env = {
        **os.environ,
        "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ORCHESTRA_DATABASE_URL": settings.database_url,
        "ORCHESTRA_GROUP_PREFIX": settings.group_prefix,
        "ORCHESTRA_CONSUMER_SESSION_TIMEOUT_MS": "60000",
        "ORCHESTRA_CONSUMER_HEARTBEAT_INTERVAL_MS": "3000",
        "ORCHESTRA_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "ORCHESTRA_TOPIC_PARTITIONS": "1",
        "ORCHESTRA_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", "billing"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(8)  # imports, schema, topics, then the join (which waits ~30 s)
        assert process.poll() is None, "the process ended before its join"
        signalled_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        assert time.monotonic() - signalled_at < 8
        assert process.stderr is not None
        errors = process.stderr.read()
        assert code == 0, errors
        assert "stopped during start-up" in errors
        assert "Traceback" not in errors
    finally:
        if process.poll() is None:
            process.kill()


async def _strand_a_departed_leader(settings: Settings, group: str, topic: str) -> None:
    """Two members; the follower leaves, then, the group rebalancing, the leader: the embedded
    broker (Tansu 0.6.0) keeps the departed leader as the group's leader."""

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=group,
            session_timeout_ms=3_000,
            heartbeat_interval_ms=500,
            enable_auto_commit=False,
        )

    leader, follower = member(), member()
    await leader.start()
    await follower.start()
    deadline = time.monotonic() + 30
    while not (leader.assignment() and follower.assignment()):
        assert time.monotonic() < deadline, "the two members never shared the topic"
        await asyncio.gather(leader.getmany(timeout_ms=100), follower.getmany(timeout_ms=100))
    await follower.stop()
    await leader.stop()


async def _joins_within(settings: Settings, group: str, topic: str, seconds: float) -> bool:
    probe = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        session_timeout_ms=3_000,
        heartbeat_interval_ms=500,
    )
    try:
        await asyncio.wait_for(probe.start(), timeout=seconds)
    except TimeoutError:
        return False
    finally:
        await probe.stop()
    return True


@pytest.mark.slow
async def test_a_group_held_by_a_departed_leader_is_released_at_start(
    stack: EmbeddedStack,
) -> None:
    settings = stack.settings(group_prefix=f"held-{uuid.uuid4().hex[:8]}")
    app = Application(settings, ["billing"])
    group = f"{settings.group_prefix}.billing"
    topic = f"{settings.group_prefix}.two-partitions"  # one for each member
    await ensure_topics(settings, [topic], partitions=2)
    await _strand_a_departed_leader(settings, group, topic)
    if await _joins_within(settings, group, topic, 8):
        pytest.skip("the broker no longer keeps a departed leader")

    started_at = time.monotonic()
    await asyncio.wait_for(app.start(), timeout=60)
    try:
        assert time.monotonic() - started_at < 45
        assert app.broker.not_joined() == []
    finally:
        await app.stop()


@pytest.mark.slow
async def test_rolling_restarts_each_start_and_the_last_one_serves(stack: EmbeddedStack) -> None:
    """Start the next process, then stop the previous one, four times over: each start joins
    every group (on the embedded broker the previous one's leaving used to hold them for good),
    and the last process still runs sagas."""
    settings = stack.settings(group_prefix=f"roll-{uuid.uuid4().hex[:8]}")
    running = Application(settings.model_copy(update={"http_port": free_port()}))
    await asyncio.wait_for(running.start(), timeout=60)
    try:
        for _ in range(4):
            following = Application(settings.model_copy(update={"http_port": free_port()}))
            await asyncio.wait_for(following.start(), timeout=60)
            await running.stop()
            running = following
        async with UpstreamClient(settings, watch=[topics.CARDS_STATUS]) as upstream:
            request = card_request()
            await upstream.send(topics.CARDS_ISSUE_REQUESTED, request)
            outcomes = await card_outcomes(upstream, [request.request_id], timeout_s=60)
        assert outcomes[request.request_id].status == "ISSUED"
    finally:
        await running.stop()
