"""Helpers of the integration tests: waiting for outcomes, reading the database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from events import topics
from events.base import Command, Message
from events.bench import BENCH_REQUESTED, BenchStepDone
from events.cards import CardIssueRequested, CardStatusChanged, CardType
from events.envelope import Envelope
from events.topics import SAGA_REPLIES
from orchestrator.client import OutcomeRecord, UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.machine import RetryPolicy
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.sagas.bench import BENCH_SAGA
from schemas.sagas import orchestrator_outbox


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def card_request(
    user_id: str | None = None, card_type: CardType = CardType.VIRTUAL, currency: str = "KZT"
) -> CardIssueRequested:
    return CardIssueRequested(
        request_id=unique("req"),
        user_id=user_id or unique("user"),
        card_type=card_type,
        currency=currency,
    )


async def wait_for(
    client: UpstreamClient, topic: str, predicate: object, count: int, timeout_s: float = 60.0
) -> list[OutcomeRecord]:
    """Collect records of ``topic`` matching ``predicate`` until ``count`` arrived."""
    assert callable(predicate)
    found: list[OutcomeRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"only {len(found)} of {count} records on {topic} in {timeout_s}s")
        try:
            record = await asyncio.wait_for(client.received.get(), timeout=remaining)
        except TimeoutError:
            continue
        if record.topic == topic and predicate(record):
            found.append(record)
    return found


async def card_outcomes(
    client: UpstreamClient,
    request_ids: Iterable[str],
    timeout_s: float = 60.0,
    already: dict[str, CardStatusChanged] | None = None,
) -> dict[str, CardStatusChanged]:
    """Wait for the outcome of every request (``already`` holds those read before)."""
    wanted = set(request_ids)
    outcomes: dict[str, CardStatusChanged] = dict(already or {})
    deadline = time.monotonic() + timeout_s
    while not wanted <= outcomes.keys():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = sorted(wanted - outcomes.keys())
            raise AssertionError(f"no outcome for {len(missing)} requests, e.g. {missing[:3]}")
        try:
            record = await asyncio.wait_for(client.received.get(), timeout=remaining)
        except TimeoutError:
            continue
        if record.topic == topics.CARDS_STATUS:
            status = CardStatusChanged.model_validate_json(record.value)
            if status.request_id in wanted:
                outcomes[status.request_id] = status
    return outcomes


async def query(database_url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def orchestra(
    stack: EmbeddedStack, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the command line against ``stack`` (``env`` overrides its settings), in a thread:
    the session's services share this event loop, and a blocked loop would hold their
    transactions open under the command."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orchestrator.cli", *args],
        env={
            **os.environ,
            "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
            "ORCHESTRA_DATABASE_URL": stack.database_url,
            "ORCHESTRA_LOG_LEVEL": "WARNING",
            "COLUMNS": "250",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()
    key: bytes | None = None
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


class Sent:
    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.messages.extend(messages)


def bench_runtime(engine: AsyncEngine, sent: Sent) -> SagaRuntime:
    """The orchestrator's runtime for the benchmark saga, publishing into ``sent``."""
    relay = OutboxRelay(engine, orchestrator_outbox, sent, delete_delay_s=0.0)
    return SagaRuntime(engine, [BENCH_SAGA], RetryPolicy(), relay)


def bench_request(order_id: str) -> Record:
    """An order for the benchmark saga."""
    body = json.dumps({"order_id": order_id, "amount_minor": 500}).encode()
    return Record(BENCH_REQUESTED, body, key=order_id.encode())


def bench_reply_to(command: OutboundMessage) -> Record:
    """A bench participant's success reply to ``command``."""
    sent = command.headers
    envelope = Envelope(
        type="bench-payment.BenchStepDone.v1",
        causation_id=sent["ce_id"],
        saga_id=UUID(sent["ce_sagaid"]),
        saga_type=sent["ce_sagatype"],
        saga_step=sent["ce_sagastep"],
    )
    return enveloped(SAGA_REPLIES, envelope, BenchStepDone())


def saga_command(topic: str, command: Command, saga_type: str, step: str) -> Record:
    """``command`` as the orchestrator sends it for a new saga's ``step``, keyed by saga id."""
    saga_id = uuid.uuid4()
    envelope = Envelope(
        type=f"orchestrator.{command.kind}.v1",
        saga_id=saga_id,
        saga_type=saga_type,
        saga_step=step,
    )
    return enveloped(topic, envelope, command, key=str(saga_id))


def enveloped(topic: str, envelope: Envelope, body: Message, key: str | None = None) -> Record:
    """A record of ``body`` with ``envelope``'s headers, as the engine would publish it."""
    headers = [(k, v.encode()) for k, v in envelope.headers().items()]
    return Record(topic, body.to_bytes(), headers, key=None if key is None else key.encode())


async def execute(database_url: str, sql: str, **params: object) -> None:
    """One statement, committed: a test's change of what a service stored."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()
