"""Prometheus metrics scraped from the API while real sagas run."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from events import topics
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration import commerce as c


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await api.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_saga_counters_latency_and_gauges(
    running_app: Application, stack: EmbeddedStack
) -> None:
    base = f"http://127.0.0.1:{running_app.settings.http_port}"
    async with httpx.AsyncClient(base_url=base) as api:
        before = await scrape(api)
        async with UpstreamClient(stack.settings(), watch=c.WATCHED) as client:
            seen = c.Outcomes(client)
            good, bad = c.customer(), c.customer(currency="GBP")
            for record in (good, bad):
                await client.send(topics.CUSTOMERS_REGISTERED, record)
            await seen.wait([good.customer_id, bad.customer_id])
        await asyncio.sleep(0.2)
        after = await scrape(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("orchestra_sagas_started_total", saga_type="registration") == 2
    assert delta("orchestra_sagas_ended_total", saga_type="registration", outcome="completed") == 1
    assert (
        delta("orchestra_sagas_ended_total", saga_type="registration", outcome="compensated") == 1
    )
    assert (
        delta(
            "orchestra_step_latency_seconds_count",
            saga_type="registration",
            step="open-wallet",
            direction="forward",
        )
        == 2
    )
    assert (
        delta(
            "orchestra_step_latency_seconds_count",
            saga_type="registration",
            step="create-account",
            direction="forward",
        )
        == 1
    )
    in_flight = {
        dict(labels)["saga_type"]: value
        for (name, labels), value in after.items()
        if name == "orchestra_sagas_in_flight"
    }
    assert set(in_flight) >= {saga.name for saga in running_app.sagas}, "a series per saga type"
    assert all(value >= 0 for value in in_flight.values())
    backlog = [value for (name, _), value in after.items() if name == "orchestra_outbox_backlog"]
    assert backlog
    assert all(value >= 0 for value in backlog)
    assert any(name == "orchestra_consumer_lag" for name, _ in after)
