"""``orchestra replay`` (by offset, time and key; dry run and real) changes nothing that
already happened; ``orchestra dlq`` lists, shows and re-drives dead letters after a fix."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from events import topics
from events.envelope import (
    H_DLQ_OFFSET,
    H_DLQ_PARTITION,
    H_DLQ_REASON,
    H_DLQ_TOPIC,
    H_DLQ_VALUE_DROPPED,
    Envelope,
)
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.outbox import OutboundMessage
from orchestrator.kafka import admin_kwargs, end_offsets, ensure_topics
from orchestrator.ops.output import visible
from orchestrator.ops.records import Record, Selection, read
from orchestrator.publisher import KafkaPublisher
from orchestrator.settings import Settings
from tests.integration import commerce as c
from tests.integration.helpers import orchestra
from tests.integration.test_commerce_replay import drained, snapshot, some_business


@pytest.mark.usefixtures("running_app")
async def test_replay_by_key_time_and_offset_changes_nothing(stack: EmbeddedStack) -> None:
    before_business = datetime.now(UTC) - timedelta(seconds=1)
    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as client:
        seen = c.Outcomes(client)
        buyer_id, topup_id, _, order_id, _ = await some_business(client, seen)
    await drained(stack)
    before = await snapshot(stack.database_url)

    dry = await orchestra(stack, "replay", topics.ORDERS_SUBMITTED, "--key", order_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 records would be re-published" in dry.stdout
    assert order_id in dry.stdout

    by_key = await orchestra(stack, "replay", topics.ORDERS_SUBMITTED, "--key", order_id)
    assert "re-published 1 records" in by_key.stdout, by_key.stderr
    by_time = await orchestra(
        stack,
        "replay",
        topics.WALLETS_TOPUP_REQUESTED,
        "--since",
        before_business.isoformat(),
        "--dry-run",
    )
    assert topup_id in by_time.stdout, by_time.stderr
    later = await orchestra(
        stack,
        "replay",
        topics.WALLETS_TOPUP_REQUESTED,
        "--since",
        (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "--dry-run",
    )
    assert "0 records would be" in later.stdout
    await orchestra(
        stack, "replay", topics.WALLETS_TOPUP_REQUESTED, "--since", before_business.isoformat()
    )
    (where,) = await read(stack.settings(), topics.CUSTOMERS_REGISTERED, Selection(key=buyer_id))
    by_offset = await orchestra(
        stack,
        "replay",
        topics.CUSTOMERS_REGISTERED,
        "--partition",
        str(where.partition),
        "--from-offset",
        str(where.offset),
        "--to-offset",
        str(where.offset),
    )
    assert "re-published 1 records" in by_offset.stdout, by_offset.stderr

    await drained(stack)
    assert await snapshot(stack.database_url) == before
    bad = await orchestra(stack, "replay", "no.such.topic")
    assert (bad.returncode, "no topic" in bad.stderr, "Traceback" in bad.stderr) == (2, True, False)


@pytest.fixture(scope="module")
def own_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as embedded:
        yield embedded


@pytest.mark.slow
async def test_dead_letters_listed_shown_and_redriven_after_the_fix(
    own_stack: EmbeddedStack,
) -> None:
    strict = Application(own_stack.settings(group_prefix="dlq", max_message_bytes=1_500))
    await strict.start()
    try:
        async with UpstreamClient(own_stack.settings(), watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            big = c.order(c.unique("nobody"), [(f"SKU-{n:03d}", 1, "1") for n in range(60)], "PP")
            small = c.order(c.unique("nobody"), [("SKU-1", 1, "1")], "PP")
            await client.send(topics.ORDERS_SUBMITTED, big)
            await client.send(topics.ORDERS_SUBMITTED, small)
            await seen.one(small.order_id)
    finally:
        await strict.stop()

    listed = await orchestra(own_stack, "dlq", "list", topics.ORDERS_SUBMITTED)
    assert listed.returncode == 0, listed.stderr
    assert "TOO_LARGE" in listed.stdout
    assert big.order_id in listed.stdout
    (letter,) = await read(own_stack.settings(), topics.dlq(topics.ORDERS_SUBMITTED), Selection())
    shown = await orchestra(
        own_stack,
        "dlq",
        "show",
        topics.ORDERS_SUBMITTED,
        "--partition",
        str(letter.partition),
        "--offset",
        str(letter.offset),
    )
    assert "dlq_reason: TOO_LARGE" in shown.stdout
    assert big.order_id in shown.stdout
    refused = await orchestra(own_stack, "dlq", "redrive", topics.ORDERS_SUBMITTED)
    assert refused.returncode == 2
    assert "--all" in refused.stderr
    offset = ("--offset", str(letter.offset))
    partition = ("--partition", str(letter.partition))
    no_such = await orchestra(
        own_stack, "dlq", "redrive", topics.ORDERS_SUBMITTED, *partition, "--offset", "99"
    )
    assert no_such.returncode == 2
    assert "no dead letter at offset 99" in no_such.stderr
    one = await orchestra(
        own_stack, "dlq", "redrive", topics.ORDERS_SUBMITTED, *partition, *offset, "--dry-run"
    )
    assert "1 dead letters would be re-driven" in one.stdout, one.stderr

    fixed = Application(own_stack.settings(group_prefix="dlq"))  # the fix: a larger limit
    await fixed.start()
    try:
        async with UpstreamClient(own_stack.settings(), watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            sent = await orchestra(
                own_stack, "dlq", "redrive", topics.ORDERS_SUBMITTED, "--reason", "TOO_LARGE"
            )
            assert "re-drove 1 dead letters" in sent.stdout, sent.stderr
            outcome = await seen.one(big.order_id)
    finally:
        await fixed.stop()
    assert (outcome["status"], outcome["reason"]) == ("CANCELLED", "UNKNOWN_CUSTOMER")


async def _letters(stack: EmbeddedStack, topic: str, count: int) -> int:
    """How many dead letters ``topic`` has a second after it has ``count`` (or after 30 s)."""
    for _ in range(300):
        if len(await read(stack.settings(), topics.dlq(topic), Selection())) >= count:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    return len(await read(stack.settings(), topics.dlq(topic), Selection()))


@pytest.mark.slow
async def test_redriving_every_dead_letter_again_sends_each_record_once(
    own_stack: EmbeddedStack,
) -> None:
    """A record still refused comes back as a new dead letter naming the old one: run after
    run, ``--all`` sends the newest of each, so the DLQ grows by its records, not doubling."""
    feed = topics.DELIVERY_POINTS_UPDATED
    app = Application(own_stack.settings(group_prefix=c.unique("again")))
    await app.start()
    try:
        async with UpstreamClient(own_stack.settings()) as client:
            for n in range(2):
                await client.send_raw(feed, f"bad-{n}", b'{"point_id": "PP-x"}')
        assert await _letters(own_stack, feed, 2) == 2
        for run, expected in ((1, 4), (2, 6)):
            sent = await orchestra(own_stack, "dlq", "redrive", feed, "--all")
            assert "re-drove 2 dead letters" in sent.stdout, (run, sent.stdout, sent.stderr)
            assert await _letters(own_stack, feed, expected) == expected
        listed = await orchestra(own_stack, "dlq", "list", feed)
        assert "re-drive of" in listed.stdout
    finally:
        await app.stop()


@pytest.mark.usefixtures("running_app")
async def test_partitions_offsets_and_targets_that_do_not_exist_are_refused(
    stack: EmbeddedStack,
) -> None:
    orders = topics.ORDERS_SUBMITTED
    wide = c.unique("ops.wide")  # a DLQ of three partitions: an offset alone is ambiguous
    await ensure_topics(stack.settings(), [wide, topics.dlq(wide)], partitions=3)
    for args, says in (
        (("replay", orders, "--partition", "99", "--dry-run"), "has no partition 99"),
        (("dlq", "show", wide, "--partition", "5", "--offset", "0"), "its partitions are 0-2"),
        (("dlq", "redrive", orders, "--offset", "0", "--partition", "42"), "has no partition 42"),
        (("dlq", "redrive", wide, "--offset", "0"), "--offset needs --partition"),
        (("dlq", "redrive", wide, "--offset", "0", "--partition", "1"), "no dead letter at"),
        (("dlq", "redrive", orders, "--offset", "99999"), "no dead letter at offset 99999"),
        (("replay", orders, "--to-topic", "bad name!", "--dry-run"), "no topic 'bad name!'"),
        (("replay", topics.ORDERS_STATUS, "--to-offset", "0"), "add --outbound"),
        (("replay", orders, "--to-topic", topics.NOTIFICATIONS_SENT), "add --outbound"),
    ):
        started = time.monotonic()
        run = await orchestra(stack, *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert says in run.stderr
        assert "Traceback" not in run.stderr
        assert time.monotonic() - started < 20, args
    partitions = await orchestra(stack, "replay", orders, "--partition", "99")
    assert "its partitions are 0" in partitions.stderr


@pytest.mark.usefixtures("running_app")
async def test_empty_partitions_are_read_without_waiting(stack: EmbeddedStack) -> None:
    empty = c.unique("ops.empty")
    await ensure_topics(stack.settings(), [empty])
    assert await read(stack.settings(), empty, Selection()) == []
    assert await read(stack.settings(), empty, Selection(from_offset=5)) == []

    started = time.monotonic()
    listed = await orchestra(stack, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    # a generous bound, not a speed target: it was about 5 s per DLQ topic, over a minute
    assert time.monotonic() - started < 30


async def test_a_read_reaches_the_last_record_of_a_batch_and_starts_at_a_time(
    stack: EmbeddedStack,
) -> None:
    """The embedded broker lists a partition's end as its last batch's first offset + 1: a
    read still gets every record of that batch, and the end counts them. A read from a time
    gets what came after it."""
    settings = stack.settings()
    topic = c.unique("ops.batched")
    await ensure_topics(settings, [topic])
    publisher = KafkaPublisher(settings, "ops-test")
    await publisher.start()
    try:

        def message(n: int) -> OutboundMessage:
            return OutboundMessage(topic, f"k-{n}", Envelope(type="ops.v1").headers(), b"{}")

        await asyncio.gather(*(publisher.publish([message(n)]) for n in range(5)))  # one batch
        between = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await asyncio.gather(*(publisher.publish([message(n)]) for n in range(5, 8)))
    finally:
        await publisher.stop()
    everything = await read(settings, topic, Selection())
    assert [r.key for r in everything] == [f"k-{n}" for n in range(8)]
    later = await read(settings, topic, Selection(since=between))
    assert [r.key for r in later] == [f"k-{n}" for n in range(5, 8)]
    assert (
        await read(settings, topic, Selection(since=datetime.now(UTC) + timedelta(hours=1))) == []
    )
    assert [r.offset for r in await read(settings, topic, Selection(from_offset=6))] == [6, 7]
    consumer = AIOKafkaConsumer(**admin_kwargs(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await end_offsets(consumer, [tp]) == {tp: 8}
    finally:
        await consumer.stop()


async def _orchestra_with(
    stack: EmbeddedStack, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``orchestra`` against ``stack`` with extra settings, off a terminal 80 columns wide."""
    return await orchestra(stack, *args, **{"COLUMNS": "80", **env})


