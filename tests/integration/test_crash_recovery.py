"""Kill -9 in the middle of card sagas and of mixed commerce sagas, restart, and check that
nothing was lost or doubled."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator

import pytest

from events import topics
from events.cards import CardStatusChanged
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack, free_port
from orchestrator.ops.records import Selection, read
from orchestrator.settings import Settings
from tests.integration import commerce
from tests.integration.helpers import card_outcomes, card_request, query, unique
from tests.integration.mix import check_invariants, random_plan, run_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as embedded:
        yield embedded


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "ORCHESTRA_DATABASE_URL": settings.database_url,
            "ORCHESTRA_CONSUMER_SESSION_TIMEOUT_MS": str(settings.consumer_session_timeout_ms),
            "ORCHESTRA_CONSUMER_FETCH_MAX_WAIT_MS": str(settings.consumer_fetch_max_wait_ms),
            "ORCHESTRA_CONSUMER_HEARTBEAT_INTERVAL_MS": str(
                settings.consumer_heartbeat_interval_ms
            ),
            "ORCHESTRA_GROUP_PREFIX": settings.group_prefix,
            "ORCHESTRA_HTTP_HOST": settings.http_host,
            "ORCHESTRA_HTTP_PORT": str(settings.http_port),
            "ORCHESTRA_LOG_FORMAT": "json",
            "ORCHESTRA_LOG_LEVEL": "WARNING",
            # restart and catch-up on a loaded machine must not count as a step's timeout
            "ORCHESTRA_STEP_TIMEOUT_S": "300",
        }
    )
    return env


def _spawn(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run"],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def client(own_stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(own_stack.settings(), watch=[topics.CARDS_STATUS]) as upstream:
        yield upstream


async def test_kill_9_mid_flight_then_restart_loses_nothing(
    own_stack: EmbeddedStack, client: UpstreamClient
) -> None:
    settings = own_stack.settings(group_prefix=unique("crash"))
    users = [unique("u") for _ in range(40)]
    requests = [card_request(user) for user in users]
    requests += [card_request(users[n]) for n in range(5)]  # same user and type: rejected
    requests += [card_request(currency="GBP") for _ in range(5)]  # billing refuses: compensated
    assert len(requests) == 50

    halfway = asyncio.Event()

    async def trickle() -> None:
        for sent, request in enumerate(requests[1:], start=1):
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
            if sent == 20:
                halfway.set()
            await asyncio.sleep(0.02)

    first = _spawn(settings)
    try:
        await client.send(topics.CARDS_ISSUE_REQUESTED, requests[0])
        seen = await card_outcomes(client, [requests[0].request_id], timeout_s=60)
        publishing = asyncio.create_task(trickle())
        await halfway.wait()
        first.send_signal(signal.SIGKILL)  # sagas done, in flight and not yet started
        first.wait(timeout=10)
        await publishing
    finally:
        if first.poll() is None:
            first.kill()

    second = _spawn(settings)
    try:
        outcomes = await card_outcomes(
            client, [r.request_id for r in requests], timeout_s=120, already=seen
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, "graceful stop after SIGTERM"

    url = own_stack.database_url
    terminal = await query(url, "SELECT business_key, status FROM saga_instances")
    assert len(terminal) == 50
    assert {status for _, status in terminal} <= {"COMPLETED", "ABORTED"}
    assert len({key for key, _ in terminal}) == 50
    by_status = defaultdict(int)
    for outcome in outcomes.values():
        by_status[(outcome.status.value, outcome.reason)] += 1
    assert by_status[("ISSUED", None)] == 40
    assert by_status[("REJECTED", "ACTIVE_CARD_EXISTS")] == 5
    assert by_status[("REJECTED", "UNSUPPORTED_CURRENCY")] == 5

    doubled = await query(
        url,
        "SELECT card_id FROM cards WHERE card_id IS NOT NULL GROUP BY card_id HAVING count(*) > 1",
    )
    assert doubled == []
    active = await query(
        url, "SELECT count(*), count(DISTINCT card_id) FROM cards WHERE status = 'ACTIVE'"
    )
    assert active == [(40, 40)]
    used = await query(url, "SELECT count(*) FROM card_inventory WHERE status = 'USED'")
    assert used == [(40,)]
    orphans = await query(
        url,
        "SELECT w.wallet_id FROM card_wallets w WHERE w.status = 'OPEN' AND NOT EXISTS "
        "(SELECT 1 FROM cards c WHERE c.card_id = w.card_id AND c.status = 'ACTIVE')",
    )
    assert orphans == []
    leftovers = await query(url, "SELECT count(*) FROM orchestrator_outbox")
    assert leftovers == [(0,)]
    wanted = {r.request_id for r in requests}
    records = Counter(
        status.request_id
        for record in await read(settings, topics.CARDS_STATUS, Selection())
        if (status := CardStatusChanged.model_validate_json(record.value)).request_id in wanted
    )
    assert records == dict.fromkeys(wanted, 1), "one terminal record per saga"


async def test_two_processes_share_the_work_and_issue_one_card_per_user(
    own_stack: EmbeddedStack,
) -> None:
    settings = own_stack.settings(group_prefix=unique("pair"))
    first = Application(settings)
    second = Application(settings.model_copy(update={"http_port": free_port()}))
    await first.start()
    await second.start()
    try:
        async with UpstreamClient(own_stack.settings(), watch=[topics.CARDS_STATUS]) as upstream:
            user = unique("racer")
            racing = [card_request(user) for _ in range(4)]
            others = [card_request() for _ in range(20)]
            for request in racing + others:
                await upstream.send(topics.CARDS_ISSUE_REQUESTED, request)
            outcomes = await card_outcomes(
                upstream, [r.request_id for r in racing + others], timeout_s=90
            )
    finally:
        await second.stop()
        await first.stop()
    assert sum(outcomes[r.request_id].status == "ISSUED" for r in racing) == 1
    assert all(outcomes[r.request_id].status == "ISSUED" for r in others)


async def test_kill_9_amid_200_mixed_commerce_sagas_keeps_money_and_stock(
    own_stack: EmbeddedStack,
) -> None:
    settings = own_stack.settings(group_prefix=unique("mixed"))
    plan = random_plan(random.Random(20261125), sagas=200)
    async with UpstreamClient(own_stack.settings(), watch=commerce.WATCHED) as upstream:
        seen = commerce.Outcomes(upstream)
        process = _spawn(settings)
        try:
            running = asyncio.create_task(run_plan(upstream, seen, plan))
            while sum(1 for docs in seen.seen.values() if "order_id" in docs[0]) < 25:
                assert not running.done(), running
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGKILL)  # orders paid, half-booked and not yet started
            process.wait(timeout=10)
            process = _spawn(settings)
            run = await running
            sagas = len(run.requests)
            assert sagas >= 190, sagas
            await check_invariants(own_stack.database_url, run, seen)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, "graceful stop after SIGTERM"
    outcomes = {doc["status"] for doc in run.outcomes.values()}
    assert {"CONFIRMED", "CANCELLED", "COMPLETED", "ACTIVE"} <= outcomes
