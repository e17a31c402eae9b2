"""The card-issuance saga through the contract topics, on the embedded broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from events import topics
from events.cards import CardType
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration.helpers import card_outcomes, card_request, query, unique, wait_for

pytestmark = pytest.mark.usefixtures("running_app")

CE_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_correlationid",
    "ce_causationid",
}


@pytest.fixture
async def client(stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    watched = [topics.CARDS_STATUS, topics.dlq(topics.CARDS_ISSUE_REQUESTED)]
    async with UpstreamClient(stack.settings(), watch=watched) as upstream:
        yield upstream


async def test_card_is_issued_with_masked_number_and_empty_wallet(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    request = card_request()
    await client.send(topics.CARDS_ISSUE_REQUESTED, request)
    outcome = (await card_outcomes(client, [request.request_id]))[request.request_id]

    assert outcome.status == "ISSUED"
    assert outcome.reason is None
    assert outcome.balance == Decimal(0)
    assert outcome.currency == "KZT"
    assert outcome.card_id
    assert outcome.masked_number
    assert re.fullmatch(r"\d{4}\*{8}\d{4}", outcome.masked_number)

    rows = await query(
        stack.database_url,
        "SELECT status, number_hash, masked_number FROM cards WHERE card_id = :card_id",
        card_id=outcome.card_id,
    )
    assert len(rows) == 1
    assert rows[0][0] == "ACTIVE"
    assert re.fullmatch(r"[0-9a-f]{64}", str(rows[0][1]))
    wallets = await query(
        stack.database_url,
        "SELECT status, balance_minor, currency FROM card_wallets WHERE card_id = :c",
        c=outcome.card_id,
    )
    assert wallets == [("OPEN", 0, "KZT")]


async def test_outcome_carries_cloudevents_headers_and_request_key(client: UpstreamClient) -> None:
    request = card_request()
    await client.send(topics.CARDS_ISSUE_REQUESTED, request, with_headers=False)
    records = await wait_for(
        client, topics.CARDS_STATUS, lambda r: r.key == request.request_id, count=1
    )
    assert records[0].headers.keys() >= CE_HEADERS
    assert records[0].headers["ce_specversion"] == "1.0"


async def test_no_full_card_number_is_stored(stack: EmbeddedStack, client: UpstreamClient) -> None:
    request = card_request()
    await client.send(topics.CARDS_ISSUE_REQUESTED, request)
    await card_outcomes(client, [request.request_id])
    dump = await query(stack.database_url, "SELECT row_to_json(c)::text FROM cards c")
    history = await query(stack.database_url, "SELECT row_to_json(h)::text FROM saga_history h")
    sagas = await query(stack.database_url, "SELECT data::text FROM saga_instances")
    for (text_,) in dump + history + sagas:
        assert not re.search(r"(?<![\w-])\d{16}(?![\w-])", str(text_)), text_


async def test_duplicate_requests_start_one_saga(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    request = card_request()
    for _ in range(3):
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
    await client.send(topics.CARDS_ISSUE_REQUESTED, request, with_headers=False)
    records = await wait_for(
        client, topics.CARDS_STATUS, lambda r: r.key == request.request_id, count=1
    )
    await asyncio.sleep(2.0)
    while not client.received.empty():
        extra = client.received.get_nowait()
        assert extra.key != request.request_id, "a duplicate request produced a second outcome"
    assert len(records) == 1
    sagas = await query(
        stack.database_url,
        "SELECT count(*) FROM saga_instances WHERE business_key = :k",
        k=request.request_id,
    )
    assert sagas == [(1,)]


async def test_user_with_an_active_card_is_rejected(client: UpstreamClient) -> None:
    user = unique("holder")
    first = card_request(user)
    await client.send(topics.CARDS_ISSUE_REQUESTED, first)
    assert (await card_outcomes(client, [first.request_id]))[first.request_id].status == "ISSUED"

    second = card_request(user)
    physical = card_request(user, card_type=CardType.PHYSICAL)
    await client.send(topics.CARDS_ISSUE_REQUESTED, second)
    await client.send(topics.CARDS_ISSUE_REQUESTED, physical)
    outcomes = await card_outcomes(client, [second.request_id, physical.request_id])
    assert (outcomes[second.request_id].status, outcomes[second.request_id].reason) == (
        "REJECTED",
        "ACTIVE_CARD_EXISTS",
    )
    assert outcomes[second.request_id].card_id is None
    assert outcomes[physical.request_id].status == "ISSUED"


async def test_four_concurrent_requests_for_one_user_issue_one_card(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    user = unique("racer")
    requests = [card_request(user) for _ in range(4)]
    await asyncio.gather(*(client.send(topics.CARDS_ISSUE_REQUESTED, r) for r in requests))
    outcomes = await card_outcomes(client, [r.request_id for r in requests])
    statuses = sorted((o.status.value, o.reason) for o in outcomes.values())
    assert statuses == [("ISSUED", None)] + [("REJECTED", "ACTIVE_CARD_EXISTS")] * 3
    active = await query(
        stack.database_url,
        "SELECT count(*) FROM cards WHERE user_id = :u AND status = 'ACTIVE'",
        u=user,
    )
    assert active == [(1,)]


async def test_a_request_behind_one_that_fails_issues_the_card(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    """A request meets another of the user's for the type still being issued: it waits for
    that one's end instead of being refused, so when that one fails (billing has no GBP
    wallet) the user still gets a card, and one only."""
    user = unique("behind")
    failing = card_request(user, currency="GBP")
    waiting = [card_request(user) for _ in range(3)]
    for request in (failing, *waiting):
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
    outcomes = await card_outcomes(client, [r.request_id for r in (failing, *waiting)])
    assert outcomes[failing.request_id].status == "REJECTED"
    statuses = sorted(
        (outcomes[r.request_id].status.value, outcomes[r.request_id].reason) for r in waiting
    )
    assert statuses == [("ISSUED", None)] + [("REJECTED", "ACTIVE_CARD_EXISTS")] * 2
    active = await query(
        stack.database_url,
        "SELECT count(*) FROM cards WHERE user_id = :u AND status = 'ACTIVE'",
        u=user,
    )
    assert active == [(1,)]


async def test_billing_refusal_releases_the_card_id(
    client: UpstreamClient, stack: EmbeddedStack
) -> None:
    request = card_request(currency="GBP")
    await client.send(topics.CARDS_ISSUE_REQUESTED, request)
    outcome = (await card_outcomes(client, [request.request_id]))[request.request_id]
    assert (outcome.status, outcome.reason, outcome.card_id) == (
        "REJECTED",
        "UNSUPPORTED_CURRENCY",
        None,
    )

    saga = await query(
        stack.database_url,
        "SELECT id, status FROM saga_instances WHERE business_key = :k",
        k=request.request_id,
    )
    assert saga[0][1] == "ABORTED"
    events = await query(
        stack.database_url,
        "SELECT event, step, message_type FROM saga_history WHERE saga_id = :s ORDER BY id",
        s=saga[0][0],
    )
    assert [e[0] for e in events] == [
        "started",
        "command-sent",
        "reply-received",
        "step-completed",
        "command-sent",
        "reply-received",
        "step-failed",
        "compensation-sent",
        "reply-received",
        "compensated",
        "ended",
    ]
    assert ("compensation-sent", "reserve-card", "ReleaseCard") in events
    card = await query(
        stack.database_url, "SELECT status, card_id FROM cards WHERE saga_id = :s", s=saga[0][0]
    )
    assert card == [("CANCELLED", None)]
    history_times = await query(
        stack.database_url,
        "SELECT count(*) FROM saga_history WHERE saga_id = :s AND at IS NOT NULL",
        s=saga[0][0],
    )
    assert history_times == [(len(events),)]


async def test_poison_records_go_to_the_dlq_and_the_stream_goes_on(client: UpstreamClient) -> None:
    marker = unique("poison")
    long_key = marker + "-" + "k" * 300  # Kafka keys have no limit; the copy keeps it whole
    await client.send_raw(topics.CARDS_ISSUE_REQUESTED, marker, b"{not json")
    await client.send_raw(
        topics.CARDS_ISSUE_REQUESTED,
        marker,
        b'{"request_id": "x", "user_id": "u", "card_type": "gold"}',
    )
    await client.send_raw(topics.CARDS_ISSUE_REQUESTED, long_key, b"[]")
    after = card_request()
    await client.send(topics.CARDS_ISSUE_REQUESTED, after)

    letters = await wait_for(
        client, topics.dlq(topics.CARDS_ISSUE_REQUESTED), lambda r: r.key == marker, count=2
    )
    (long_letter,) = await wait_for(
        client, topics.dlq(topics.CARDS_ISSUE_REQUESTED), lambda r: r.key == long_key, count=1
    )
    assert long_letter.headers["dlq_reason"] == "INVALID_PAYLOAD"
    reasons = sorted(letter.headers["dlq_reason"] for letter in letters)
    assert reasons == ["INVALID_JSON", "INVALID_PAYLOAD"]
    for letter in letters:
        assert letter.headers["dlq_topic"] == topics.CARDS_ISSUE_REQUESTED
        assert letter.headers["dlq_partition"].isdigit()
        assert letter.headers["dlq_offset"].isdigit()
        assert letter.headers["dlq_error"]
    assert (
        b"gold"
        in letters[[lt.headers["dlq_reason"] for lt in letters].index("INVALID_PAYLOAD")].value
    )
    assert (await card_outcomes(client, [after.request_id]))[after.request_id].status == "ISSUED"