async def test_records_too_large_to_send_are_reported_and_the_rest_are_sent(
    stack: EmbeddedStack,
) -> None:
    """A record over the producer's limit (or refused by the broker) is one line naming it;
    the others are sent, a summary ends the run, exit 2, and the record stays where it was.
    The producer honours ORCHESTRA_MAX_MESSAGE_BYTES, for the value itself (a record just over
    it would fit the request's framing, and be refused by its consumer)."""
    settings = stack.settings()
    source, copy = c.unique("ops.big"), c.unique("ops.copy")
    letters = topics.dlq(source)
    await ensure_topics(settings, [source, letters, copy])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, max_request_size=4_000_000
    )
    await producer.start()
    try:
        for n, size in enumerate((10, 1_030_000, 10)):
            value = b"x" * size
            await (await producer.send(source, value, key=f"k-{n}".encode()))
            dead = [(H_DLQ_TOPIC, source.encode()), (H_DLQ_REASON, b"TOO_LARGE")]
            await (await producer.send(letters, value, key=f"k-{n}".encode(), headers=dead))
    finally:
        await producer.stop()

    replayed = await _orchestra_with(stack, "replay", source, "--to-topic", copy)
    assert replayed.returncode == 2, replayed.stderr
    assert "Traceback" not in replayed.stderr
    (refused,) = replayed.stderr.strip().splitlines()
    assert refused.startswith(f"orchestra: error: not sent: {source}/0/1 (1030000 bytes): ")
    assert "ORCHESTRA_MAX_MESSAGE_BYTES=1000000" in refused
    assert replayed.stdout.strip().splitlines()[-1] == (
        f"re-published 2 of 3 records of {source} to {copy}; "
        f"1 not sent (listed on stderr), still in {source}"
    )
    assert [r.key for r in await read(settings, copy, Selection())] == ["k-0", "k-2"]

    larger = await _orchestra_with(
        stack, "replay", source, "--to-topic", copy, ORCHESTRA_MAX_MESSAGE_BYTES="5000000"
    )
    assert larger.returncode == 0, larger.stderr
    assert f"re-published 3 records of {source} to {copy}" in larger.stdout
    sizes = [len(r.value) for r in await read(settings, copy, Selection(from_offset=2))]
    assert sizes == [10, 1_030_000, 10]

    listed = await _orchestra_with(stack, "dlq", "list", letters)  # its own name is accepted
    assert listed.returncode == 0, listed.stderr
    assert f"{letters}: 3 dead letters" in listed.stdout
    redriven = await _orchestra_with(stack, "dlq", "redrive", letters, "--all")
    assert redriven.returncode == 2, redriven.stderr
    assert f"not sent: {letters}/0/1 (1030000 bytes)" in redriven.stderr
    assert f"re-drove 2 of 3 dead letters of {letters}" in redriven.stdout
    assert len(await read(settings, letters, Selection())) == 3  # nothing lost
    assert [r.key for r in await read(settings, source, Selection(from_offset=3))] == [
        "k-0",
        "k-2",
    ]


