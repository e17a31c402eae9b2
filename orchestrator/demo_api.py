"""The HTTP part of ``orchestra demo``: the card service API, called as a mobile app would."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from orchestrator.api.auth import dev_token
from orchestrator.settings import Settings


class Tour:
    def __init__(self, http: httpx.AsyncClient, table: Table) -> None:
        self.http = http
        self.table = table
        self.wrong = 0

    async def call(self, label: str, expected: int, method: str, url: str, **kwargs: Any) -> Any:
        answer = await self.http.request(method, url, **kwargs)
        body = answer.json()
        summary = body.get("code") or body.get("status") or next(iter(body.values()), "")
        self.note(
            label, str(expected), f"{answer.status_code} {summary}", answer.status_code == expected
        )
        return body

    def note(self, label: str, expected: str, got: str, right: bool) -> None:
        self.wrong += not right
        colour = "green" if right else "red"
        self.table.add_row(label, expected, f"[{colour}]{got}[/{colour}]")


async def run_api_tour(settings: Settings, console: Console) -> int:
    """A few calls of each seed; returns how many answers were not what they should be."""
    auth = {"Authorization": f"Bearer {dev_token(settings, 'demo-user')}"}
    base = f"http://{settings.http_host}:{settings.http_port}"
    table = Table(title=f"HTTP API at {base} (OpenAPI at /docs)")
    for column in ("call", "expected", "answer"):
        table.add_column(column)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        tour = Tour(http, table)
        await tour.call("POST /v1/cards/virtual without a token", 401, "POST", "/v1/cards/virtual")
        await tour.call("POST /v1/cards/virtual", 201, "POST", "/v1/cards/virtual", headers=auth)
        await tour.call(
            "POST /v1/cards/virtual again", 409, "POST", "/v1/cards/virtual", headers=auth
        )
        number: dict[str, object] = {"cardNumber": "4111111111111111", "creditLimitUsd": 1000}
        await tour.call(
            "POST /cards, 15 digits",
            400,
            "POST",
            "/cards",
            json={**number, "cardNumber": "411111111111111"},
        )
        card = await tour.call("POST /cards", 201, "POST", "/cards", json=number)
        await tour.call("POST /cards, same number", 409, "POST", "/cards", json=number)
        purchase = {"description": "Coffee", "transactionDate": "2024-12-20", "amountUsd": 4.5}
        await tour.call(
            "POST /cards/{id}/purchases",
            201,
            "POST",
            f"/cards/{card.get('cardId')}/purchases",
            json=purchase,
        )
        credit = await tour.call(
            "POST /api/cards (CREDIT, limit 100)",
            201,
            "POST",
            "/api/cards",
            json={
                "account_id": "acc-demo",
                "type": "CREDIT",
                "variant": "VIRTUAL",
                "credit_limit": 100,
            },
        )
        spend = {
            "card_id": credit.get("id"),
            "amount": 30,
            "currency": "BRL",
            "merchant_name": "Loja ABC",
            "merchant_category": "5411",
        }
        racing = await asyncio.gather(*(http.post("/api/authorize", json=spend) for _ in range(4)))
        codes = Counter(answer.status_code for answer in racing)
        tour.note(
            "4 racing POST /api/authorize of 30",
            "200 x3, 422 x1",
            ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())),
            codes == Counter({200: 3, 422: 1}),
        )
        await tour.call("GET /api/cards/{id}", 200, "GET", f"/api/cards/{credit.get('id')}")
    console.print(table)
    return tour.wrong
