"""``orchestra sagas``: list, show, trace (Mermaid, SVG, HTML), retry and compensate, run as
an operator would against the embedded stack with real sagas."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from events import topics
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration import commerce as c
from tests.integration.helpers import orchestra, query

pytestmark = pytest.mark.usefixtures("running_app")


@pytest.fixture
async def client(stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as upstream:
        yield upstream


async def test_list_show_and_trace_a_real_order(
    client: UpstreamClient, stack: EmbeddedStack, tmp_path: Path
) -> None:
    seen = c.Outcomes(client)
    buyer = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, buyer)
    await seen.one(buyer.customer_id)
    sku, point_id = c.unique("SKU"), c.unique("PP")
    await client.send(topics.STORE_STOCK_RECEIVED, c.stock(sku, 1))
    await client.send(topics.DELIVERY_POINTS_UPDATED, c.point(point_id, 0))
    order = c.order(buyer.customer_id, [(sku, 1, "5")], point_id)
    await client.send(topics.ORDERS_SUBMITTED, order)
    assert (await seen.one(order.order_id))["reason"] == "NO_DELIVERY_CAPACITY"

    listed = await orchestra(
        stack,
        "sagas",
        "list",
        "--type",
        "order-checkout",
        "--status",
        "aborted",
        "--key",
        order.order_id,
    )
    assert listed.returncode == 0, listed.stderr
    assert order.order_id in listed.stdout
    assert "NO_DELIVERY_CAPACITY" in listed.stdout
    ((saga_id,),) = await query(
        stack.database_url,
        "SELECT id FROM saga_instances WHERE business_key = :k",
        k=order.order_id,
    )
    # off a terminal 80 columns wide: nothing is cut
    piped = await orchestra(stack, "sagas", "list", "--key", order.order_id, COLUMNS="80")
    assert piped.returncode == 0, piped.stderr
    assert str(saga_id) in piped.stdout
    assert "order-checkout" in piped.stdout
    assert "…" not in piped.stdout
    as_json = await orchestra(stack, "sagas", "list", "--key", order.order_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    (line,) = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert (line["id"], line["saga_type"], line["business_key"]) == (
        str(saga_id),
        "order-checkout",
        order.order_id,
    )
    assert (line["status"], line["reason"]) == ("ABORTED", "NO_DELIVERY_CAPACITY")
    aged = [
        await orchestra(stack, "sagas", "list", "--key", order.order_id, "--older-than", age)
        for age in ("1s", "1d")
    ]
    assert [str(saga_id) in run.stdout for run in aged] == [True, False]  # by the database's now

    shown = await orchestra(stack, "sagas", "show", order.order_id)
    assert shown.returncode == 0, shown.stderr
    for event in ("started", "step-failed", "compensated", "ended"):
        assert event in shown.stdout

    svg, page = tmp_path / "order.svg", tmp_path / "order.html"
    traced = await orchestra(
        stack, "sagas", "trace", order.order_id, "--svg", str(svg), "--html", str(page)
    )
    assert traced.returncode == 0, traced.stderr
    diagram = traced.stdout
    assert diagram.startswith("sequenceDiagram")
    for name in ("orders.submitted", "billing", "payment", "store", "delivery", "orders.status"):
        assert f"as {name}" in diagram
    order_of = [line for line in diagram.splitlines() if "->>" in line or "-x" in line]
    kinds = [
        kind
        for line in order_of
        for kind in (
            "CheckCustomer",
            "ChargeBank",
            "ReserveStock",
            "BookDelivery",
            "ReleaseStock",
            "RefundBank",
        )
        if kind in line
    ]
    assert kinds == [
        "CheckCustomer",
        "ChargeBank",
        "ReserveStock",
        "BookDelivery",
        "ReleaseStock",
        "RefundBank",
    ]
    lines = diagram.splitlines()
    undone = [n for n, line in enumerate(lines) if "-x" in line]
    assert undone, "compensations are drawn"
    assert all(lines[n - 1].strip().startswith("rect rgb(255") for n in undone), "on red"
    assert svg.read_text().startswith("<svg")
    assert "ReserveStock" in svg.read_text()
    assert "mermaid" in page.read_text()


async def _held(engine: AsyncEngine, key: str) -> None:
    """Once the saga has a retry scheduled, its next try is put an hour off: the bank's
    retries would otherwise end it before a slow machine's command line has started."""
    for _ in range(1_500):
        async with engine.begin() as conn:
            held = await conn.execute(
                text(
                    "UPDATE saga_instances SET next_action_at = now() + interval '1 hour' "
                    "WHERE business_key = :k AND status = 'RUNNING' "
                    "AND pending_command_id IS NULL AND next_action_at IS NOT NULL"
                ),
                {"k": key},
            )
        if held.rowcount:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"saga {key} never had a retry scheduled")