async def test_the_earliest_time_and_the_last_offset_select_without_a_traceback(
    stack: EmbeddedStack,
) -> None:
    settings = stack.settings()
    topic = c.unique("ops.range")
    await ensure_topics(settings, [topic])
    publisher = KafkaPublisher(settings, "ops-test")
    await publisher.start()
    try:
        await publisher.publish(
            [OutboundMessage(topic, "k", Envelope(type="ops.v1").headers(), b"{}")]
        )
    finally:
        await publisher.stop()
    earliest = await _orchestra_with(
        stack, "replay", topic, "--since", "0001-01-01T00:00:00Z", "--dry-run"
    )
    assert earliest.returncode == 0, earliest.stderr
    assert "1 records would be re-published" in earliest.stdout
    last = await _orchestra_with(
        stack, "replay", topic, "--from-offset", str(2**63 - 1), "--dry-run"
    )
    assert last.returncode == 0, last.stderr
    assert "0 records would be re-published" in last.stdout


@pytest.mark.usefixtures("running_app")
async def test_dead_letters_are_shown_as_they_are_and_long_values_cut_unless_asked(
    stack: EmbeddedStack,
) -> None:
    """Brackets in a refused record are text, not terminal markup (``[/x]`` had stopped
    ``dlq list`` and ``dlq show`` with a traceback); a long value is cut unless ``--full``."""
    source = c.unique("markup")
    settings = stack.settings()
    await ensure_topics(settings, [source, topics.dlq(source)])
    value = b'{"note": "[/bold] [red]\x1b]0;owned\x07' + b"x" * 5000 + b'"}'
    producer = AIOKafkaProducer(**admin_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.dlq(source),
            value,
            key=b"k-[/i]\x1b[2J",
            headers=[
                (H_DLQ_REASON, b"INVALID_PAYLOAD"),
                ("dlq_error", b"note: bad [/x] [type=string_type]"),
                (H_DLQ_TOPIC, source.encode()),
                ("dlq_partition", b"0"),
                ("dlq_offset", b"7"),
            ],
        )
    finally:
        await producer.stop()

    listed = await orchestra(stack, "dlq", "list", source)
    assert listed.returncode == 0, listed.stderr
    assert "bad [/x] [type=string_type]" in listed.stdout
    everywhere = await orchestra(stack, "dlq", "list")
    assert everywhere.returncode == 0, everywhere.stderr
    assert f"{topics.dlq(source)}: 1 dead letters" in everywhere.stdout
    assert ": 0 dead letters" not in everywhere.stdout
    where = ("--partition", "0", "--offset", "0")
    shown = await orchestra(stack, "dlq", "show", source, *where)
    assert shown.returncode == 0, shown.stderr
    assert "dlq_error: note: bad [/x] [type=string_type]" in shown.stdout
    assert "key: k-[/i]\\x1b[2J" in shown.stdout  # a terminal escape is shown, not obeyed
    assert '{"note": "[/bold] [red]\\x1b]0;owned\\x07x' in shown.stdout
    assert "\x1b" not in shown.stdout + listed.stdout
    assert "x" * 5000 not in shown.stdout
    assert f"({len(value):,} bytes in all; --full" in shown.stdout
    full = await orchestra(stack, "dlq", "show", source, *where, "--full")
    assert visible(value.decode()) in full.stdout, full.stderr


