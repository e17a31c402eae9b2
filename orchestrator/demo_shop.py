"""The shop part of ``orchestra demo``: the commerce sagas of seed 003, told as a story.

Clients register, the warehouse and logistics feeds arrive, wallets are topped up, a
gift card is bought and activated with the code from its e-mail, and orders are paid
every way: some are confirmed, some compensated. Tables show the outcomes and where
every rouble and every unit ended up.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from events import topics
from events.base import UpstreamRecord
from events.customers import CustomerRegistered
from events.delivery import DeliveryMethod, PointUpdated
from events.giftcards import GiftCardActivationRequested, GiftCardPurchaseRequested
from events.money import from_minor
from events.orders import DeliveryChoice, OrderItem, OrderSubmitted
from events.payment import BankPaymentDetails, PaymentDetails, PaymentMethod
from events.store import StockReceived
from events.wallets import TopUpRequested
from orchestrator.client import UpstreamClient
from schemas.billing import customer_wallets, gift_cards
from schemas.delivery import delivery_points
from schemas.store import stock

WATCHED = [
    topics.CUSTOMERS_STATUS,
    topics.WALLETS_STATUS,
    topics.ORDERS_STATUS,
    topics.GIFTCARDS_STATUS,
    topics.NOTIFICATIONS_SENT,
]
ID_FIELDS = ("customer_id", "topup_id", "order_id", "purchase_id", "activation_id")
CODE = re.compile(r"activation code: (\S+)")

CARD = PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok_visa_4242")
DECLINED = PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok_decline")
WALLET = PaymentDetails(method=PaymentMethod.WALLET)


def _client(customer_id: str, name: str, email: str, phone: str) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=customer_id,
        username=name.lower(),
        email=email,
        phone=phone,
        first_name=name,
        last_name="Demo",
    )


def _order(
    order_id: str,
    customer_id: str,
    items: list[tuple[str, int, str]],
    point: str,
    payment: PaymentDetails,
) -> OrderSubmitted:
    return OrderSubmitted(
        order_id=order_id,
        customer_id=customer_id,
        currency="RUB",
        items=tuple(OrderItem(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in items),
        payment=payment,
        delivery=DeliveryChoice(method=DeliveryMethod.PICKUP, point_id=point, cost=Decimal("3")),
    )


class Story:
    """Sends the story's records and collects every outcome and delivered message."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.mails: list[dict[str, Any]] = []
        self.sent: list[tuple[str, UpstreamRecord]] = []

    async def send(self, topic: str, *records: UpstreamRecord) -> None:
        for record in records:
            self.sent.append((topic, record))
            await self.client.send(topic, record)

    async def settle(self, keys: list[str], timeout_s: float = 60.0) -> None:
        await self._read_until(lambda: set(keys) <= self.outcomes.keys(), timeout_s)

    async def code_for(self, email: str, timeout_s: float = 10.0) -> str | None:
        """The activation code in the e-mail to ``email``, as the recipient would read it."""

        def code() -> str | None:
            for mail in self.mails:
                found = CODE.search(mail["body"])
                if mail["recipient"] == email and found:
                    return found.group(1)
            return None

        await self._read_until(lambda: code() is not None, timeout_s)
        return code()

    async def _read_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            try:
                record = await asyncio.wait_for(self.client.received.get(), timeout=1.0)
            except TimeoutError:
                continue
            document = json.loads(record.value)
            if record.topic == topics.NOTIFICATIONS_SENT:
                self.mails.append(document)
                continue
            key = next(document[f] for f in ID_FIELDS if f in document)
            self.outcomes.setdefault(key, document)


