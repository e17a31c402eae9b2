"""OpenTelemetry: one trace per saga, every command and reply hop a span, linked through
the ``traceparent`` header of each message."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events import topics
from orchestrator import telemetry
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration.helpers import card_outcomes, card_request, wait_for

pytestmark = pytest.mark.usefixtures("running_app")


async def test_a_saga_is_one_trace_across_orchestrator_and_workers(stack: EmbeddedStack) -> None:
    spans = InMemorySpanExporter()
    telemetry.add_processor(SimpleSpanProcessor(spans))
    request = card_request()
    async with UpstreamClient(stack.settings(), watch=[topics.CARDS_STATUS]) as client:
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        outcome = (await card_outcomes(client, [request.request_id]))[request.request_id]
    saga_id = uuid.UUID(outcome.saga_id)
    await asyncio.sleep(0.2)
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == saga_id.int]
    by_name = {span.name: span for span in mine}
    expected = [
        "saga card-issuance",
        "send ReserveCard",
        "card-issuance ReserveCard",
        "apply CardReserved",
        "send OpenCardWallet",
        "billing OpenCardWallet",
        "apply WalletOpened",
        "send ActivateCard",
        "card-issuance ActivateCard",
        "apply CardActivated",
        "ended",
    ]
    assert set(expected) <= set(by_name), sorted(by_name)
    root = by_name["saga card-issuance"]
    assert root.parent is None
    for command, reply in (("ReserveCard", "CardReserved"), ("OpenCardWallet", "WalletOpened")):
        sent, worked, applied = (
            by_name[f"send {command}"],
            next(
                s
                for n, s in by_name.items()
                if n.endswith(f" {command}") and not n.startswith("send")
            ),
            by_name[f"apply {reply}"],
        )
        assert sent.parent is not None
        assert sent.parent.span_id == root.context.span_id
        assert worked.parent is not None
        assert worked.parent.span_id == sent.context.span_id
        assert applied.parent is not None
        assert applied.parent.span_id == worked.context.span_id


async def test_messages_carry_the_saga_traceparent(stack: EmbeddedStack) -> None:
    request = card_request()
    async with UpstreamClient(stack.settings(), watch=[topics.CARDS_STATUS]) as client:
        await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        (record,) = await wait_for(
            client, topics.CARDS_STATUS, lambda r: r.key == request.request_id, count=1
        )
    version, trace_id, span_id, flags = record.headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert trace_id == uuid.UUID(record.headers["ce_sagaid"]).hex
    assert len(span_id) == 16