async def test_a_dead_letter_sent_without_its_value_is_redriven_from_its_record(
    stack: EmbeddedStack,
) -> None:
    """A dead letter the broker refused for its size went out without its value; its
    re-drive takes the value from the refused record, and says so if that is gone."""
    settings = stack.settings()
    topic = c.unique("ops.lightened")
    await ensure_topics(settings, [topic, topics.dlq(topic)])
    publisher = KafkaPublisher(settings, "ops-test")
    await publisher.start()
    try:
        original = b'{"order_id": "o-1", "note": "' + b"x" * 3_000 + b'"}'
        await publisher.publish([OutboundMessage(topic, "o-1", {}, original)])

        def letter(offset: int, partition: str = "0") -> OutboundMessage:
            headers = {
                **Envelope(type="dlq.v1").headers(),
                H_DLQ_REASON: "TOO_LARGE",
                H_DLQ_TOPIC: topic,
                H_DLQ_PARTITION: partition,
                H_DLQ_OFFSET: str(offset),
                H_DLQ_VALUE_DROPPED: "3026 bytes refused: MessageSizeTooLargeError",
            }
            return OutboundMessage(topics.dlq(topic), "o-1", headers, b"")

        await publisher.publish([letter(0), letter(99), letter(0, partition="7")])
    finally:
        await publisher.stop()

    redriven = await orchestra(stack, "dlq", "redrive", topic, "--all")
    assert redriven.returncode == 2
    assert "re-drove 1 of 3 dead letters" in redriven.stdout, redriven.stderr
    assert f"the record is no longer at {topic}/0/99" in redriven.stderr
    assert f"the record is no longer at {topic}/7/0" in redriven.stderr
    assert "Traceback" not in redriven.stderr
    copies = await read(settings, topic, Selection(from_offset=1))
    assert [(r.value, r.headers.get("redriven_from")) for r in copies] == [
        (original, f"{topics.dlq(topic)}/0/0")
    ]
    assert H_DLQ_VALUE_DROPPED not in copies[0].headers


