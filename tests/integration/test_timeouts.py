"""A participant that does not answer: the step times out and its compensation is retried with
backoff until the participant is back; then the saga ends REJECTED/TIMEOUT with nothing left
half-done (the late command is undone by the compensation queued behind it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from events import topics
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration.helpers import card_outcomes, card_request, query, unique

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quiet_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as embedded:
        yield embedded


async def _history(url: str, saga_id: object) -> list[str]:
    rows = await query(
        url, "SELECT event FROM saga_history WHERE saga_id = :s ORDER BY id", s=saga_id
    )
    return [str(event) for (event,) in rows]


async def test_silent_billing_times_out_then_compensates_when_back(
    quiet_stack: EmbeddedStack,
) -> None:
    settings = quiet_stack.settings(
        group_prefix=unique("timeouts"),
        step_timeout_s=1.0,
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
    )
    url = quiet_stack.database_url
    without_billing = Application(settings, ["orchestrator", "card-issuance"])
    await without_billing.start()
    try:
        async with UpstreamClient(settings, watch=[topics.CARDS_STATUS]) as client:
            request = card_request()
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
            for _ in range(100):
                saga = await query(
                    url,
                    "SELECT id, status, attempt FROM saga_instances WHERE business_key = :k",
                    k=request.request_id,
                )
                if saga and saga[0][1] == "COMPENSATING" and int(str(saga[0][2])) >= 2:
                    break
                await asyncio.sleep(0.1)
            saga_id = saga[0][0]
            assert saga[0][1] == "COMPENSATING", "waiting for billing to take the compensation"
            assert "timeout" in await _history(url, saga_id)
            assert await query(url, "SELECT status FROM cards WHERE saga_id = :s", s=saga_id) == [
                ("PENDING",)
            ]

            billing = Application(settings, ["billing"])
            await billing.start()
            try:
                outcome = (await card_outcomes(client, [request.request_id], timeout_s=60))[
                    request.request_id
                ]
            finally:
                await billing.stop()
    finally:
        await without_billing.stop()

    assert (outcome.status, outcome.reason, outcome.card_id) == ("REJECTED", "TIMEOUT", None)
    assert await query(url, "SELECT status FROM cards WHERE saga_id = :s", s=saga_id) == [
        ("CANCELLED",)
    ]
    wallets = await query(url, "SELECT status FROM card_wallets WHERE saga_id = :s", s=saga_id)
    assert wallets == [("CLOSED",)], "the late OpenCardWallet is undone by CloseCardWallet"
    events = await _history(url, saga_id)
    assert events.count("retry-scheduled") >= 2
    assert events[-1] == "ended"