async def test_manual_retry_and_compensation_are_recorded_with_who_and_why(
    client: UpstreamClient, stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    seen = c.Outcomes(client)
    buyer = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, buyer)
    await seen.one(buyer.customer_id)
    stuck = c.topup(buyer.customer_id, "10", c.UNAVAILABLE)  # the bank keeps failing: retries
    await client.send(topics.WALLETS_TOPUP_REQUESTED, stuck)
    await _held(engine, stuck.topup_id)

    retried = await orchestra(
        stack,
        "sagas",
        "retry",
        stuck.topup_id,
        "--why",
        "bank is back [/ok]\x1b[2J",
        "--actor",
        "alice",
    )
    assert retried.returncode == 0, retried.stderr
    await _held(engine, stuck.topup_id)
    undone = await orchestra(
        stack,
        *("sagas", "compensate", stuck.topup_id, "--why", "client cancelled", "--actor", "bob"),
        COLUMNS="60",
    )
    assert undone.returncode == 0, undone.stderr
    (said,) = undone.stdout.splitlines()  # one line, for grep, whatever its width
    assert said.endswith("by bob: client cancelled)"), said
    outcome = await seen.one(stuck.topup_id)
    assert (outcome["status"], outcome["reason"]) == ("CANCELLED", "MANUAL")
    notes = await query(
        stack.database_url,
        "SELECT h.event, h.actor, h.detail FROM saga_history h JOIN saga_instances s "
        "ON s.id = h.saga_id WHERE s.business_key = :k AND h.actor IS NOT NULL ORDER BY h.id",
        k=stuck.topup_id,
    )
    assert notes == [
        ("manual-retry", "alice", "bank is back [/ok]\x1b[2J"),
        ("manual-compensate", "bob", "client cancelled"),
    ]
    shown = await orchestra(stack, "sagas", "show", stuck.topup_id)  # brackets are text
    assert shown.returncode == 0, shown.stderr
    assert "bank is back [/ok]\\x1b[2J" in shown.stdout  # an escape is shown, not obeyed
    assert "\x1b" not in shown.stdout

    again = await orchestra(stack, "sagas", "compensate", stuck.topup_id, "--why", "twice")
    assert again.returncode == 2
    assert "Traceback" not in again.stderr
    missing = await orchestra(stack, "sagas", "show", "no-such-saga")
    assert missing.returncode == 2
    assert "no saga" in missing.stderr
    bad_age = await orchestra(stack, "sagas", "list", "--older-than", "soon")
    assert (bad_age.returncode, "Traceback" in bad_age.stderr) == (2, False)


