"""Repeats of an upstream record's key, against an in-memory database: a repeat that asks
something else is dead-lettered once, in a statement of its own, and a fault there neither
undoes nor double-counts what the batch's first statement did."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest

from events import topics
from orchestrator import metrics
from orchestrator.engine import runtime, store
from orchestrator.engine.batch_write import BatchWrite, Written
from orchestrator.engine.outbox import OutboxRow
from orchestrator.sagas.card_issuance import CARD_ISSUANCE_SAGA
from tests.unit.test_machine import POLICY

SAGA = CARD_ISSUANCE_SAGA.name


@dataclass
class Record:
    offset: int
    document: dict[str, Any]
    topic: str = topics.CARDS_ISSUE_REQUESTED
    partition: int = 0
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0

    @property
    def value(self) -> bytes:
        return json.dumps(self.document).encode()


@dataclass
class Database:
    """Saga rows by key and the outbox; ``fail_at``: the write whose connection is lost
    before it commits, counting from 1."""

    sagas: dict[tuple[str, str], tuple[UUID, str | None]] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    writes: int = 0
    fail_at: int = 0
    ids: Iterable[int] = field(default_factory=lambda: itertools.count(1))

    async def write(self, batch: BatchWrite) -> Written:
        self.writes += 1
        if self.writes == self.fail_at:
            raise ConnectionResetError("connection reset")
        written = set()
        for instance in batch.inserts:
            key = (instance.saga_type, instance.business_key)
            if key not in self.sagas:
                self.sagas[key] = (instance.id, instance.request_digest)
                written.add(instance.id)
        rows = [
            OutboxRow(next(iter(self.ids)), message)
            for message, owner in batch.messages
            if owner is None or owner in written
        ]
        self.outbox.extend(rows)
        return Written(written, rows)

    async def digests(
        self, _: object, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[UUID, str | None]]:
        return {key: self.sagas[key] for key in keys if key in self.sagas}

    def letters(self) -> list[str]:
        return sorted(
            str(row.message.headers.get("dlq_reason"))
            for row in self.outbox
            if row.message.topic.endswith(".dlq")
        )


@dataclass
class Relay:
    published: list[OutboxRow] = field(default_factory=list)

    def publish_soon(self, rows: Sequence[OutboxRow]) -> None:
        self.published.extend(rows)


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Database:
    db = Database()

    @contextlib.asynccontextmanager
    async def connection(_: object) -> AsyncIterator[None]:
        yield None

    monkeypatch.setattr(runtime.SagaRuntime, "_write", db.write)
    monkeypatch.setattr(runtime, "driver_connection", connection)
    monkeypatch.setattr(store, "request_digests", db.digests)
    return db


def card(request_id: str, user_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "user_id": user_id, "card_type": "virtual"}


def started() -> float:
    return metrics.SAGAS_STARTED.labels(SAGA)._value.get()  # type: ignore[no-any-return]


async def test_a_fault_dead_lettering_a_reused_key_leaves_the_batch_started_once(
    database: Database,
) -> None:
    database.fail_at = 2  # the KEY_REUSED letter's statement
    relay = Relay()
    saga_runtime = runtime.SagaRuntime(None, [CARD_ISSUANCE_SAGA], POLICY, relay)  # type: ignore[arg-type]
    before = started()
    await saga_runtime.handle_inbound(
        [
            Record(0, card("r1", "u1")),
            Record(1, card("r2", "u3")),
            Record(2, card("r1", "u2")),
            Record(3, {"request_id": "r3"}),
        ]
    )
    assert started() - before == 2
    assert len(database.sagas) == 2
    assert database.letters() == ["INVALID_PAYLOAD", "KEY_REUSED"]
    commands = [row for row in relay.published if not row.message.topic.endswith(".dlq")]
    assert len(commands) == 2


async def test_repeats_in_a_batch_and_before_it_are_told_apart(database: Database) -> None:
    saga_runtime = runtime.SagaRuntime(None, [CARD_ISSUANCE_SAGA], POLICY, Relay())  # type: ignore[arg-type]
    await saga_runtime.handle_inbound([Record(0, card("r1", "u1"))])
    database.sagas[(SAGA, "r9")] = (UUID(int=9), None)  # an earlier release's saga
    respelled = dict(reversed(card("r1", " u1 ").items())) | {"extra": 1}
    await saga_runtime.handle_inbound(
        [
            Record(1, card("r1", "u2")),
            Record(2, respelled),
            Record(3, card("r9", "anyone")),
            Record(4, card("r5", "u5"), partition=1),
            Record(5, card("r5", "u6"), partition=1),
            Record(6, card("r5", "u5"), partition=1),
        ]
    )
    letters = [row.message for row in database.outbox if row.message.topic.endswith(".dlq")]
    assert sorted(m.headers["dlq_offset"] for m in letters) == ["1", "5"]
    assert {m.headers["dlq_reason"] for m in letters} == {"KEY_REUSED"}
    assert len(database.sagas) == 3
