"""What replay and redrive do when a record cannot be sent: a record's own fault is reported
and the others go on; a broker that stops answering stops the run at once (each record after
it would wait out the request timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from orchestrator.errors import KafkaUnavailable
from orchestrator.ops import records
from orchestrator.ops.records import Record, publish
from orchestrator.settings import Settings


def _records(count: int) -> list[Record]:
    return [Record("t", 0, n, 0, f"k{n}".encode(), b"{}", ()) for n in range(count)]


class _Producer:
    """Refuses record 1 as too large and answers the others, until ``gone_at``."""

    sent: list[bytes | None] = []
    headers: list[object] = []

    def __init__(self, gone_at: int | None = None, **_: Any) -> None:
        self.gone_at = gone_at
        self.count = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes, key: bytes | None, headers: object = None, **_: Any
    ) -> Any:
        n, self.count = self.count, self.count + 1
        if n == 1:
            raise MessageSizeTooLargeError("the message is 2000000 bytes")
        if self.gone_at is not None and n >= self.gone_at:
            raise KafkaConnectionError("no broker")
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        _Producer.sent.append(key)
        _Producer.headers.append(headers)
        return done


async def _publish(monkeypatch: pytest.MonkeyPatch, gone_at: int | None) -> Any:
    _Producer.sent = []
    monkeypatch.setattr(records, "AIOKafkaProducer", lambda **kw: _Producer(gone_at, **kw))
    return await publish(Settings(), _records(5), lambda r: r.topic, lambda r: r.raw_headers)


async def test_a_record_too_large_is_reported_and_the_others_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = await _publish(monkeypatch, gone_at=None)

    assert [(item.record.offset, "2000000 bytes" in item.reason) for item in refused] == [(1, True)]
    assert _Producer.sent == [b"k0", b"k2", b"k3", b"k4"]


async def test_a_broker_that_stops_answering_stops_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(KafkaUnavailable, match=r"stopped answering .* after 2 records"):
        await _publish(monkeypatch, gone_at=3)

    assert _Producer.sent == [b"k0", b"k2"]


async def test_keys_and_header_values_are_sent_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _Producer.sent, _Producer.headers = [], []
    monkeypatch.setattr(records, "AIOKafkaProducer", lambda **kw: _Producer(None, **kw))
    headers = (("schema", b"\x00\x00\x00\x07"), ("binary", b"\xff\xfe"), ("null", None))
    record = Record("t", 0, 0, 0, b"\x00\x00\x00\x00\x01\xff\xfe", b"{}", headers)

    assert await publish(Settings(), [record], lambda r: r.topic, lambda r: r.raw_headers) == []

    assert _Producer.sent == [b"\x00\x00\x00\x00\x01\xff\xfe"]
    assert _Producer.headers == [list(headers)]