SCHEMA_REGISTRY_KEY = b"\x00\x00\x00\x00\x01\xff\xfe"
"""Confluent framing: magic byte 0, a 4-byte schema id, then Avro (here not UTF-8)."""
BINARY_HEADERS = [("schema", b"\x00\x00\x00\x07"), ("binary", b"\xff\xfe\x80"), ("text", b"ok")]


async def _raw_at(
    settings: Settings, topic: str, partition: int, offset: int
) -> ConsumerRecord[bytes, bytes]:
    """The record at ``offset`` as aiokafka reads it: its key and header values as bytes."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **admin_kwargs(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for _ in range(50):
            for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                if record.offset == offset:
                    return record
        raise AssertionError(f"no record at {topic}/{partition}/{offset}")
    finally:
        await consumer.stop()


async def _letter_of(settings: Settings, topic: str, partition: int, offset: int) -> Record:
    """The dead letter of the record at ``partition``/``offset`` of ``topic`` (within 30 s)."""
    for _ in range(300):
        for letter in await read(settings, topics.dlq(topic), Selection()):
            at = (letter.headers.get(H_DLQ_PARTITION), letter.headers.get(H_DLQ_OFFSET))
            if at == (str(partition), str(offset)):
                return letter
        await asyncio.sleep(0.1)
    raise AssertionError(f"no dead letter of {topic}/{partition}/{offset}")


@pytest.mark.slow
async def test_a_binary_key_and_header_values_are_dead_lettered_and_redriven_byte_for_byte(
    own_stack: EmbeddedStack,
) -> None:
    """A record with a Schema Registry key and binary header values, refused as no JSON:
    its letter (text, through the outbox) holds their bytes, and a re-drive or a replay sends
    them back as they were, the key to the record's own partition."""
    settings = own_stack.settings()
    feed, copy = topics.STORE_STOCK_RECEIVED, c.unique("ops.bytes")
    await ensure_topics(settings, [feed, topics.dlq(feed), copy])
    app = Application(own_stack.settings(group_prefix=c.unique("bytes")))
    await app.start()
    try:
        producer = AIOKafkaProducer(**admin_kwargs(settings))
        await producer.start()
        try:
            sent = await producer.send_and_wait(
                feed, b"\xffnot json", key=SCHEMA_REGISTRY_KEY, headers=BINARY_HEADERS
            )
        finally:
            await producer.stop()
        letter = await _letter_of(settings, feed, sent.partition, sent.offset)
    finally:
        await app.stop()

    assert letter.headers[H_DLQ_REASON] == "INVALID_JSON"
    assert base64.b64decode(letter.headers["dlq_key_b64"]) == SCHEMA_REGISTRY_KEY
    held = json.loads(letter.headers["dlq_headers_b64"])
    assert [[base64.b64decode(part) for part in pair] for pair in held] == [
        [b"schema", b"\x00\x00\x00\x07"],
        [b"binary", b"\xff\xfe\x80"],
    ]
    where = ("--partition", str(letter.partition), "--offset", str(letter.offset))
    shown = await orchestra(own_stack, "dlq", "show", feed, *where)
    assert "(the key is not UTF-8" in shown.stdout, shown.stderr
    assert "(header binary is not UTF-8" in shown.stdout
    listed = await orchestra(own_stack, "dlq", "list", feed)
    assert "(binary)" in listed.stdout, listed.stderr

    redriven = await orchestra(own_stack, "dlq", "redrive", feed, *where)
    assert "re-drove 1 dead letters" in redriven.stdout, redriven.stderr
    mark = f"{topics.dlq(feed)}/{letter.partition}/{letter.offset}"
    (back,) = [
        r for r in await read(settings, feed, Selection()) if r.headers.get("redriven_from") == mark
    ]
    replayed = await orchestra(
        own_stack,
        "replay",
        feed,
        "--to-topic",
        copy,
        "--partition",
        str(sent.partition),
        "--from-offset",
        str(sent.offset),
        "--to-offset",
        str(sent.offset),
    )
    assert "re-published 1 records" in replayed.stdout, replayed.stderr
    (again,) = await read(settings, copy, Selection())

    for record, marked in ((back, "redriven_from"), (again, "replayed_from")):
        raw = await _raw_at(settings, record.topic, record.partition, record.offset)
        assert raw.key == SCHEMA_REGISTRY_KEY
        assert sorted((n, v) for n, v in raw.headers if n != marked) == sorted(BINARY_HEADERS)
        assert raw.value == b"\xffnot json"
    assert back.partition == sent.partition  # the same key: the record's own partition
