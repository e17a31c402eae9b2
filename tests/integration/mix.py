"""Random mixes of the commerce sagas, and the invariants that must hold after any of them.

A plan runs in phases so that later sagas can use what earlier ones made: clients and
goods, then top-ups and gift card purchases, then activations of the codes that were
mailed, then orders paid every way. Within a phase everything is in flight at once.
The check derives what every balance, stock level and slot must be from the outcomes
alone, and compares with the tables of every worker.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from events import topics
from events.base import UpstreamRecord
from events.customers import CustomerRegistered
from events.giftcards import GiftCardActivationRequested, GiftCardPurchaseRequested
from events.orders import OrderSubmitted
from events.payment import PaymentDetails, PaymentMethod
from events.wallets import TopUpRequested
from orchestrator.client import UpstreamClient
from tests.integration import commerce as c
from tests.integration.helpers import query, unique

TOKENS = ("tok_ok", "tok_ok", "tok_ok", "tok_decline", "tok_unavailable")


@dataclass
class OrderDraft:
    customer: int  # index into customers; -1 for an unknown client
    lines: list[tuple[int, int]]  # (sku index, quantity)
    point: int
    method: str  # bank_card | sbp | wallet | gift_card
    token: str = "tok_ok"
    gift: int = 0  # which activated gift card, when paid by gift card


@dataclass
class Plan:
    bouncing: list[bool]
    stock: list[list[int]]  # per sku, units per warehouse
    capacity: list[int]
    topups: list[tuple[int, int, str]]  # (customer, whole roubles, token)
    purchases: list[tuple[int, int, str, bool]]  # (customer, roubles, method, bounce)
    activations: list[int]  # for each mailed code in order: who activates it (-1: nobody)
    orders: list[OrderDraft]


def random_plan(rng: random.Random, sagas: int) -> Plan:
    """A plan of about ``sagas`` sagas (used by the crash test; hypothesis builds its own)."""
    customers = max(3, sagas // 12)
    skus = 4
    plan = Plan(
        bouncing=[rng.random() < 0.15 for _ in range(customers)],
        stock=[[rng.randint(0, 25), rng.randint(0, 25)] for _ in range(skus)],
        capacity=[rng.randint(5, 40) for _ in range(3)],
        topups=[],
        purchases=[],
        activations=[],
        orders=[],
    )
    rest = sagas - customers
    for _ in range(rest * 3 // 10):
        plan.topups.append((rng.randrange(customers), rng.randint(1, 300), rng.choice(TOKENS)))
    for _ in range(rest // 10):
        plan.purchases.append(
            (
                rng.randrange(customers),
                rng.randint(5, 80),
                rng.choice(["bank_card", "wallet"]),
                rng.random() < 0.15,
            )
        )
    plan.activations = [rng.randrange(-1, customers) for _ in plan.purchases]
    while len(plan.topups) + len(plan.purchases) * 2 + len(plan.orders) < rest:
        plan.orders.append(
            OrderDraft(
                customer=rng.randrange(-1, customers)
                if rng.random() < 0.05
                else rng.randrange(customers),
                lines=[(rng.randrange(skus), rng.randint(1, 4)) for _ in range(rng.randint(1, 3))],
                point=rng.randrange(len(plan.capacity)),
                method=rng.choice(["bank_card", "sbp", "wallet", "wallet", "gift_card"]),
                token=rng.choice(TOKENS),
                gift=rng.randrange(8),
            )
        )
    return plan


@dataclass
class Run:
    """What was sent, and every outcome, by business id."""

    customers: list[CustomerRegistered] = field(default_factory=list)
    skus: list[str] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)
    initial_capacity: dict[str, int] = field(default_factory=dict)
    requests: dict[str, UpstreamRecord] = field(default_factory=dict)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ids(self, kind: type[UpstreamRecord]) -> list[str]:
        return [key for key, record in self.requests.items() if isinstance(record, kind)]


async def _send_all(
    client: UpstreamClient, outcomes: c.Outcomes, run: Run, batch: list[tuple[str, UpstreamRecord]]
) -> None:
    for topic, record in batch:
        run.requests[record.business_key()] = record
        await client.send(topic, record)
    done = await outcomes.wait([record.business_key() for _, record in batch], timeout_s=240)
    run.outcomes.update(done)


async def run_plan(client: UpstreamClient, outcomes: c.Outcomes, plan: Plan) -> Run:
    run = Run()
    for bounce in plan.bouncing:
        run.customers.append(c.customer(email=f"{unique('b')}@bounce.test" if bounce else None))
    for units in plan.stock:
        sku = unique("SKU")
        run.skus.append(sku)
        run.received[sku] = sum(units)
        for warehouse, quantity in enumerate(units):
            if quantity:
                await client.send(
                    topics.STORE_STOCK_RECEIVED, c.stock(sku, quantity, f"WH-{warehouse}")
                )
    for slots in plan.capacity:
        point_id = unique("PP")
        run.points.append(point_id)
        run.initial_capacity[point_id] = slots
        await client.send(topics.DELIVERY_POINTS_UPDATED, c.point(point_id, slots))
    await _send_all(
        client, outcomes, run, [(topics.CUSTOMERS_REGISTERED, record) for record in run.customers]
    )

    def who(index: int) -> str:
        return run.customers[index].customer_id if index >= 0 else unique("nobody")

    money: list[tuple[str, UpstreamRecord]] = [
        (topics.WALLETS_TOPUP_REQUESTED, c.topup(who(i), str(amount), _bank(token)))
        for i, amount, token in plan.topups
    ]
    purchases = [
        c.purchase(
            who(i),
            str(amount),
            _bank("tok_ok") if method == "bank_card" else c.WALLET,
            email=f"{unique('g')}@bounce.test" if bounce else None,
        )
        for i, amount, method, bounce in plan.purchases
    ]
    money += [(topics.GIFTCARDS_PURCHASE_REQUESTED, record) for record in purchases]
    await _send_all(client, outcomes, run, money)

    activations: list[tuple[str, UpstreamRecord]] = []
    for bought, holder in zip(purchases, plan.activations, strict=True):
        if run.outcomes[bought.purchase_id]["status"] != "COMPLETED" or holder < 0:
            continue
        code = c.code_in(await outcomes.mail_to(bought.recipient_email))
        activations.append((topics.GIFTCARDS_ACTIVATION_REQUESTED, c.activation(who(holder), code)))
    await _send_all(client, outcomes, run, activations)
    cards = [
        (run.outcomes[key]["gift_card_id"], record.customer_id)
        for key, record in run.requests.items()
        if isinstance(record, GiftCardActivationRequested)
        and run.outcomes[key]["status"] == "ACTIVATED"
    ]

    orders: list[tuple[str, UpstreamRecord]] = []
    for draft in plan.orders:
        customer_id = who(draft.customer)
        payment = _payment(draft, cards)
        if draft.method == "gift_card" and cards:
            customer_id = cards[draft.gift % len(cards)][1]
        items = [(run.skus[sku], qty, f"{1 + sku}.25") for sku, qty in draft.lines]
        orders.append(
            (topics.ORDERS_SUBMITTED, c.order(customer_id, items, run.points[draft.point], payment))
        )
    await _send_all(client, outcomes, run, orders)
    return run


def _bank(token: str) -> PaymentDetails:
    return PaymentDetails(method=PaymentMethod.BANK_CARD, card_token=token)


def _payment(draft: OrderDraft, cards: list[tuple[str, str]]) -> PaymentDetails:
    if draft.method == "gift_card":
        if not cards:
            return c.WALLET
        return c.gift_card(cards[draft.gift % len(cards)][0])
    if draft.method == "wallet":
        return c.WALLET
    if draft.method == "sbp":
        return PaymentDetails(method=PaymentMethod.SBP, card_token=draft.token)
    return _bank(draft.token)


async def check_invariants(url: str, run: Run, seen: c.Outcomes) -> None:
    """Money, stock and slots are where the outcomes say; one terminal record per saga."""
    await seen.settle(1.0)
    for key in run.requests:
        records = [(doc["status"], doc.get("reason")) for doc in seen.seen[key]]
        assert len(records) == 1, f"{key} ended with {len(records)} records: {records}"
    keys = list(run.requests)
    instances = await query(
        url,
        "SELECT business_key, count(*), bool_and(status IN ('COMPLETED', 'ABORTED')) "
        "FROM saga_instances WHERE business_key = ANY(:keys) GROUP BY business_key",
        keys=keys,
    )
    assert len(instances) == len(keys)
    assert all(count == 1 and ended for _, count, ended in instances), instances

    wallets: Counter[str] = Counter()
    bank: Counter[str] = Counter()
    cards: dict[str, int] = {}
    sold: Counter[str] = Counter()
    slots: Counter[str] = Counter()
    for key, record in run.requests.items():
        outcome = run.outcomes[key]
        ok = outcome["status"] in ("COMPLETED", "CONFIRMED", "ACTIVATED", "ACTIVE")
        if not ok:
            continue
        if isinstance(record, TopUpRequested):
            wallets[record.customer_id] += c.minor(record.amount)
            bank[record.customer_id] += c.minor(record.amount)
        elif isinstance(record, GiftCardPurchaseRequested):
            cards[outcome["gift_card_id"]] = c.minor(record.amount)
            _pay(record.payment, record.customer_id, c.minor(record.amount), wallets, bank, cards)
        elif isinstance(record, OrderSubmitted):
            total = c.minor(outcome["total"])
            assert total == record.total_minor
            _pay(record.payment, record.customer_id, total, wallets, bank, cards)
            for item in record.items:
                sold[item.sku] += item.quantity
            slots[record.delivery.point_id] += 1

    customers = [record.customer_id for record in run.customers]
    rows = await query(
        url,
        "SELECT customer_id, balance_minor FROM customer_wallets WHERE customer_id = ANY(:ids)",
        ids=customers,
    )
    assert {str(k): int(v) for k, v in rows} == {cid: wallets[cid] for cid in customers}  # type: ignore[call-overload]

    rows = await query(
        url,
        "SELECT gift_card_id, balance_minor, status FROM gift_cards WHERE purchaser_id = ANY(:ids)",
        ids=customers,
    )
    live = {str(g): int(b) for g, b, status in rows if status != "CANCELLED"}  # type: ignore[call-overload]
    assert live == cards
    assert all(int(b) == 0 for _, b, status in rows if status == "CANCELLED")  # type: ignore[call-overload]

    everybody = customers + [getattr(record, "customer_id", "") for record in run.requests.values()]
    rows = await query(
        url,
        "SELECT p.customer_id, SUM(b.amount_minor - b.refunded_minor) FROM bank_payments p "
        "JOIN bank_simulator_book b ON b.reference = p.bank_reference "
        "WHERE p.customer_id = ANY(:ids) GROUP BY p.customer_id",
        ids=list(set(everybody)),
    )
    assert {str(k): int(v) for k, v in rows if int(v)} == {k: v for k, v in bank.items() if v}  # type: ignore[call-overload]

    rows = await query(
        url,
        "SELECT sku, SUM(available), SUM(reserved) FROM stock WHERE sku = ANY(:skus) GROUP BY sku",
        skus=run.skus,
    )
    stock = {str(sku): (int(a), int(r)) for sku, a, r in rows}  # type: ignore[call-overload]
    for sku in run.skus:
        free, reserved = stock.get(sku, (0, 0))
        assert reserved == sold[sku], (sku, reserved, sold[sku])
        assert free + reserved == run.received[sku], (sku, free, reserved)

    rows = await query(
        url, "SELECT point_id, capacity FROM delivery_points WHERE point_id = ANY(:p)", p=run.points
    )
    for point_id, left in rows:
        assert int(left) + slots[str(point_id)] == run.initial_capacity[str(point_id)]  # type: ignore[call-overload]
    await c.ledger_consistent(url)


def _pay(
    payment: PaymentDetails,
    customer_id: str,
    amount: int,
    wallets: Counter[str],
    bank: Counter[str],
    cards: dict[str, int],
) -> None:
    if payment.method.through_bank:
        bank[customer_id] += amount
    elif payment.method == PaymentMethod.WALLET:
        wallets[customer_id] -= amount
    else:
        assert payment.gift_card_id is not None
        cards[payment.gift_card_id] -= amount
