"""A participant that does not answer: the step times out and its compensation is retried with
backoff until the participant is back; then the saga ends REJECTED/TIMEOUT with nothing left
half-done (the late command is undone by the compensation queued behind it). A step nothing
undoes is sent again instead, until its participant answers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from events import topics
from events.base import Reply
from events.billing import CreditWallet
from events.envelope import Envelope
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from orchestrator.engine.runtime import SagaRuntime
from orchestrator.settings import Settings
from tests.integration import commerce as c
from tests.integration.helpers import card_outcomes, card_request, query, unique
from workers.registry import WORKERS, WorkerSpec
from workers.runtime import CommandHandler, Handled

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
            for _ in range(300):
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


async def _events_once(url: str, key: str, least: int) -> tuple[object, list[str]]:
    """The saga of ``key`` and its history, once it has timed out ``least`` times."""
    for _ in range(300):
        saga = await query(url, "SELECT id FROM saga_instances WHERE business_key = :k", k=key)
        if saga:
            events = await _history(url, saga[0][0])
            if events.count("timeout") >= least:
                return saga[0][0], events
        await asyncio.sleep(0.1)
    raise AssertionError(f"saga {key} did not time out {least} times")


def _failing_at_credits(spec: WorkerSpec) -> WorkerSpec:
    """Billing whose database fails at every credit: the client's check is answered, the
    credit never is, and its command stays uncommitted for the billing that follows."""

    def build(settings: Settings) -> CommandHandler:
        real = spec.build(settings)

        async def handle(
            conn: AsyncConnection, envelope: Envelope, command: Any
        ) -> Reply | Handled:
            if isinstance(command, CreditWallet):
                raise ConnectionError("billing's database is down")
            return await real(conn, envelope, command)

        return handle

    return dataclasses.replace(spec, build=build)


async def test_a_top_up_waits_at_the_credit_nothing_undoes_until_billing_answers(
    quiet_stack: EmbeddedStack,
) -> None:
    """The credit may land late: refunding the charge meanwhile (as a timeout did) would give
    the client both. The top-up waits through more timeouts than its budget, charged and not
    refunded, with no outcome; billing back, it ends COMPLETED with one credit."""
    settings = quiet_stack.settings(
        group_prefix=unique("pivot"),
        step_timeout_s=1.0,
        step_queue_timeout_s=0,  # billing known but down: time out rather than wait for it
        retry_backoff_s=0.2,
        retry_backoff_max_s=0.5,
        retry_budget=2,
    )
    url = quiet_stack.database_url
    others = Application(settings, ["orchestrator", "payment", "notification"])
    await others.start()
    try:
        async with UpstreamClient(settings, watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            client_record = c.customer()
            workers = {**WORKERS, "billing": _failing_at_credits(WORKERS["billing"])}
            billing = Application(settings, ["billing"], workers=workers)
            await billing.start()
            try:
                await client.send(topics.CUSTOMERS_REGISTERED, client_record)
                assert (await seen.one(client_record.customer_id))["status"] == "ACTIVE"

                request = c.topup(client_record.customer_id, "125.50")
                await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
                saga_id, events = await _events_once(url, request.topup_id, least=4)
            finally:
                await billing.stop()
            assert "compensation-sent" not in events
            waiting = await query(
                url, "SELECT status, step_index FROM saga_instances WHERE id = :s", s=saga_id
            )
            assert waiting == [("RUNNING", 1)], "waiting at credit-wallet"
            charged = "SELECT status, amount_minor FROM bank_payments WHERE saga_id = :s"
            assert await query(url, charged, s=saga_id) == [("CAPTURED", 12550)]
            assert request.topup_id not in seen.seen

            billing = Application(settings, ["billing"])
            await billing.start()
            try:
                outcome = await seen.one(request.topup_id, timeout_s=60)
                await asyncio.sleep(3)  # an answer to an earlier send would come by now
                seen.drain()
            finally:
                await billing.stop()
    finally:
        await others.stop()

    assert len(seen.seen[request.topup_id]) == 1
    assert (outcome["status"], outcome["balance"]) == ("COMPLETED", "125.50")
    assert await c.wallet_balance(url, client_record.customer_id) == Decimal("125.50")
    assert await query(url, charged, s=saga_id) == [("CAPTURED", 12550)], "never refunded"
    await c.ledger_consistent(url)
    assert "reply-ignored" in await _history(url, saga_id), "the other sends' answers: no effect"


async def test_a_step_waits_for_a_participant_that_is_down_rather_than_time_out(
    quiet_stack: EmbeddedStack,
) -> None:
    """Billing, deployed (its group has consumed its topic), is stopped for several step
    timeouts: the card's wallet step waits for it to take the command instead of timing out,
    and the card is ISSUED once billing is back; the step's timeout then counts from when
    billing took the command."""
    settings = quiet_stack.settings(group_prefix=unique("queued"), step_timeout_s=1.5)
    url = quiet_stack.database_url
    orchestrator = Application(settings, ["orchestrator", "card-issuance"])
    await orchestrator.start()
    try:
        async with UpstreamClient(settings, watch=[topics.CARDS_STATUS]) as client:
            billing = Application(settings, ["billing"])
            await billing.start()
            try:
                first = card_request()
                await client.send(topics.CARDS_ISSUE_REQUESTED, first)
                issued = await card_outcomes(client, [first.request_id])
                assert issued[first.request_id].status == "ISSUED"
            finally:
                await billing.stop()

            await asyncio.sleep(0.5)
            request = card_request()
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
            await asyncio.sleep(6 * settings.step_timeout_s)
            ((saga_id, status),) = await query(
                url,
                "SELECT id, status FROM saga_instances WHERE business_key = :k",
                k=request.request_id,
            )
            assert status == "RUNNING"
            assert "timeout" not in await _history(url, saga_id)

            billing = Application(settings, ["billing"])
            await billing.start()
            try:
                outcome = (await card_outcomes(client, [request.request_id]))[request.request_id]
            finally:
                await billing.stop()
    finally:
        await orchestrator.stop()

    assert outcome.status == "ISSUED"
    events = await _history(url, saga_id)
    assert events.count("command-queued") == 1
    assert "timeout" not in events
    assert events[-1] == "ended"


async def test_a_restart_longer_than_the_step_timeout_does_not_time_steps_out(
    quiet_stack: EmbeddedStack,
) -> None:
    """The orchestrator down past a step's deadline: started again, its timer times no step
    out for one step timeout, and the participant's answer, coming once its worker is back,
    is not met by a rollback (killed at any moment and restarted, nothing is lost)."""
    settings = quiet_stack.settings(group_prefix=unique("restart"), step_timeout_s=6.0)
    url = quiet_stack.database_url
    async with UpstreamClient(settings, watch=[topics.CARDS_STATUS]) as client:
        request = card_request()
        first = Application(settings, ["orchestrator", "card-issuance"])
        await first.start()
        try:
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
            saga_id, _ = await _events_at(url, request.request_id, "OpenCardWallet")
        finally:
            await first.stop()
        await asyncio.sleep(7)  # past the deadline of the wallet's step
        again = Application(settings, ["orchestrator", "card-issuance"])
        await again.start()
        try:
            await asyncio.sleep(1)  # the timers' first ticks: nothing is due
            billing = Application(settings, ["billing"])
            await billing.start()
            try:
                outcome = (await card_outcomes(client, [request.request_id], timeout_s=30))[
                    request.request_id
                ]
            finally:
                await billing.stop()
        finally:
            await again.stop()

    assert (outcome.status, outcome.reason) == ("ISSUED", None)
    assert "timeout" not in await _history(url, saga_id)


async def _events_at(url: str, key: str, command: str) -> tuple[object, list[str]]:
    """The saga of ``key`` and its history, once it has sent ``command``."""
    for _ in range(300):
        saga = await query(url, "SELECT id FROM saga_instances WHERE business_key = :k", k=key)
        if saga:
            sent = await query(
                url,
                "SELECT count(*) FROM saga_history WHERE saga_id = :s AND message_type = :t",
                s=saga[0][0],
                t=command,
            )
            if sent[0][0]:
                return saga[0][0], await _history(url, saga[0][0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"saga {key} did not send {command}")


async def test_replies_an_orchestrator_has_not_handled_yet_time_no_step_out(
    quiet_stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestrator stalls (paused, in a rebalance) while the participants answer in
    time: its timer, still running, finds the steps late, but waits until the replies that
    were in the topic by then are handled, so the sagas go on instead of rolling back."""
    gate = asyncio.Event()
    handle_replies = SagaRuntime.handle_replies

    async def stalled(runtime: SagaRuntime, records: Any) -> None:
        await gate.wait()
        await handle_replies(runtime, records)

    monkeypatch.setattr(SagaRuntime, "handle_replies", stalled)
    settings = quiet_stack.settings(group_prefix=unique("stalled"), step_timeout_s=1.0)
    app = Application(settings)
    await app.start()
    try:
        async with UpstreamClient(settings, watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            records = [c.customer() for _ in range(5)]
            for record in records:
                await client.send(topics.CUSTOMERS_REGISTERED, record)
            await asyncio.sleep(4)  # every first step's deadline passes, its reply unhandled
            gate.set()
            outcomes = [await seen.one(record.customer_id, timeout_s=60) for record in records]
    finally:
        await app.stop()
    assert [(o["status"], o["reason"]) for o in outcomes] == [("ACTIVE", None)] * 5
