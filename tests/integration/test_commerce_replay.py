"""Duplicates and replay: a record published twice, or a whole topic re-published from the
start, changes no balance, no stock, no slot and no outcome."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from events import topics
from events.envelope import CLOUDEVENTS_HEADERS as CLOUDEVENTS
from events.envelope import H_ID, H_TIME, H_TYPE
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.kafka import admin_kwargs, group_lag
from tests.integration import commerce as c
from tests.integration.helpers import execute, query, wait_for

pytestmark = pytest.mark.usefixtures("running_app")

INBOUND = [
    topics.CUSTOMERS_REGISTERED,
    topics.WALLETS_TOPUP_REQUESTED,
    topics.ORDERS_SUBMITTED,
    topics.GIFTCARDS_PURCHASE_REQUESTED,
    topics.GIFTCARDS_ACTIVATION_REQUESTED,
    topics.STORE_STOCK_RECEIVED,
    topics.DELIVERY_POINTS_UPDATED,
]
GROUPS = {
    "session.orchestrator.ingress": INBOUND[:5],
    "session.store.feed": [topics.STORE_STOCK_RECEIVED],
    "session.delivery.feed": [topics.DELIVERY_POINTS_UPDATED],
}
SNAPSHOT = {
    "wallets": "SELECT customer_id, balance_minor, status FROM customer_wallets ORDER BY 1",
    "gift cards": "SELECT gift_card_id, balance_minor, status FROM gift_cards ORDER BY 1",
    "bank": "SELECT reference, amount_minor, refunded_minor FROM bank_simulator_book ORDER BY 1",
    "stock": "SELECT sku, warehouse_id, available, reserved FROM stock ORDER BY 1, 2",
    "points": "SELECT point_id, capacity FROM delivery_points ORDER BY 1",
    "sagas": "SELECT saga_type, business_key, status, reason FROM saga_instances ORDER BY 1, 2",
    "ledger": "SELECT count(*), sum(abs(amount_minor)) FROM ledger_entries",
}


@pytest.fixture
async def client(stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as upstream:
        yield upstream


async def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {name: await query(url, sql) for name, sql in SNAPSHOT.items()}


async def drained(stack: EmbeddedStack, timeout_s: float = 60.0) -> None:
    """Every inbound record consumed and committed, and the sagas it moved settled."""
    deadline = time.monotonic() + timeout_s
    for group, names in GROUPS.items():
        while await group_lag(stack.settings(), group, names) > 0:
            assert time.monotonic() < deadline, f"{group} does not catch up"
            await asyncio.sleep(0.2)
    while await query(
        stack.database_url,
        "SELECT 1 FROM saga_instances WHERE status IN ('RUNNING', 'COMPENSATING') LIMIT 1",
    ):
        assert time.monotonic() < deadline, "sagas still running"
        await asyncio.sleep(0.2)


async def every_record(stack: EmbeddedStack, topic: str) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        auto_offset_reset="earliest", enable_auto_commit=False, **admin_kwargs(stack.settings())
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            records += [(r.key, r.value or b"") for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


async def some_business(client: UpstreamClient, seen: c.Outcomes) -> list[str]:
    """A client who tops up, buys a gift card and two orders (one of them cancelled)."""
    buyer = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, buyer)
    await seen.one(buyer.customer_id)
    sku, point_id = c.unique("SKU"), c.unique("PP")
    await client.send(
        topics.STORE_STOCK_RECEIVED, c.stock(sku, 5).model_copy(update={"receipt_id": None})
    )
    await client.send(
        topics.DELIVERY_POINTS_UPDATED, c.point(point_id, 3).model_copy(update={"revision": None})
    )
    money = c.topup(buyer.customer_id, "100")
    gift = c.purchase(buyer.customer_id, "10", c.WALLET)
    good = c.order(buyer.customer_id, [(sku, 2, "5")], point_id, c.WALLET)
    short = c.order(buyer.customer_id, [(sku, 9, "5")], point_id, c.WALLET)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, money)
    await seen.one(money.topup_id)
    for topic, record in (
        (topics.GIFTCARDS_PURCHASE_REQUESTED, gift),
        (topics.ORDERS_SUBMITTED, good),
        (topics.ORDERS_SUBMITTED, short),
    ):
        await client.send(topic, record)
    done = await seen.wait([gift.purchase_id, good.order_id, short.order_id])
    assert [done[k]["status"] for k in (gift.purchase_id, good.order_id, short.order_id)] == [
        "COMPLETED",
        "CONFIRMED",
        "CANCELLED",
    ]
    return [buyer.customer_id, money.topup_id, gift.purchase_id, good.order_id, short.order_id]


async def test_same_records_twice_have_the_effect_of_once(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    seen = c.Outcomes(client)
    buyer = c.customer()
    sku, point_id = c.unique("SKU"), c.unique("PP")
    stock = c.stock(sku, 4).model_copy(update={"receipt_id": None})
    point = c.point(point_id, 2).model_copy(update={"revision": None})
    money = c.topup(buyer.customer_id, "50")
    for _ in range(2):
        await client.send(topics.CUSTOMERS_REGISTERED, buyer)
        await client.send(topics.STORE_STOCK_RECEIVED, stock)
        await client.send(topics.DELIVERY_POINTS_UPDATED, point)
    await seen.one(buyer.customer_id)
    for _ in range(2):
        await client.send(topics.WALLETS_TOPUP_REQUESTED, money)
    await seen.one(money.topup_id)
    paid = c.order(buyer.customer_id, [(sku, 3, "10")], point_id, c.WALLET, cost="0")
    for _ in range(2):
        await client.send(topics.ORDERS_SUBMITTED, paid)
    assert (await seen.one(paid.order_id))["status"] == "CONFIRMED"
    await drained(stack)

    assert await c.wallet_balance(stack.database_url, buyer.customer_id) == 20
    assert await c.available(stack.database_url, sku) == (1, 3)
    assert await c.capacity(stack.database_url, point_id) == 1
    for key in (buyer.customer_id, money.topup_id, paid.order_id):
        assert (
            len(
                await query(
                    stack.database_url,
                    "SELECT 1 FROM saga_instances WHERE business_key = :k",
                    k=key,
                )
            )
            == 1
        )


async def test_whole_topics_republished_change_nothing(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    seen = c.Outcomes(client)
    ours = await some_business(client, seen)
    await drained(stack)
    before = await snapshot(stack.database_url)
    outcomes_before = {key: len(seen.seen[key]) for key in ours}

    republished = 0
    for topic in INBOUND:
        for key, value in await every_record(stack, topic):
            await client.send_raw(topic, key.decode() if key else None, value)
            republished += 1
    assert republished >= 7
    await drained(stack)
    await seen.settle(1.0)  # a duplicate outcome, if any were published, arrives by now

    assert await snapshot(stack.database_url) == before
    for key in ours:
        assert len(seen.seen[key]) == outcomes_before[key], f"{key} got another outcome"


async def test_every_outcome_has_its_contracts_key_and_cloudevents_headers(
    client: UpstreamClient,
) -> None:
    """CONTRACT.md: each status topic is keyed by its business id, notifications.sent by the
    recipient, and everything the project publishes carries every CloudEvents header."""
    seen = c.Outcomes(client)
    buyer, *business = await some_business(client, seen)
    await seen.settle(1.0)
    ours = [r for r in seen.records if r.key in {buyer, *business, f"{buyer}@example.com"}]
    keys = {**c.OUTCOME_IDS, topics.NOTIFICATIONS_SENT: "recipient"}
    assert {r.topic for r in ours} == set(keys)
    for record in ours:
        document = json.loads(record.value)
        names = keys[record.topic]
        assert record.key in [
            document.get(n) for n in ((names,) if isinstance(names, str) else names)
        ]
        headers = record.headers
        assert all(headers.get(name) for name in CLOUDEVENTS), (record.topic, headers)
        assert headers[H_TYPE].endswith(".v1")
        assert datetime.fromisoformat(headers[H_TIME]).tzinfo is not None  # RFC 3339
    ids = [r.headers[H_ID] for r in ours]
    assert len(ids) == len(set(ids)), "ce_id unique per message"


async def test_a_key_reused_for_another_request_is_dead_lettered_and_changes_nothing(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    """The first record of a key decides; one asking something else under that key is kept,
    with its reason, on the topic's DLQ instead of being dropped. A repeat of the first, however
    spelled, is not; nor is any repeat of a saga an earlier release started (no digest)."""
    seen = c.Outcomes(client)
    buyer = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, buyer)
    await seen.one(buyer.customer_id)
    money = c.topup(buyer.customer_id, "50")
    await client.send(topics.WALLETS_TOPUP_REQUESTED, money)
    assert (await seen.one(money.topup_id))["status"] == "COMPLETED"

    respelled = money.model_dump(mode="json") | {"amount": "50.00", "note": "a producer's retry"}
    await client.send_raw(
        topics.WALLETS_TOPUP_REQUESTED,
        money.topup_id,
        json.dumps(dict(reversed(respelled.items()))).encode(),
    )
    await client.send(
        topics.WALLETS_TOPUP_REQUESTED, money.model_copy(update={"amount": Decimal("70")})
    )
    first = c.topup(buyer.customer_id, "5")
    await client.send(topics.WALLETS_TOPUP_REQUESTED, first)  # likely in one batch with
    await client.send(  # its rival
        topics.WALLETS_TOPUP_REQUESTED, first.model_copy(update={"amount": Decimal("6")})
    )
    assert (await seen.one(first.topup_id))["status"] == "COMPLETED"
    await drained(stack)
    await execute(
        stack.database_url,
        "UPDATE saga_instances SET request_digest = NULL WHERE business_key = :key",
        key=first.topup_id,
    )
    await client.send(
        topics.WALLETS_TOPUP_REQUESTED, first.model_copy(update={"amount": Decimal("7")})
    )
    await drained(stack)
    await seen.settle(1.0)

    dlq = topics.dlq(topics.WALLETS_TOPUP_REQUESTED)
    ours = {money.topup_id, first.topup_id}
    async with UpstreamClient(client.settings, watch=[dlq]) as reader:
        letters = await wait_for(reader, dlq, lambda r: r.key in ours, count=2)
        await asyncio.sleep(1.0)
        while not reader.received.empty():
            late = reader.received.get_nowait()
            assert late.key not in ours, f"another letter: {late.headers.get('dlq_error')}"
    assert sorted((r.key, json.loads(r.value)["amount"]) for r in letters) == sorted(
        [(money.topup_id, "70"), (first.topup_id, "6")]
    )
    for letter in letters:
        assert letter.headers["dlq_reason"] == "KEY_REUSED"
        assert "first one decides" in letter.headers["dlq_error"]
    assert await c.wallet_balance(stack.database_url, buyer.customer_id) == 55
    assert [len(seen.seen[key]) for key in (money.topup_id, first.topup_id)] == [1, 1]