async def run_shop(client: UpstreamClient, engine: AsyncEngine, console: Console) -> int:
    story = Story(client)
    await story.send(
        topics.CUSTOMERS_REGISTERED,
        _client("c-anna", "Anna", "anna@example.com", "+7 900 111-11-11"),
        _client("c-boris", "Boris", "boris@bounce.test", "+7 900 222-22-22"),
        _client("c-vera", "Vera", "vera@example.com", "+7 900 333-33-33"),
    )
    await story.send(
        topics.STORE_STOCK_RECEIVED,
        StockReceived(
            sku="SKU-KETTLE",
            warehouse_id="WH-MSK",
            quantity=3,
            name="Kettle",
            price=Decimal("24.90"),
            receipt_id="rcv-1",
        ),
        StockReceived(sku="SKU-KETTLE", warehouse_id="WH-SPB", quantity=2, receipt_id="rcv-2"),
        StockReceived(
            sku="SKU-MUG",
            warehouse_id="WH-MSK",
            quantity=10,
            name="Mug",
            price=Decimal("4.50"),
            receipt_id="rcv-3",
        ),
    )
    await story.send(
        topics.DELIVERY_POINTS_UPDATED,
        PointUpdated(point_id="PP-ARBAT", kind=DeliveryMethod.PICKUP, name="Arbat 1", capacity=5),
        PointUpdated(point_id="PP-FULL", kind=DeliveryMethod.PICKUP, name="Full", capacity=0),
    )
    await story.settle(["c-anna", "c-boris", "c-vera"])

    topups = [
        TopUpRequested(
            topup_id="top-anna",
            customer_id="c-anna",
            amount=Decimal("100"),
            currency="RUB",
            payment=BankPaymentDetails.model_validate(CARD.model_dump()),
        ),
        TopUpRequested(
            topup_id="top-boris",
            customer_id="c-boris",
            amount=Decimal("50"),
            currency="RUB",
            payment=BankPaymentDetails(method=PaymentMethod.SBP),
        ),
        TopUpRequested(
            topup_id="top-declined",
            customer_id="c-vera",
            amount=Decimal("70"),
            currency="RUB",
            payment=BankPaymentDetails.model_validate(DECLINED.model_dump()),
        ),
    ]
    gifts = [
        GiftCardPurchaseRequested(
            purchase_id="gift-for-vera",
            customer_id="c-anna",
            recipient_name="Vera",
            recipient_email="vera@example.com",
            amount=Decimal("30"),
            currency="RUB",
            design="birthday",
            payment=CARD,
        ),
        GiftCardPurchaseRequested(
            purchase_id="gift-bounced",
            customer_id="c-anna",
            recipient_name="Nobody",
            recipient_email="gone@bounce.test",
            amount=Decimal("20"),
            currency="RUB",
            design="classic",
            payment=WALLET,
        ),
    ]
    await story.send(topics.WALLETS_TOPUP_REQUESTED, *topups)
    await story.settle([t.topup_id for t in topups])
    await story.send(topics.GIFTCARDS_PURCHASE_REQUESTED, *gifts)
    await story.settle([g.purchase_id for g in gifts])

    code = await story.code_for("vera@example.com") or "NO-CODE-DELIVERED"
    activations = [
        GiftCardActivationRequested(
            activation_id="act-vera", customer_id="c-vera", activation_code=code
        ),
        GiftCardActivationRequested(
            activation_id="act-again", customer_id="c-boris", activation_code=code
        ),
    ]
    await story.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, activations[0])
    await story.settle(["act-vera"])
    await story.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, activations[1])
    await story.settle(["act-again"])
    gift_card_id = story.outcomes.get("act-vera", {}).get("gift_card_id") or "G-unknown"

    orders = [
        _order("ord-card", "c-anna", [("SKU-KETTLE", 2, "24.90")], "PP-ARBAT", CARD),
        _order("ord-wallet", "c-boris", [("SKU-MUG", 4, "4.50")], "PP-ARBAT", WALLET),
        _order(
            "ord-gift",
            "c-vera",
            [("SKU-MUG", 2, "4.50")],
            "PP-ARBAT",
            PaymentDetails(method=PaymentMethod.GIFT_CARD, gift_card_id=gift_card_id),
        ),
        _order("ord-too-many", "c-anna", [("SKU-KETTLE", 9, "24.90")], "PP-ARBAT", CARD),
        _order("ord-no-slot", "c-boris", [("SKU-MUG", 1, "4.50")], "PP-FULL", WALLET),
        _order("ord-declined", "c-vera", [("SKU-MUG", 1, "4.50")], "PP-ARBAT", DECLINED),
        _order("ord-poor", "c-vera", [("SKU-KETTLE", 1, "24.90")], "PP-ARBAT", WALLET),
        _order("ord-stranger", "c-nobody", [("SKU-MUG", 1, "4.50")], "PP-ARBAT", CARD),
    ]
    await story.send(topics.ORDERS_SUBMITTED, *orders, orders[0])  # the first one twice
    await story.settle([o.order_id for o in orders])

    expected = [
        key
        for _, record in story.sent
        if (key := record.business_key()) and not isinstance(record, StockReceived | PointUpdated)
    ]
    _outcome_table(console, story)
    await _where_things_are(console, engine)
    missing = sorted(set(expected) - story.outcomes.keys())
    if missing:
        console.print(f"[red]no outcome for {', '.join(missing)}[/red]")
    return 1 if missing else 0


