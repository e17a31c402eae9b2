"""The card service HTTP API through HTTP on the embedded stack: seeds 000, 004, 001, 002,
happy paths and error paths, every error a problem detail with its code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events import topics
from events.cards import CardType
from orchestrator.api.auth import dev_token
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay, Publisher
from orchestrator.errors import KafkaUnavailable
from orchestrator.settings import Settings
from schemas.card_service import api_outbox
from tests.integration import commerce as c
from tests.integration.helpers import card_outcomes, card_request, execute, query, unique


@pytest.fixture
async def api(running_app: Application) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{running_app.settings.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture
def token(running_app: Application) -> str:
    return dev_token(running_app.settings, unique("user"))


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def json_money(value: object) -> Decimal:
    """Money in an answer is a JSON number (seeds 000, 002), never a string."""
    assert isinstance(value, int | float), value
    assert not isinstance(value, bool), value
    return Decimal(str(value))


# -- seed 000 -------------------------------------------------------------------------------


async def test_virtual_card_is_issued_once_per_user(api: httpx.AsyncClient, token: str) -> None:
    first = await api.post("/v1/cards/virtual", headers=bearer(token))
    assert first.status_code == 201, first.text
    card = first.json()
    assert set(card) == {"cardId", "maskedId", "balance", "currency"}
    assert card["maskedId"][4:12] == "********"
    assert json_money(card["balance"]) == 0

    again = await api.post("/v1/cards/virtual", headers=bearer(token), json={})
    problem(again, 409, "CARD-4090")
    # seed 000 checks for an active card first, whatever else the request asks
    other = await api.post("/v1/cards/virtual", headers=bearer(token), json={"currency": "GBP"})
    problem(other, 409, "CARD-4090")


async def test_a_request_id_is_one_request(
    api: httpx.AsyncClient, running_app: Application, token: str
) -> None:
    asked = {"requestId": unique("req"), "currency": "USD"}
    first = await api.post("/v1/cards/virtual", headers=bearer(token), json=asked)
    assert first.status_code == 201, first.text
    again = await api.post("/v1/cards/virtual", headers=bearer(token), json=asked)
    assert again.json() == first.json()
    other_currency = await api.post(
        "/v1/cards/virtual", headers=bearer(token), json=asked | {"currency": "KZT"}
    )
    assert "asked for a USD card" in problem(other_currency, 409, "REQ-4090")["detail"]
    someone_else = dev_token(running_app.settings, unique("user"))
    problem(
        await api.post("/v1/cards/virtual", headers=bearer(someone_else), json=asked),
        409,
        "REQ-4090",
    )


async def test_a_request_id_asked_on_kafka_answers_only_that_request(
    api: httpx.AsyncClient, running_app: Application, stack: EmbeddedStack
) -> None:
    """A request id of ``cards.issue-requested`` (a physical USD card here) sent again over
    HTTP, by another user or for a virtual card, is a conflict: never that card."""
    owner = unique("user")
    request = card_request(owner, CardType.PHYSICAL, "USD")
    async with UpstreamClient(stack.settings(), watch=[topics.CARDS_STATUS]) as client:
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        outcome = (await card_outcomes(client, [request.request_id]))[request.request_id]
    assert outcome.status == "ISSUED"
    for user in (unique("user"), owner):
        asked = await api.post(
            "/v1/cards/virtual",
            headers=bearer(dev_token(running_app.settings, user)),
            json={"requestId": request.request_id, "currency": "USD"},
        )
        problem(asked, 409, "REQ-4090")
    status = await api.get(
        f"/v1/cards/virtual/requests/{request.request_id}",
        headers=bearer(dev_token(running_app.settings, unique("user"))),
    )
    problem(status, 404, "RES-4040")


async def test_virtual_card_needs_a_good_token(
    api: httpx.AsyncClient, running_app: Application
) -> None:
    settings = running_app.settings
    expired = jwt.encode(
        {"sub": "u", "exp": int(time.time()) - 10}, settings.jwt_secret.get_secret_value()
    )
    forged = jwt.encode({"sub": "u", "exp": int(time.time()) + 600}, "not-the-key-" * 4)
    no_user = jwt.encode({"exp": int(time.time()) + 600}, settings.jwt_secret.get_secret_value())
    unusable = jwt.encode(
        {"sub": "john doe/1", "exp": int(time.time()) + 600}, settings.jwt_secret.get_secret_value()
    )
    for headers in (
        bearer(no_user),
        bearer(unusable),
        {},
        bearer(expired),
        bearer(forged),
        bearer("garbage"),
        {"Authorization": "Basic x"},
    ):
        answer = await api.post("/v1/cards/virtual", headers=headers)
        problem(answer, 401, "AUTH-4010")
        challenge = answer.headers["www-authenticate"]
        tokenless = not headers.get("Authorization", "").startswith("Bearer")
        # no credentials at all: the challenge names no error (RFC 6750 3.1)
        assert challenge == ("Bearer" if tokenless else 'Bearer error="invalid_token"')
        for body in (b"{not json", b'{"currency": 7}', b"\xff\xfe"):  # the token comes first
            answer = await api.post(
                "/v1/cards/virtual",
                headers={**headers, "content-type": "application/json"},
                content=body,
            )
            problem(answer, 401, "AUTH-4010")
            assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_virtual_card_refused_currency_and_bad_body(
    api: httpx.AsyncClient, token: str
) -> None:
    refused = await api.post("/v1/cards/virtual", headers=bearer(token), json={"currency": "GBP"})
    assert problem(refused, 422, "CARD-4220")["reason"] == "UNSUPPORTED_CURRENCY"
    bad = await api.post("/v1/cards/virtual", headers=bearer(token), json={"currency": 7})
    problem(bad, 400, "VAL-0001")
    broken = await api.post(
        "/v1/cards/virtual",
        headers={**bearer(token), "content-type": "application/json"},
        content=b"{not json",
    )
    assert problem(broken, 400, "VAL-0001")["detail"] == "Malformed JSON body"


async def test_a_json_body_sent_as_another_media_type_is_415(api: httpx.AsyncClient) -> None:
    body = json.dumps({"cardNumber": card_number(), "creditLimitUsd": 50}).encode()
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        sent = await api.post("/cards", content=body, headers={"content-type": media_type})
        assert media_type in problem(sent, 415, "HTTP-4150")["detail"]
    untyped = await api.post("/cards", content=body)  # no Content-Type: read as JSON
    assert untyped.status_code == 201, untyped.text


class Unreachable:
    """A publisher whose broker is never there: what the API writes waits in its outbox."""

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        raise KafkaUnavailable("the broker is away")


@contextlib.asynccontextmanager
async def api_alone(
    running_app: Application, settings: Settings, publisher: Publisher
) -> AsyncIterator[httpx.AsyncClient]:
    """A second HTTP API on the session's database, with its own settings and publisher."""
    from orchestrator.api.app import build_api
    from orchestrator.api.server import HttpServer

    relay = OutboxRelay(running_app.engine, api_outbox, publisher)
    server = HttpServer(
        build_api(settings, running_app.engine, relay), "127.0.0.1", settings.http_port
    )
    await server.start()
    try:
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
    finally:
        await server.stop()


