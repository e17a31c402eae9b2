"""The card service HTTP API through HTTP on the embedded stack: seeds 000, 004, 001, 002,
happy paths and error paths, every error a problem detail with its code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest

from events import topics
from orchestrator.api.auth import dev_token
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration import commerce as c
from tests.integration.helpers import query, unique


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


# -- seed 000 -------------------------------------------------------------------------------


async def test_virtual_card_is_issued_once_per_user(api: httpx.AsyncClient, token: str) -> None:
    first = await api.post("/v1/cards/virtual", headers=bearer(token))
    assert first.status_code == 201, first.text
    card = first.json()
    assert set(card) == {"cardId", "maskedId", "balance", "currency"}
    assert card["maskedId"][4:12] == "********"
    assert Decimal(card["balance"]) == 0

    again = await api.post("/v1/cards/virtual", headers=bearer(token), json={})
    problem(again, 409, "CARD-4090")


async def test_virtual_card_needs_a_good_token(
    api: httpx.AsyncClient, running_app: Application
) -> None:
    settings = running_app.settings
    expired = jwt.encode(
        {"sub": "u", "exp": int(time.time()) - 10}, settings.jwt_secret.get_secret_value()
    )
    forged = jwt.encode({"sub": "u", "exp": int(time.time()) + 600}, "not-the-key-" * 4)
    no_user = jwt.encode({"exp": int(time.time()) + 600}, settings.jwt_secret.get_secret_value())
    for headers in (
        bearer(no_user),
        {},
        bearer(expired),
        bearer(forged),
        bearer("garbage"),
        {"Authorization": "Basic x"},
    ):
        answer = await api.post("/v1/cards/virtual", headers=headers)
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


async def test_slow_saga_answers_202_with_a_status_url(
    stack: EmbeddedStack, running_app: Application
) -> None:
    from orchestrator.api.app import build_api
    from orchestrator.api.server import HttpServer

    settings = stack.settings(api_saga_wait_s=0)
    server = HttpServer(build_api(settings, running_app.engine), "127.0.0.1", settings.http_port)
    await server.start()
    try:
        user = dev_token(settings, unique("patient"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as api:
            accepted = await api.post("/v1/cards/virtual", headers=bearer(user))
            assert accepted.status_code == 202, accepted.text
            url = accepted.json()["statusUrl"]
            deadline = time.monotonic() + 30
            while (status := (await api.get(url, headers=bearer(user))).json())[
                "status"
            ] == "RUNNING":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert status["status"] == "ISSUED"
            assert status["card"]["maskedId"]
            other = await api.get(url, headers=bearer(dev_token(settings, "someone-else")))
            problem(other, 404, "RES-4040")
    finally:
        await server.stop()


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
    assert Decimal(str(fetched.json()["creditLimitUsd"])) == Decimal("1000.00")
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
    assert (await api.get(made.headers["location"])).json()["amountUsd"] == "4.50"
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


async def test_api_serves_the_asyncapi_document(api: httpx.AsyncClient) -> None:
    document = (await api.get("/asyncapi.json")).json()
    assert "orders.submitted" in document["channels"]
    page = await api.get("/asyncapi")
    assert page.headers["content-type"].startswith("text/html")


async def test_unknown_route_method_and_huge_body_are_problems(api: httpx.AsyncClient) -> None:
    problem(await api.get("/nowhere"), 404, "RES-4040")
    problem(await api.delete("/cards"), 405, "HTTP-4050")
    huge = b'{"cardNumber": "' + b"4" * 2_000_000 + b'", "creditLimitUsd": 1}'
    sent = await api.post("/cards", content=huge, headers={"content-type": "application/json"})
    problem(sent, 413, "HTTP-4130")


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
    assert Decimal(card["credit_limit"]) == Decimal(card["available_limit"]) == 5000
    assert len(card["last_four"]) == 4
    assert (await api.get(f"/api/cards/{card['id']}")).json()["id"] == card["id"]
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
    assert approved.status_code == 201, approved.text
    auth = approved.json()
    assert (auth["status"], auth["transaction_status"]) == ("APPROVED", "AUTHORIZED")
    assert len(auth["authorization_code"]) == 6
    assert Decimal((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 850

    captured = (await api.post(f"/api/capture/{auth['id']}", json={"amount": 100})).json()
    assert (captured["status"], Decimal(captured["captured_amount"])) == ("CAPTURED", 100)
    assert Decimal((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 900
    problem(await api.post(f"/api/capture/{auth['id']}", json={"amount": 1}), 422, "TXN-4220")
    reversed_ = (
        await api.post(
            f"/api/reverse/{auth['id']}", json={"amount": 100, "reason": "CUSTOMER_REQUEST"}
        )
    ).json()
    assert reversed_["status"] == "REVERSED"
    assert Decimal((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 1000

    held = (await authorize(api, card["id"], "20")).json()
    assert (await api.post(f"/api/reverse/{held['id']}")).json()["status"] == "REVERSED"

    limits = await api.patch(
        f"/api/cards/{card['id']}/limits", json={"transaction_limit": 100, "daily_limit": 300}
    )
    assert Decimal(limits.json()["transaction_limit"]) == 100
    over = problem(await authorize(api, card["id"], "150"), 422, "TXN-4220")
    assert "per-transaction" in over["detail"]
    abroad = problem(await authorize(api, card["id"], "10", currency="USD"), 422, "TXN-4220")
    assert "international" in abroad["detail"]
    await api.patch(f"/api/cards/{card['id']}/limits", json={"international_enabled": True})
    assert (await authorize(api, card["id"], "10", currency="USD")).status_code == 201
    problem(
        await authorize(api, card["id"], "10", merchant_name="ACQUIRER_UNAVAILABLE"),
        503,
        "ACQ-5030",
    )
    unchanged = await api.patch(f"/api/cards/{card['id']}/limits", json={})
    assert unchanged.json()["transaction_limit"] == "100.00"
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
    challenge = (await api.post("/api/3ds/init", json=body)).json()
    assert challenge["status"] == "CHALLENGE_REQUIRED"
    assert challenge["pareq"]
    acs = (await api.get(f"/api/3ds/acs/{challenge['transaction_id']}")).json()
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


async def test_invoice_payment_saga(api: httpx.AsyncClient, stack: EmbeddedStack) -> None:
    card = await issue(api, credit_limit=1000)
    auth = (await authorize(api, card["id"], "300")).json()
    await api.post(f"/api/capture/{auth['id']}")
    invoice = (await api.get(f"/api/cards/{card['id']}/invoice")).json()
    assert Decimal(invoice["total_amount"]) == 300
    assert Decimal(invoice["minimum_payment"]) == 30
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
    assert paid.json()["status"] == "PAID"
    assert Decimal((await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]) == 900
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == 200

    too_much = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 150})
    assert problem(too_much, 422, "PAY-4220")["reason"] == "INVOICE_OVERPAID"
    assert await c.wallet_balance(stack.database_url, payer.customer_id) == 200  # refunded
    status = await api.get(
        f"/api/cards/{card['id']}/invoice/payments/{too_much.json()['payment_id']}"
    )
    assert (status.json()["status"], status.json()["reason"]) == ("REJECTED", "INVOICE_OVERPAID")
    poor = await api.post(pay, json={"source_account_id": payer.customer_id, "amount": 300})
    assert problem(poor, 422, "PAY-4220")["reason"] == "INSUFFICIENT_FUNDS"
    stranger = await api.post(pay, json={"source_account_id": unique("nobody"), "amount": 1})
    assert problem(stranger, 422, "PAY-4220")["reason"] == "UNKNOWN_CUSTOMER"
    await c.ledger_consistent(stack.database_url)


async def test_parallel_authorizations_never_overdraw(api: httpx.AsyncClient) -> None:
    card = await issue(api, credit_limit=100)
    answers = await asyncio.gather(*(authorize(api, card["id"], "10") for _ in range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 10 + [422] * 10
    left = (await api.get(f"/api/cards/{card['id']}")).json()["available_limit"]
    assert Decimal(left) == 0


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