async def test_a_uuid_business_key_names_its_saga_and_a_clash_is_explained(
    client: UpstreamClient, stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    seen = c.Outcomes(client)
    order = c.order(c.unique("nobody"), [("SKU-1", 1, "1")], "PP")
    order = order.model_copy(update={"order_id": str(uuid.uuid4())})  # as in the contract
    await client.send(topics.ORDERS_SUBMITTED, order)
    assert (await seen.one(order.order_id))["reason"] == "UNKNOWN_CUSTOMER"

    for verb in ("show", "trace"):
        found = await orchestra(stack, "sagas", verb, order.order_id)
        assert found.returncode == 0, found.stderr
    shown = await orchestra(stack, "sagas", "show", order.order_id)
    assert f"key {order.order_id}" in shown.stdout
    sql = "SELECT id FROM saga_instances WHERE business_key = :k"
    ((saga_id,),) = await query(stack.database_url, sql, k=order.order_id)
    by_id = await orchestra(stack, "sagas", "show", str(saga_id))
    assert (by_id.returncode, order.order_id in by_id.stdout) == (0, True), by_id.stderr

    clash = uuid.uuid4()  # a saga whose business key is the first one's id
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO saga_instances (id, saga_type, business_key, status, step_index, "
                "data, version) VALUES (:id, 'registration', :key, 'COMPLETED', 0, '{}', 1)"
            ),
            {"id": clash, "key": str(saga_id)},
        )
    try:
        both = await orchestra(stack, "sagas", "show", str(saga_id))
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM saga_instances WHERE id = :id"), {"id": clash})
    assert both.returncode == 2
    assert f"is the id of saga order-checkout {saga_id}" in both.stderr
    assert f"business key of registration {clash}" in both.stderr

    unreachable = await orchestra(
        stack,
        *("sagas", "retry", order.order_id, "--why", "x"),
        ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        ORCHESTRA_LOG_LEVEL="INFO",
    )
    assert unreachable.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1


async def test_unknown_saga_type_lists_the_known_ones_and_unwritable_output_says_so(
    stack: EmbeddedStack,
) -> None:
    unknown = await orchestra(stack, "sagas", "list", "--type", "nosuch")
    assert unknown.returncode == 2
    assert "unknown saga type 'nosuch'; known:" in unknown.stderr
    assert "order-checkout" in unknown.stderr
    unwritable = await orchestra(stack, "sagas", "trace", "x", "--svg", "/nonexistent/dir/t.svg")
    assert unwritable.returncode == 2
    assert "cannot write /nonexistent/dir/t.svg" in unwritable.stderr
    assert "PostgreSQL" not in unwritable.stderr


async def test_prune_deletes_the_history_of_sagas_ended_long_ago_but_not_of_failed_ones(
    client: UpstreamClient, stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    seen = c.Outcomes(client)
    old, failed = c.customer(), c.customer()
    for record in (old, failed):
        await client.send(topics.CUSTOMERS_REGISTERED, record)
    await seen.wait([old.customer_id, failed.customer_id])
    keys = {"old": old.customer_id, "failed": failed.customer_id}
    aged = (
        "UPDATE saga_instances SET ended_at = now() - interval '40 days' "
        "WHERE business_key IN (:old, :failed)"
    )
    async with engine.begin() as conn:
        await conn.execute(text(aged), keys)
        await conn.execute(
            text("UPDATE saga_instances SET status = 'FAILED' WHERE business_key = :failed"),
            keys,
        )
    history = (
        "SELECT s.business_key, count(h.id) FROM saga_instances s LEFT JOIN saga_history h "
        "ON h.saga_id = s.id WHERE s.business_key IN (:old, :failed) GROUP BY 1"
    )
    try:
        before = dict(await query(stack.database_url, history, **keys))
        dry = await orchestra(stack, "sagas", "prune", "--ended-before", "30d", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would prune {before[old.customer_id]} history lines of 1 sagas" in dry.stdout
        pruned = await orchestra(stack, "sagas", "prune", "--ended-before", "30d")
        assert f"pruned {before[old.customer_id]} history lines of 1 sagas" in pruned.stdout
        after = dict(await query(stack.database_url, history, **keys))
        assert after == {old.customer_id: 0, failed.customer_id: before[failed.customer_id]}
        shown = await orchestra(stack, "sagas", "show", old.customer_id)  # the saga stays
        assert shown.returncode == 0, shown.stderr
        assert "its history was pruned" in shown.stdout
        again = await orchestra(stack, "sagas", "prune", "--ended-before", "30d")
        assert "pruned 0 history lines of 0 sagas" in again.stdout
        young = await orchestra(stack, "sagas", "prune", "--ended-before", "2h")
        assert (young.returncode, "at least 1d" in young.stderr) == (2, True)
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE saga_instances SET status = 'COMPLETED' WHERE business_key = :failed"),
                keys,
            )