async def settled(api: httpx.AsyncClient, url: str, user: str) -> dict[str, Any]:
    """The answer of a status URL once it no longer says the saga is running."""
    deadline = time.monotonic() + 30
    while (answer := (await api.get(url, headers=bearer(user))).json())["status"] in (
        "RUNNING",
        "PENDING",
    ):
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    found: dict[str, Any] = answer
    return found


async def test_slow_saga_answers_202_with_a_status_url(
    stack: EmbeddedStack, running_app: Application
) -> None:
    settings = stack.settings(api_saga_wait_s=0)
    async with api_alone(running_app, settings, running_app.publisher) as api:
        user = dev_token(settings, unique("patient"))
        accepted = await api.post("/v1/cards/virtual", headers=bearer(user))
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["statusUrl"]
        assert (accepted.headers["Location"], accepted.headers["Retry-After"]) == (url, "1")
        status = await settled(api, url, user)
        assert status["status"] == "ISSUED"
        assert status["card"]["maskedId"]
        other = await api.get(url, headers=bearer(dev_token(settings, "someone-else")))
        problem(other, 404, "RES-4040")


async def test_requests_outlive_a_failed_publish(
    stack: EmbeddedStack, running_app: Application
) -> None:
    """The record that starts a saga commits with the request; the broker away at that
    moment, the process's sweeper publishes it later and the saga runs all the same."""
    settings = stack.settings(api_saga_wait_s=0)
    async with api_alone(running_app, settings, Unreachable()) as api:
        user = dev_token(settings, unique("unlucky"))
        accepted = await api.post("/v1/cards/virtual", headers=bearer(user))
        assert accepted.status_code == 202, accepted.text
        card = await issue(api, credit_limit=100)
        pay = await api.post(
            f"/api/cards/{card['id']}/invoice/pay",
            json={"source_account_id": unique("nobody"), "amount": 1},
        )
        assert pay.status_code == 202, pay.text
        assert pay.headers["Location"] == pay.json()["status_url"]
        assert await query(
            stack.database_url,
            f"SELECT key FROM {api_outbox.name} WHERE key IN (:r, :p) ORDER BY id",
            r=accepted.json()["requestId"],
            p=pay.json()["payment_id"],
        ) == [(accepted.json()["requestId"],), (pay.json()["payment_id"],)]
        assert (await settled(api, accepted.json()["statusUrl"], user))["status"] == "ISSUED"
        paid = await settled(api, pay.json()["status_url"], user)
        assert (paid["status"], paid["reason"]) == ("REJECTED", "UNKNOWN_CUSTOMER")


# -- seeds 004 and 001 ----------------------------------------------------------------------


def card_number() -> str:
    return str(4_000_000_000_000_000 + time.time_ns() % 10**15)[:16]


async def test_card_created_with_location_and_hashed_number(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    number = card_number()
    created = await api.post("/cards", json={"cardNumber": number, "creditLimitUsd": 1000.00})
    assert created.status_code == 201, created.text
    card_id = created.json()["cardId"]
    assert created.headers["location"] == f"/cards/{card_id}"
    fetched = await api.get(created.headers["location"])
    assert json_money(fetched.json()["creditLimitUsd"]) == Decimal("1000.00")
    stored = await query(stack.database_url, "SELECT * FROM registered_cards")
    assert number not in str(stored)

    duplicate = await api.post("/cards", json={"cardNumber": number, "creditLimitUsd": 5})
    assert problem(duplicate, 409, "DB-4090")["detail"] == "A card with this number already exists"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"cardNumber": "123", "creditLimitUsd": 10}, "Card number must be exactly 16 digits"),
        (
            {"cardNumber": "41111111111111aa", "creditLimitUsd": 10},
            "Card number must be exactly 16 digits",
        ),
        (
            {"cardNumber": "4111111111111111", "creditLimitUsd": -5},
            "Credit limit must be greater than zero",
        ),
        (
            {"cardNumber": "4111111111111111", "creditLimitUsd": 0},
            "Credit limit must be greater than zero",
        ),
        ({"cardNumber": "4111111111111111", "creditLimitUsd": "lots"}, None),
        ({"cardNumber": 4111111111111111, "creditLimitUsd": 10}, None),
        ({"cardNumber": "4111111111111111"}, "creditLimitUsd is required"),
        (
            {"cardNumber": " 4444444444444444 ", "creditLimitUsd": 10},
            "Card number must be exactly 16 digits",
        ),
        ({"cardNumber": "4444444444444444\n", "creditLimitUsd": 10}, None),
        ({"cardNumber": "4" * 2000, "creditLimitUsd": 10}, "Card number must be exactly 16 digits"),
    ],
)
async def test_card_validation(
    api: httpx.AsyncClient, body: dict[str, object], detail: str | None
) -> None:
    answer = problem(await api.post("/cards", json=body), 400, "VAL-0001")
    if detail is not None:
        assert answer["detail"] == detail