def _outcome_table(console: Console, story: Story) -> None:
    table = Table(title="Shop sagas (customers / wallets / giftcards / orders .status)")
    for column in ("saga", "id", "status", "reason", "detail"):
        table.add_column(column)
    for topic, record in story.sent:
        if isinstance(record, StockReceived | PointUpdated):
            continue
        key = record.business_key()
        if any(row == key for row in table.columns[1].cells):
            continue
        outcome = story.outcomes.get(key, {})
        detail = ", ".join(
            f"{name}={outcome[name]}"
            for name in ("total", "balance", "wallet_id", "gift_card_id")
            if outcome.get(name) is not None
        )
        table.add_row(
            topic.split(".")[0],
            key,
            outcome.get("status", "-"),
            outcome.get("reason") or "",
            detail,
        )
    console.print(table)
    sent = Table(title="notifications.sent")
    for column in ("channel", "recipient", "template"):
        sent.add_column(column)
    for mail in story.mails:
        sent.add_row(mail["channel"], mail["recipient"], mail["template"])
    console.print(sent)


async def _where_things_are(console: Console, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        wallets = (
            await conn.execute(
                select(
                    customer_wallets.c.customer_id,
                    customer_wallets.c.balance_minor,
                    customer_wallets.c.status,
                ).order_by(customer_wallets.c.customer_id)
            )
        ).all()
        cards = (
            await conn.execute(
                select(
                    gift_cards.c.gift_card_id,
                    gift_cards.c.balance_minor,
                    gift_cards.c.status,
                    gift_cards.c.owner_id,
                ).order_by(gift_cards.c.created_at)
            )
        ).all()
        goods = (
            await conn.execute(
                select(
                    stock.c.sku, stock.c.warehouse_id, stock.c.available, stock.c.reserved
                ).order_by(stock.c.sku, stock.c.warehouse_id)
            )
        ).all()
        points = (
            await conn.execute(
                select(delivery_points.c.point_id, delivery_points.c.capacity).order_by(
                    delivery_points.c.point_id
                )
            )
        ).all()
    money = Table(title="Where the money is (billing)")
    for column in ("account", "balance", "status", "owner"):
        money.add_column(column)
    for customer_id, balance, status in wallets:
        money.add_row(f"wallet of {customer_id}", str(from_minor(balance)), status, customer_id)
    for gift_card_id, balance, status, owner in cards:
        money.add_row(f"gift card {gift_card_id}", str(from_minor(balance)), status, owner or "")
    console.print(money)
    units = Table(title="Where the goods and slots are (store, delivery)")
    for column in ("what", "where", "available", "reserved"):
        units.add_column(column)
    for sku, warehouse, free, reserved in goods:
        units.add_row(sku, warehouse, str(free), str(reserved))
    for point_id, capacity in points:
        units.add_row("delivery slots", point_id, str(capacity), "")
    console.print(units)
