"""Property: random mixes of top-ups, gift cards and orders, with random failures, conserve
money and stock and end every saga exactly once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration import commerce as c
from tests.integration.mix import OrderDraft, Plan, check_invariants, run_plan

pytestmark = [pytest.mark.usefixtures("running_app"), pytest.mark.slow]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    customers = draw(st.integers(2, 3))
    skus = draw(st.integers(1, 3))
    points = draw(st.integers(1, 2))
    who = st.integers(-1, customers - 1)
    somebody = st.integers(0, customers - 1)
    token = st.sampled_from(["tok_ok", "tok_ok", "tok_decline", "tok_unavailable"])
    purchase = st.tuples(
        somebody, st.integers(1, 60), st.sampled_from(["bank_card", "wallet"]), st.booleans()
    )
    purchases = draw(st.lists(purchase, max_size=3))
    order = st.builds(
        OrderDraft,
        customer=who,
        lines=st.lists(
            st.tuples(st.integers(0, skus - 1), st.integers(1, 4)), min_size=1, max_size=3
        ),
        point=st.integers(0, points - 1),
        method=st.sampled_from(["bank_card", "sbp", "wallet", "gift_card"]),
        token=token,
        gift=st.integers(0, 5),
    )
    warehouses = st.lists(st.integers(0, 6), min_size=2, max_size=2)
    return Plan(
        bouncing=draw(st.lists(st.booleans(), min_size=customers, max_size=customers)),
        stock=draw(st.lists(warehouses, min_size=skus, max_size=skus)),
        capacity=draw(st.lists(st.integers(0, 4), min_size=points, max_size=points)),
        topups=draw(st.lists(st.tuples(who, st.integers(1, 120), token), max_size=4)),
        purchases=purchases,
        activations=draw(st.lists(who, min_size=len(purchases), max_size=len(purchases))),
        orders=draw(st.lists(order, min_size=1, max_size=8)),
    )


@pytest.fixture
async def client(stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as upstream:
        yield upstream


@settings(
    max_examples=int(os.environ.get("ORCHESTRA_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(plan=plans())
async def test_random_mixes_conserve_money_and_stock(
    plan: Plan, client: UpstreamClient, stack: EmbeddedStack
) -> None:
    seen = c.Outcomes(client)
    run = await run_plan(client, seen, plan)
    await check_invariants(stack.database_url, run, seen)