async def test_purchase_stored_in_cents_with_location(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    card_id = (
        await api.post("/cards", json={"cardNumber": card_number(), "creditLimitUsd": 50})
    ).json()["cardId"]
    made = await api.post(
        f"/cards/{card_id}/purchases",
        json={
            "description": "Coffee at Starbucks",
            "transactionDate": "2024-12-20",
            "amountUsd": 4.50,
        },
    )
    assert made.status_code == 201, made.text
    purchase_id = made.json()["purchaseId"]
    assert made.headers["location"] == f"/cards/{card_id}/purchases/{purchase_id}"
    assert json_money((await api.get(made.headers["location"])).json()["amountUsd"]) == Decimal(
        "4.50"
    )
    rows = await query(
        stack.database_url,
        "SELECT amount_cents, description FROM card_purchases WHERE purchase_id = :p",
        p=purchase_id,
    )
    assert rows == [(450, "Coffee at Starbucks")]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"description": "x" * 51, "transactionDate": "2024-12-20", "amountUsd": 1},
            "Description cannot exceed 50 characters",
        ),
        (
            {"description": "ok", "transactionDate": "20/12/2024", "amountUsd": 1},
            "Transaction date must be an ISO 8601 date (YYYY-MM-DD)",
        ),
        (
            {"description": "ok", "transactionDate": "2024-02-30", "amountUsd": 1},
            "Transaction date must be an ISO 8601 date (YYYY-MM-DD)",
        ),
        (
            {"description": "ok", "transactionDate": "2024-12-20", "amountUsd": -1},
            "Amount must be greater than zero",
        ),
        (
            {"description": "ok", "transactionDate": "2024-12-20", "amountUsd": 1.005},
            "Amount must have at most 2 decimal places",
        ),
        (
            {"description": "", "transactionDate": "2024-12-20", "amountUsd": 1},
            "Description is required",
        ),
        (
            {"description": "   ", "transactionDate": "2024-12-20", "amountUsd": 1},
            "Description is required",
        ),
        (
            {"description": " " + "x" * 50 + " ", "transactionDate": "2024-12-20", "amountUsd": 1},
            "Description cannot exceed 50 characters",
        ),
        (
            {"description": "x" * 20_000, "transactionDate": "2024-12-20", "amountUsd": 1},
            "Description cannot exceed 50 characters",
        ),
        (
            {"description": "ok", "transactionDate": "2" * 500, "amountUsd": 1},
            "Transaction date must be an ISO 8601 date (YYYY-MM-DD)",
        ),
        *(
            (
                {"description": "ok", "transactionDate": date, "amountUsd": 1},
                "Transaction date must be an ISO 8601 date (YYYY-MM-DD)",
            )
            for date in ("2024-W51-5", "2024-355", "20241220", " 2024-12-20", "2024-12-20T10:00")
        ),
    ],
)
async def test_purchase_validation(
    api: httpx.AsyncClient, body: dict[str, object], detail: str
) -> None:
    card_id = (
        await api.post("/cards", json={"cardNumber": card_number(), "creditLimitUsd": 50})
    ).json()["cardId"]
    answer = await api.post(f"/cards/{card_id}/purchases", json=body)
    assert problem(answer, 400, "VAL-0001")["detail"] == detail


async def test_purchase_on_unknown_card_is_404(api: httpx.AsyncClient) -> None:
    body = {"description": "Tea", "transactionDate": "2024-12-20", "amountUsd": 2}
    for card_id in ("3fa85f64-5717-4562-b3fc-2c963f66afa6", "not-a-uuid"):
        answer = problem(await api.post(f"/cards/{card_id}/purchases", json=body), 404, "RES-4040")
        assert answer["detail"] == f"Card with ID {card_id} not found"


async def test_a_card_number_sent_by_mistake_is_not_sent_back_whole(
    api: httpx.AsyncClient,
) -> None:
    """In a path or as an amount: the problem detail names it masked, as the logs do."""
    body = {"description": "Tea", "transactionDate": "2024-12-20", "amountUsd": 2}
    lost = problem(await api.post("/cards/4111111111111111/purchases", json=body), 404, "RES-4040")
    assert lost["detail"] == "Card with ID 4111********1111 not found"
    assert lost["instance"] == "/cards/4111********1111/purchases"
    typed = {"cardNumber": "4000056655665556", "creditLimitUsd": "4012 8888 8888 1881"}
    wrong = problem(await api.post("/cards", json=typed), 400, "VAL-0001")
    assert "4012 **** **** 1881" in wrong["detail"]
    assert "8888 8888" not in str(wrong)


async def test_a_card_number_in_free_text_is_stored_and_answered_masked(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    card_id = (
        await api.post("/cards", json={"cardNumber": card_number(), "creditLimitUsd": 50})
    ).json()["cardId"]
    body = {"description": "paid with 4111111111111111", "transactionDate": "2024-12-20"}
    made = await api.post(f"/cards/{card_id}/purchases", json=body | {"amountUsd": 1})
    assert (await api.get(made.headers["location"])).json()["description"] == (
        "paid with 4111********1111"
    )
    card = await issue(api, credit_limit=100)
    held = await authorize(api, card["id"], "1", merchant_name="shop 4012 8888 8888 1881")
    assert held.status_code == 200, held.text
    listed = (await api.get(f"/api/cards/{card['id']}/transactions")).json()
    assert "shop 4012 **** **** 1881" in str(listed)
    challenge = await api.post(
        "/api/3ds/init",
        json={
            "card_id": card["id"],
            "amount": 1,
            "merchant_name": "5555555555554444",
            "return_url": "https://merchant.example/back",
        },
    )
    stored = await query(
        stack.database_url,
        "SELECT description FROM card_purchases WHERE card_id = :c",
        c=card_id,
    )
    pareq = base64.b64decode(challenge.json()["pareq"]).decode()
    assert "5555********4444" in pareq
    seen = str([held.json(), listed, challenge.json(), pareq, stored])
    assert not any(pan in seen for pan in ("4111111111111111", "8888 8888", "5555555555554444"))


_OTHER_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


async def test_an_id_is_one_spelling_of_ascii_hex_and_answers_name_it_so(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    """``uuid.UUID`` alone reads other scripts' digits and spaces around an id: a purchase
    was stored, then its Location header (the path's text) failed the answer with a 500."""
    card_id = (
        await api.post("/cards", json={"cardNumber": card_number(), "creditLimitUsd": 50})
    ).json()["cardId"]
    body = {"description": "Tea", "transactionDate": "2024-12-20", "amountUsd": 2}
    for spelling in (
        card_id.translate(_OTHER_DIGITS),
        f"%20{card_id}",
        f"%0A{card_id}",
        card_id * 2,  # too long to be anything's id: not found either
    ):
        problem(await api.post(f"/cards/{spelling}/purchases", json=body), 404, "RES-4040")
        problem(await api.get(f"/api/cards/{spelling}"), 404, "RES-4040")
    made = await api.post(f"/cards/{card_id.upper()}/purchases", json=body)
    assert made.headers["location"].startswith(f"/cards/{card_id}/purchases/")
    stored = await query(
        stack.database_url, "SELECT count(*) FROM card_purchases WHERE card_id = :c", c=card_id
    )
    assert stored == [(1,)]

    card = await issue(api)
    other = card["id"].translate(_OTHER_DIGITS)
    problem(await api.get(f"/api/cards/{other}/transactions"), 404, "RES-4040")
    problem(await api.get(f"/api/cards/{other}/invoice"), 404, "RES-4040")
    upper = card["id"].upper()
    assert (await api.get(f"/api/cards/{upper}/transactions")).json()["card_id"] == card["id"]
    assert (await api.get(f"/api/cards/{upper}/invoice")).json()["card_id"] == card["id"]


async def test_api_serves_the_asyncapi_document(api: httpx.AsyncClient) -> None:
    document = (await api.get("/asyncapi.json")).json()
    assert "orders.submitted" in document["channels"]
    page = await api.get("/asyncapi")
    assert page.headers["content-type"].startswith("text/html")


async def test_unknown_route_method_and_huge_body_are_problems(api: httpx.AsyncClient) -> None:
    problem(await api.get("/nowhere"), 404, "RES-4040")
    problem(await api.post("/cards/", json={}), 404, "RES-4040")  # no redirect to /cards
    problem(await api.delete("/cards"), 405, "HTTP-4050")
    huge = b'{"cardNumber": "' + b"4" * 2_000_000 + b'", "creditLimitUsd": 1}'
    sent = await api.post("/cards", content=huge, headers={"content-type": "application/json"})
    problem(sent, 413, "HTTP-4130")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the body is counted
        for start in range(0, len(huge), 64_000):
            yield huge[start : start + 64_000]

    streamed = await api.post(
        "/cards", content=chunks(), headers={"content-type": "application/json"}
    )
    problem(streamed, 413, "HTTP-4130")


# -- seed 002 -------------------------------------------------------------------------------


async def issue(api: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    body = {
        "account_id": unique("acc"),
        "type": "CREDIT",
        "variant": "VIRTUAL",
        "credit_limit": 5000.00,
    }
    body.update(overrides)
    answer = await api.post("/api/cards", json=body)
    assert answer.status_code == 201, answer.text
    card: dict[str, Any] = answer.json()
    assert answer.headers["location"] == f"/api/cards/{card['id']}"
    return card


async def authorize(
    api: httpx.AsyncClient, card_id: str, amount: str, **extra: object
) -> httpx.Response:
    body = {
        "card_id": card_id,
        "amount": amount,
        "currency": "BRL",
        "merchant_name": "Loja ABC",
        "merchant_category": "5411",
        "installments": 1,
    }
    body.update(extra)
    return await api.post("/api/authorize", json=body)


async def test_card_service_card_lifecycle(api: httpx.AsyncClient, token: str) -> None:
    card = await issue(api)
    assert card["status"] == "ACTIVE"
    assert (card["type"], card["variant"], card["brand"]) == ("CREDIT", "VIRTUAL", "MASTERCARD")
    assert json_money(card["credit_limit"]) == json_money(card["available_limit"]) == 5000
    assert len(card["last_four"]) == 4
    assert (await api.get(f"/api/cards/{card['id']}")).json()["id"] == card["id"]
    head = await api.head(f"/api/cards/{card['id']}")
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0, "the GET's length"
    assert (await api.head(f"/api/cards/{uuid.uuid4()}")).status_code == 404
    listed = (await api.get(f"/api/cards/account/{card['account_id']}")).json()
    assert [c["id"] for c in listed["cards"]] == [card["id"]]

    problem(await api.get(f"/api/cards/{card['id']}/details"), 401, "AUTH-4010")
    details = (await api.get(f"/api/cards/{card['id']}/details", headers=bearer(token))).json()
    assert details["card_number"].endswith(card["last_four"])
    assert "*" * 8 in details["card_number"]
    assert details["cvv"] == "***"

    blocked = await api.post(f"/api/cards/{card['id']}/block", json={"reason": "LOST"})
    assert (blocked.json()["status"], blocked.json()["block_reason"]) == ("BLOCKED", "LOST")
    declined = problem(await authorize(api, card["id"], "10"), 403, "CARD-4030")
    history = (await api.get(f"/api/cards/{card['id']}/transactions")).json()
    assert [t["id"] for t in history["transactions"]] == [declined["transaction_id"]]
    assert history["transactions"][0]["status"] == "DECLINED"
    problem(await api.post(f"/api/cards/{card['id']}/unblock"), 403, "CARD-4030")
    problem(
        await api.post(f"/api/cards/{card['id']}/block", json={"reason": "BORED"}), 400, "VAL-0001"
    )
    problem(
        await api.post(f"/api/cards/{card['id']}/block", json={"reason": " LOST "}),
        400,
        "VAL-0001",
    )

    other = await issue(api, type="DEBIT", credit_limit=None, variant="PHYSICAL")
    await api.post(f"/api/cards/{other['id']}/block", json={"reason": "DAMAGED"})
    assert (await api.post(f"/api/cards/{other['id']}/unblock")).json()["status"] == "ACTIVE"
    no_invoice = problem(
        await api.post(
            f"/api/cards/{other['id']}/invoice/pay",
            json={"source_account_id": "c-1", "amount": 10},
        ),
        422,
        "PAY-4220",
    )
    assert no_invoice["reason"] == "NO_INVOICE"
    problem(await api.get(f"/api/cards/{other['id']}/invoice"), 404, "RES-4040")
    problem(
        await api.post(
            "/api/cards", json={"account_id": "a", "type": "CREDIT", "variant": "VIRTUAL"}
        ),
        400,
        "VAL-0001",
    )


async def test_authorize_capture_reverse_and_limits(api: httpx.AsyncClient) -> None:
    card = await issue(api, credit_limit=1000)
    approved = await authorize(api, card["id"], "150.00")
    assert approved.status_code == 200, approved.text
    auth = approved.json()
    assert (auth["status"], auth["transaction_status"]) == ("APPROVED", "AUTHORIZED")
    assert len(auth["authorization_code"]) == 6
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 850

    captured = (await api.post(f"/api/capture/{auth['id']}", json={"amount": 100})).json()
    assert (captured["status"], json_money(captured["captured_amount"])) == ("CAPTURED", 100)
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 900
    problem(await api.post(f"/api/capture/{auth['id']}", json={"amount": 1}), 422, "TXN-4220")
    reversed_ = (
        await api.post(
            f"/api/reverse/{auth['id']}", json={"amount": 100, "reason": "CUSTOMER_REQUEST"}
        )
    ).json()
    assert reversed_["status"] == "REVERSED"
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 1000

    held = (await authorize(api, card["id"], "20")).json()
    assert (await api.post(f"/api/reverse/{held['id']}")).json()["status"] == "REVERSED"

    # part of a hold voided, the rest captured: reversing the capture refunds all of it
    partly = (await authorize(api, card["id"], "100")).json()
    await api.post(f"/api/reverse/{partly['id']}", json={"amount": 30})
    await api.post(f"/api/capture/{partly['id']}")
    whole = (await api.post(f"/api/reverse/{partly['id']}")).json()
    assert (whole["status"], json_money(whole["reversed_amount"])) == ("REVERSED", 100)
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 1000

    limits = await api.patch(
        f"/api/cards/{card['id']}/limits", json={"transaction_limit": 100, "daily_limit": 300}
    )
    assert json_money(limits.json()["transaction_limit"]) == 100
    over = problem(await authorize(api, card["id"], "150"), 422, "TXN-4220")
    assert "per-transaction" in over["detail"]
    abroad = problem(await authorize(api, card["id"], "10", currency="USD"), 422, "TXN-4220")
    assert "international" in abroad["detail"]
    await api.patch(f"/api/cards/{card['id']}/limits", json={"international_enabled": True})
    assert (await authorize(api, card["id"], "10", currency="USD")).status_code == 200
    problem(
        await authorize(api, card["id"], "10", merchant_name="ACQUIRER_UNAVAILABLE"),
        503,
        "ACQ-5030",
    )
    unchanged = await api.patch(f"/api/cards/{card['id']}/limits", json={})
    assert json_money(unchanged.json()["transaction_limit"]) == 100
    problem(
        await api.patch(f"/api/cards/{card['id']}/limits", json={"international_enabled": 1}),
        400,
        "VAL-0001",
    )
    problem(await authorize(api, "3fa85f64-5717-4562-b3fc-2c963f66afa6", "1"), 404, "RES-4040")
    problem(await api.post("/api/capture/nope"), 404, "RES-4040")

    page = (
        await api.get(f"/api/cards/{card['id']}/transactions", params={"limit": 2, "offset": 1})
    ).json()
    assert (page["limit"], page["offset"], len(page["transactions"])) == (2, 1, 2)
    assert page["total"] >= 5
    problem(
        await api.get(f"/api/cards/{card['id']}/transactions", params={"limit": 0}), 400, "VAL-0001"
    )


async def test_three_d_secure_challenge(api: httpx.AsyncClient) -> None:
    card = await issue(api, credit_limit=1000)
    body = {
        "card_id": card["id"],
        "amount": 500,
        "merchant_name": "E-commerce",
        "return_url": "https://merchant.com/callback",
    }
    started = await api.post("/api/3ds/init", json=body, headers={"Host": "evil.example"})
    assert started.status_code == 200, started.text
    challenge = started.json()
    assert challenge["status"] == "CHALLENGE_REQUIRED"
    assert challenge["pareq"]
    assert challenge["acs_url"] == f"/api/3ds/acs/{challenge['transaction_id']}"  # not the Host
    acs = (await api.get(challenge["acs_url"])).json()
    problem(
        await api.post(
            "/api/3ds/complete",
            json={"transaction_id": challenge["transaction_id"], "pares": "Zm9yZ2Vk"},
        ),
        400,
        "VAL-0001",
    )
    done = await api.post(
        "/api/3ds/complete",
        json={"transaction_id": challenge["transaction_id"], "pares": acs["pares"]},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "APPROVED"

    failing = (await api.post("/api/3ds/init", json=body)).json()
    no = (
        await api.get(f"/api/3ds/acs/{failing['transaction_id']}", params={"authenticate": False})
    ).json()
    problem(
        await api.post(
            "/api/3ds/complete",
            json={"transaction_id": failing["transaction_id"], "pares": no["pares"]},
        ),
        422,
        "TXN-4220",
    )

    down = (
        await api.post("/api/3ds/init", json=body | {"merchant_name": "ACQUIRER_UNAVAILABLE"})
    ).json()
    yes = (await api.get(f"/api/3ds/acs/{down['transaction_id']}")).json()
    completion = {"transaction_id": down["transaction_id"], "pares": yes["pares"]}
    problem(await api.post("/api/3ds/complete", json=completion), 503, "ACQ-5030")
    problem(await api.post("/api/3ds/complete", json=completion), 503, "ACQ-5030")
    page = (await api.get(f"/api/cards/{card['id']}/transactions")).json()
    still = [t for t in page["transactions"] if t["id"] == down["transaction_id"]]
    assert [t["status"] for t in still] == ["PENDING"]  # completed once the acquirer is back


async def test_three_d_secure_goes_by_the_cards_currency_and_refuses_before_the_challenge(
    api: httpx.AsyncClient,
) -> None:
    """The seed's body has no currency: the card's is meant. What the card refuses as it
    stands (blocked, international use off) is declined at init, recorded, unchallenged."""
    card = await issue(api, credit_limit=1000, currency="USD")
    body = {
        "card_id": card["id"],
        "amount": 20,
        "merchant_name": "E-commerce",
        "return_url": "https://merchant.com/callback",
    }
    challenge = (await api.post("/api/3ds/init", json=body)).json()
    acs = (await api.get(challenge["acs_url"])).json()
    completion = {"transaction_id": challenge["transaction_id"], "pares": acs["pares"]}
    done = await api.post("/api/3ds/complete", json=completion)
    assert (done.status_code, done.json()["currency"]) == (200, "USD"), done.text

    abroad = problem(
        await api.post("/api/3ds/init", json=body | {"currency": "EUR"}), 422, "TXN-4220"
    )
    assert abroad["detail"] == "international transactions are disabled on this card"
    await api.post(f"/api/cards/{card['id']}/block", json={"reason": "LOST"})
    blocked = problem(await api.post("/api/3ds/init", json=body), 403, "CARD-4030")
    history = (await api.get(f"/api/cards/{card['id']}/transactions")).json()["transactions"]
    declined = {t["id"]: t["status"] for t in history if t["status"] == "DECLINED"}
    assert declined == {abroad["transaction_id"]: "DECLINED", blocked["transaction_id"]: "DECLINED"}


async def test_a_challenge_nobody_completes_is_declined_once_its_window_passed(
    api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    card = await issue(api, credit_limit=1000)
    body = {
        "card_id": card["id"],
        "amount": 20,
        "merchant_name": "E-commerce",
        "return_url": "https://merchant.com/callback",
    }
    stale, fresh = [(await api.post("/api/3ds/init", json=body)).json() for _ in range(2)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE card_transactions SET created_at = now() - interval '16 minutes' "
                "WHERE transaction_id = CAST(:t AS uuid)"
            ),
            {"t": stale["transaction_id"]},
        )
    history = (await api.get(f"/api/cards/{card['id']}/transactions")).json()["transactions"]
    states = {t["id"]: (t["status"], t["decline_reason"]) for t in history}
    assert states == {
        stale["transaction_id"]: ("DECLINED", "3DS_EXPIRED"),
        fresh["transaction_id"]: ("PENDING", None),
    }


async def test_a_debit_card_has_no_credit_limit_and_pays_at_once(api: httpx.AsyncClient) -> None:
    with_limit = await api.post(
        "/api/cards",
        json={"account_id": "a", "type": "DEBIT", "variant": "VIRTUAL", "credit_limit": 500},
    )
    assert "no credit_limit" in problem(with_limit, 400, "VAL-0001")["detail"]
    card = await issue(api, type="DEBIT", credit_limit=None)
    split = problem(await authorize(api, card["id"], "50", installments=3), 422, "TXN-4220")
    assert "installments" in split["detail"]
    halves = problem(await authorize(api, card["id"], "50", installments=1.5), 400, "VAL-0001")
    assert halves["detail"] == "installments must be a whole number"
    assert (await authorize(api, card["id"], "50")).status_code == 200


async def test_an_account_id_may_hold_an_at_sign(api: httpx.AsyncClient) -> None:
    """A client id of ``customers.registered`` may hold ``@``; its cards are listed by it."""
    account = f"{unique('anna')}@shop"
    card = await issue(api, account_id=account)
    listed = (await api.get(f"/api/cards/account/{account}")).json()
    assert [c["id"] for c in listed["cards"]] == [card["id"]]


async def test_a_blocked_card_is_refused_before_the_acquirer_is_asked(
    api: httpx.AsyncClient,
) -> None:
    card = await issue(api)
    await api.post(f"/api/cards/{card['id']}/block", json={"reason": "STOLEN"})
    problem(
        await authorize(api, card["id"], "10", merchant_name="ACQUIRER_UNAVAILABLE"),
        403,
        "CARD-4030",
    )


async def test_the_daily_limit_counts_an_amount_on_the_day_it_was_approved(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    """An authorization created before midnight and approved after it (a 3-D Secure answer)
    counts on the day of its approval."""
    card = await issue(api, credit_limit=1000)
    await api.patch(f"/api/cards/{card['id']}/limits", json={"daily_limit": 150})
    approved = (await authorize(api, card["id"], "100")).json()
    await execute(
        stack.database_url,
        "UPDATE card_transactions SET created_at = date_trunc('day', now() AT TIME ZONE 'UTC')"
        " AT TIME ZONE 'UTC' - interval '5 minutes' WHERE transaction_id = CAST(:id AS uuid)",
        id=approved["id"],
    )
    over = problem(await authorize(api, card["id"], "100"), 422, "TXN-4220")
    assert "daily limit" in over["detail"]


async def test_a_late_answer_to_a_challenge_is_declined(
    api: httpx.AsyncClient, stack: EmbeddedStack
) -> None:
    card = await issue(api)
    body = {
        "card_id": card["id"],
        "amount": "80",
        "currency": "BRL",
        "merchant_name": "Loja ABC",
        "merchant_category": "5411",
        "return_url": "https://shop.example/back",
    }
    challenge = (await api.post("/api/3ds/init", json=body)).json()
    pares = (await api.get(f"/api/3ds/acs/{challenge['transaction_id']}")).json()["pares"]
    await execute(
        stack.database_url,
        "UPDATE card_transactions SET created_at = now() - interval '20 minutes'"
        " WHERE transaction_id = CAST(:id AS uuid)",
        id=challenge["transaction_id"],
    )
    completion = {"transaction_id": challenge["transaction_id"], "pares": pares}
    late = problem(await api.post("/api/3ds/complete", json=completion), 422, "TXN-4220")
    assert "expired" in late["detail"]
    history = (await api.get(f"/api/cards/{card['id']}/transactions")).json()["transactions"]
    assert [t["status"] for t in history] == ["DECLINED"]
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 5000


async def test_invoice_payment_saga(api: httpx.AsyncClient, stack: EmbeddedStack) -> None:
    card = await issue(api, credit_limit=1000)
    auth = (await authorize(api, card["id"], "300")).json()
    await api.post(f"/api/capture/{auth['id']}")
    invoice = (await api.get(f"/api/cards/{card['id']}/invoice")).json()
    assert json_money(invoice["total_amount"]) == 300
    assert json_money(invoice["minimum_payment"]) == 30
    assert [t["id"] for t in invoice["transactions"]] == [auth["id"]]

    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as client:
        seen = c.Outcomes(client)
        payer = c.customer(currency="BRL")
        await client.send(topics.CUSTOMERS_REGISTERED, payer)
        await seen.one(payer.customer_id)
        money = c.topup(payer.customer_id, "400").model_copy(update={"currency": "BRL"})
        await client.send(topics.WALLETS_TOPUP_REQUESTED, money)
        assert (await seen.one(money.topup_id))["status"] == "COMPLETED"

    pay = f"/api/cards/{card['id']}/invoice/pay"
    paid = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 200})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], json_money(paid.json()["amount"])) == ("PAID", 200)
    assert json_money((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 900
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == 200
    # the purchase refunded after 200 of it was paid: the client keeps those 200 as a credit
    # balance, spendable on top of the limit, and owes nothing
    reverse = f"/api/reverse/{auth['id']}"
    assert (await api.post(reverse, json={"amount": 100})).json()["status"] == "CAPTURED"
    assert (await api.post(reverse, json={"amount": 200})).json()["status"] == "REVERSED"
    card_now = (await api.get(f"/api/cards/{card['id']}")).json()
    assert json_money(card_now["available_limit"]) == 1200
    invoice = (await api.get(f"/api/cards/{card['id']}/invoice")).json()
    assert json_money(invoice["total_amount"]) == json_money(invoice["minimum_payment"]) == 0
    problem(await api.post(reverse, json={"amount": "0.01"}), 422, "TXN-4220")

    too_much = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 150})
    assert problem(too_much, 422, "PAY-4220")["reason"] == "INVOICE_OVERPAID"
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == 200  # refunded
    status = await api.get(
        f"/api/cards/{card['id']}/invoice/payments/{too_much.json()['payment_id']}"
    )
    assert (status.json()["status"], status.json()["reason"]) == ("REJECTED", "INVOICE_OVERPAID")
    poor = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 300})
    assert problem(poor, 422, "PAY-4220")["reason"] == "INSUFFICIENT_FUNDS"
    records = "SELECT status, reason FROM invoice_payments WHERE payment_id = :p"
    for _ in range(100):  # the failure notice closes the payment's record, not awaited
        closed = await query(stack.database_url, records, p=poor.json()["payment_id"])
        if closed != [("PENDING", None)]:
            break
        await asyncio.sleep(0.1)
    assert closed == [("REJECTED", "INSUFFICIENT_FUNDS")]
    stranger = await api.post(pay, json={"source_account_id": unique("nobody"), "amount": 1})
    assert problem(stranger, 422, "PAY-4220")["reason"] == "UNKNOWN_CUSTOMER"
    # an amount on hold is not owed: paying it, then voiding the hold, freed credit twice
    hold = (await authorize(api, card["id"], "150")).json()
    on_hold = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 150})
    assert problem(on_hold, 422, "PAY-4220")["reason"] == "INVOICE_OVERPAID"
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == 200
    assert (await api.post(f"/api/reverse/{hold['id']}")).json()["status"] == "REVERSED"
    card_now = (await api.get(f"/api/cards/{card['id']}")).json()
    assert json_money(card_now["available_limit"]) == 1200

    # a credit balance never takes a card past the largest amount
    largest = await issue(api, credit_limit="9999999999999.99")
    bought = (await authorize(api, largest["id"], "1")).json()
    await api.post(f"/api/capture/{bought['id']}")
    paid = await api.post(
        f"/api/cards/{largest['id']}/invoice/pay",
        json={"source_account_id": payer.customer_id, "amount": 1},
    )
    assert paid.json()["status"] == "PAID", paid.text
    past = problem(await api.post(f"/api/reverse/{bought['id']}"), 422, "TXN-4220")
    assert "would pass 9999999999999.99" in past["detail"]
    assert (await api.get(f"/api/cards/{largest['id']}")).status_code == 200

    # a retry with the same Idempotency-Key is the same payment: paid once
    owing = await issue(api, credit_limit=1000)
    bought = (await authorize(api, owing["id"], "40")).json()
    await api.post(f"/api/capture/{bought['id']}")
    before = await c.wallet_balance(stack.database_url, payer.customer_id)
    pay_owing = f"/api/cards/{owing['id']}/invoice/pay"
    once = {"source_account_id": payer.customer_id, "amount": 40}
    key = {"Idempotency-Key": unique("pay")}
    spelled = f"/api/cards/{owing['id'].upper()}/invoice/pay"  # the same card, spelled otherwise
    first = (await api.post(pay_owing, json=once, headers=key)).json()
    again = (await api.post(spelled, json=once, headers=key)).json()
    assert first["payment_id"] == again["payment_id"]
    assert again["status_url"] == first["status_url"]  # the card's own id, however spelled
    assert (await api.get(spelled.replace("/pay", f"/payments/{first['payment_id']}"))).json()[
        "status"
    ] == "PAID"
    assert (first["status"], again["status"]) == ("PAID", "PAID")
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == before - 40
    other = await api.post(pay_owing, json=once | {"amount": 1}, headers=key)
    assert "used for another payment" in problem(other, 409, "REQ-4090")["detail"]
    await c.ledger_consistent(stack.database_url)


async def test_parallel_authorizations_never_overdraw(api: httpx.AsyncClient) -> None:
    card = await issue(api, credit_limit=100)
    answers = await asyncio.gather(*(authorize(api, card["id"], "10") for _ in range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 10 + [422] * 10
    left = (await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]
    assert json_money(left) == 0


async def test_tolerant_reader_and_token_without_expiry(
    api: httpx.AsyncClient, running_app: Application
) -> None:
    body = {"cardNumber": card_number(), "creditLimitUsd": 10, "nickname": "ignored"}
    assert (await api.post("/cards", json=body)).status_code == 201
    lasting = jwt.encode(
        {"sub": unique("user")}, running_app.settings.jwt_secret.get_secret_value()
    )
    issued = await api.post(
        "/v1/cards/virtual", headers=bearer(lasting), json={"cardType": "virtual"}
    )
    assert issued.status_code == 201, issued.text


# -- deviations a black-box audit found ------------------------------------------------------


async def test_money_in_answers_is_a_json_number(api: httpx.AsyncClient) -> None:
    card = await issue(api, credit_limit="1234567890.57")
    assert (
        json_money(card["credit_limit"])
        == json_money(card["available_limit"])
        == Decimal("1234567890.57")
    )
    approved = await authorize(api, card["id"], "0.57")
    assert '"amount":0.57' in approved.text
    assert json_money(approved.json()["amount"]) == Decimal("0.57")
    limits = await api.patch(f"/api/cards/{card['id']}/limits", json={"daily_limit": "2000.10"})
    assert json_money(limits.json()["daily_limit"]) == Decimal("2000.10")
    assert limits.json()["transaction_limit"] is None
    (tx,) = (await api.get(f"/api/cards/{card['id']}/transactions")).json()["transactions"]
    assert [json_money(tx[key]) for key in ("amount", "captured_amount", "reversed_amount")] == [
        Decimal("0.57"),
        0,
        0,
    ]
    await api.post(f"/api/capture/{approved.json()['id']}")
    invoice = (await api.get(f"/api/cards/{card['id']}/invoice")).json()
    assert (json_money(invoice["total_amount"]), json_money(invoice["minimum_payment"])) == (
        Decimal("0.57"),
        Decimal("0.06"),
    )

    registered = await api.post(
        "/cards", json={"cardNumber": card_number(), "creditLimitUsd": "250.75"}
    )
    fetched = (await api.get(registered.headers["location"])).json()
    assert json_money(fetched["creditLimitUsd"]) == Decimal("250.75")


async def test_openapi_documents_money_answers_as_numbers(api: httpx.AsyncClient) -> None:
    schemas = (await api.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["VirtualCard"]["properties"]["balance"]["type"] == "number"
    credit_limit = schemas["Card"]["properties"]["credit_limit"]["anyOf"]
    assert {kind["type"] for kind in credit_limit} == {"number", "null"}
    for model, member in (("Transaction", "amount"), ("Invoice", "total_amount")):
        assert schemas[model]["properties"][member]["type"] == "number"
    # requests still take a JSON number or a decimal string
    accepted = {kind["type"] for kind in schemas["Authorize"]["properties"]["amount"]["anyOf"]}
    assert accepted == {"number", "string"}


async def test_openapi_documents_the_answers_routes_give(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    for made in ("/cards", "/cards/{cardId}/purchases", "/api/cards"):
        assert "Location" in paths[made]["post"]["responses"]["201"]["headers"], made
    assert "headers" not in paths["/v1/cards/virtual"]["post"]["responses"]["201"]
    assert {"409", "413"} <= paths["/api/cards/{card_id}/invoice/pay"]["post"]["responses"].keys()
    assert "500" in paths["/v1/cards/virtual"]["post"]["responses"]
    problem_members = document["components"]["schemas"]["Problem"]["properties"]
    assert {"code", "reason", "transaction_id", "payment_id"} <= problem_members.keys()


@pytest.mark.parametrize("final", ["LOST", "STOLEN"])
async def test_a_lost_or_stolen_block_is_final(api: httpx.AsyncClient, final: str) -> None:
    url = f"/api/cards/{(await issue(api))['id']}"
    damaged = await api.post(f"{url}/block", json={"reason": "DAMAGED"})
    assert damaged.json()["block_reason"] == "DAMAGED"  # a temporary block may become final
    assert (await api.post(f"{url}/block", json={"reason": final})).status_code == 200
    for reason in ("DAMAGED", "CUSTOMER_REQUEST", "STOLEN" if final == "LOST" else "LOST"):
        refused = problem(await api.post(f"{url}/block", json={"reason": reason}), 403, "CARD-4030")
        assert final in refused["detail"]
    again = await api.post(f"{url}/block", json={"reason": final})
    assert (again.status_code, again.json()["block_reason"]) == (200, final)
    problem(await api.post(f"{url}/unblock"), 403, "CARD-4030")
    assert (await api.get(url)).json()["status"] == "BLOCKED"


NOWHERE = ("%00", "a%00b", "%ED%A0%80")


@pytest.mark.parametrize("bad", NOWHERE)
async def test_unstorable_path_parameters_are_client_errors(
    api: httpx.AsyncClient, token: str, bad: str
) -> None:
    card = await issue(api)
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/cards/{bad}", {}),
        ("GET", f"/api/cards/{bad}/details", {"headers": bearer(token)}),
        ("POST", f"/api/cards/{bad}/block", {"json": {"reason": "LOST"}}),
        ("POST", f"/api/cards/{bad}/unblock", {}),
        ("PATCH", f"/api/cards/{bad}/limits", {"json": {}}),
        ("POST", f"/api/capture/{bad}", {}),
        ("POST", f"/api/reverse/{bad}", {}),
        ("GET", f"/api/3ds/acs/{bad}", {}),
        ("GET", f"/api/cards/{bad}/invoice", {}),
        (
            "POST",
            f"/api/cards/{bad}/invoice/pay",
            {"json": {"source_account_id": "c", "amount": 1}},
        ),
        ("GET", f"/api/cards/{card['id']}/invoice/payments/{bad}", {}),
        ("GET", f"/api/cards/{bad}/transactions", {}),
        ("GET", f"/cards/{bad}", {}),
        ("GET", f"/cards/{bad}/purchases/{bad}", {}),
        (
            "POST",
            f"/cards/{bad}/purchases",
            {"json": {"description": "x", "transactionDate": "2024-12-20", "amountUsd": 1}},
        ),
        ("GET", f"/v1/cards/virtual/requests/{bad}", {"headers": bearer(token)}),
    ]
    for method, url, extra in calls:
        answer = await api.request(method, url, **extra)
        assert answer.status_code in (400, 404), (url, answer.text)
        problem(answer, answer.status_code, "VAL-0001" if answer.status_code == 400 else "RES-4040")
    problem(await api.get(f"/api/cards/account/{bad}"), 400, "VAL-0001")
    for params in (f"limit={bad}", f"offset={bad}"):
        answer = await api.get(f"/api/cards/{card['id']}/transactions?{params}")
        problem(answer, 400, "VAL-0001")
    acs = await api.get(f"/api/3ds/acs/{card['id']}?authenticate={bad}")
    assert acs.status_code in (400, 404), acs.text


@pytest.mark.parametrize("subject", ["a\x00b", "\x00", "a\ud800b"])
async def test_a_token_whose_user_no_database_can_hold_is_refused(
    api: httpx.AsyncClient, running_app: Application, subject: str
) -> None:
    token = jwt.encode(
        {"sub": subject, "exp": int(time.time()) + 600},
        running_app.settings.jwt_secret.get_secret_value(),
    )
    card = await issue(api)
    for method, url in (
        ("POST", "/v1/cards/virtual"),
        ("GET", "/v1/cards/virtual/requests/r-1"),
        ("GET", f"/api/cards/{card['id']}/details"),
    ):
        problem(await api.request(method, url, headers=bearer(token)), 401, "AUTH-4010")


@pytest.mark.parametrize(
    "content",
    [b'{"cardNumber": "\xff\xfe", "creditLimitUsd": 1}', b"[" * 100_000 + b"]" * 100_000],
    ids=["invalid-utf8", "deep-nesting"],
)
async def test_an_unreadable_body_is_a_validation_problem(
    api: httpx.AsyncClient, content: bytes
) -> None:
    for url in ("/cards", "/api/cards", "/api/authorize"):
        sent = await api.post(url, content=content, headers={"content-type": "application/json"})
        assert problem(sent, 400, "VAL-0001")["detail"] == "Malformed JSON body"


async def test_a_missing_body_names_what_it_must_hold(api: httpx.AsyncClient) -> None:
    card = await issue(api)
    for url, members in (
        ("/cards", ("cardNumber", "creditLimitUsd")),
        (f"/api/cards/{card['id']}/block", ("reason",)),
        ("/api/authorize", ("card_id", "amount", "currency", "merchant_name")),
    ):
        for content, start in (
            (b"", "A JSON body is required, with "),
            (b"null", "The body must be a JSON object, with "),
            (b"[1]", "The body must be a JSON object, with "),
        ):
            sent = await api.post(
                url, content=content, headers={"content-type": "application/json"}
            )
            detail = problem(sent, 400, "VAL-0001")["detail"]
            assert detail.startswith(start), detail
            assert all(member in detail for member in members), detail
    empty = await api.post("/cards", json={})
    assert problem(empty, 400, "VAL-0001")["errors"] == [
        "cardNumber is required",
        "creditLimitUsd is required",
    ]


async def test_text_is_validated_as_sent(api: httpx.AsyncClient) -> None:
    card = await issue(api)
    blank = problem(await authorize(api, card["id"], "1", merchant_name="   "), 400, "VAL-0001")
    assert blank["detail"] == "merchant_name: blank text is not allowed"
    padded = await authorize(api, card["id"], "1", merchant_name=" Loja ABC ")
    assert padded.status_code == 200, padded.text
    (tx,) = (await api.get(f"/api/cards/{card['id']}/transactions")).json()["transactions"]
    assert tx["merchant_name"] == " Loja ABC "
