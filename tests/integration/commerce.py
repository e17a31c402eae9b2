"""Builders and checks for the commerce sagas of seed 003 (used by several test modules)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from events import topics
from events.customers import CustomerRegistered
from events.delivery import DeliveryMethod, PointUpdated
from events.giftcards import GiftCardActivationRequested, GiftCardPurchaseRequested
from events.money import to_minor
from events.orders import DeliveryChoice, OrderItem, OrderSubmitted
from events.payment import BankPaymentDetails, PaymentDetails, PaymentMethod
from events.store import StockReceived
from events.wallets import TopUpRequested
from orchestrator.client import OutcomeRecord, UpstreamClient
from tests.integration.helpers import query, unique

OUTCOME_IDS = {
    topics.CUSTOMERS_STATUS: "customer_id",
    topics.WALLETS_STATUS: "topup_id",
    topics.ORDERS_STATUS: "order_id",
    topics.GIFTCARDS_STATUS: ("purchase_id", "activation_id"),
}
WATCHED = [*OUTCOME_IDS, topics.NOTIFICATIONS_SENT]

BANK = PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok_ok")
SBP = PaymentDetails(method=PaymentMethod.SBP)
WALLET = PaymentDetails(method=PaymentMethod.WALLET)
DECLINED = PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok_decline")
UNAVAILABLE = PaymentDetails(method=PaymentMethod.BANK_CARD, card_token="tok_unavailable")


def gift_card(gift_card_id: str) -> PaymentDetails:
    return PaymentDetails(method=PaymentMethod.GIFT_CARD, gift_card_id=gift_card_id)


def customer(email: str | None = None, currency: str = "RUB") -> CustomerRegistered:
    customer_id = unique("c")
    return CustomerRegistered(
        customer_id=customer_id,
        username=customer_id,
        email=email or f"{customer_id}@example.com",
        phone=f"+7 {random.randrange(10**9, 10**10)}",
        first_name="Ivan",
        last_name="Petrov",
        currency=currency,
    )


def topup(customer_id: str, amount: str, payment: PaymentDetails = BANK) -> TopUpRequested:
    return TopUpRequested(
        topup_id=unique("t"),
        customer_id=customer_id,
        amount=Decimal(amount),
        currency="RUB",
        payment=BankPaymentDetails.model_validate(payment.model_dump()),
    )


def stock(sku: str, quantity: int, warehouse: str = "WH-1") -> StockReceived:
    return StockReceived(sku=sku, warehouse_id=warehouse, quantity=quantity, receipt_id=unique("r"))


def point(
    point_id: str, capacity: int, kind: DeliveryMethod = DeliveryMethod.PICKUP
) -> PointUpdated:
    return PointUpdated(
        point_id=point_id,
        kind=kind,
        name=f"Point {point_id}",
        capacity=capacity,
        revision=unique("rev"),
    )


def order(
    customer_id: str,
    items: Iterable[tuple[str, int, str]],
    point_id: str,
    payment: PaymentDetails = BANK,
    cost: str = "3.00",
) -> OrderSubmitted:
    return OrderSubmitted(
        order_id=unique("o"),
        customer_id=customer_id,
        currency="RUB",
        items=tuple(
            OrderItem(sku=sku, quantity=qty, unit_price=Decimal(price)) for sku, qty, price in items
        ),
        payment=payment,
        delivery=DeliveryChoice(
            method=DeliveryMethod.PICKUP, point_id=point_id, cost=Decimal(cost)
        ),
    )


def purchase(
    customer_id: str, amount: str, payment: PaymentDetails = BANK, email: str | None = None
) -> GiftCardPurchaseRequested:
    return GiftCardPurchaseRequested(
        purchase_id=unique("gp"),
        customer_id=customer_id,
        recipient_name="Anna",
        recipient_email=email or f"{unique('friend')}@example.com",
        amount=Decimal(amount),
        currency="RUB",
        design="birthday",
        payment=payment,
    )


def activation(customer_id: str, code: str) -> GiftCardActivationRequested:
    return GiftCardActivationRequested(
        activation_id=unique("ga"), customer_id=customer_id, activation_code=code
    )


@dataclass
class Outcomes:
    """Every outcome record seen, by business id (duplicates kept, to check they agree)."""

    client: UpstreamClient
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    mails: list[dict[str, Any]] = field(default_factory=list)
    others: list[OutcomeRecord] = field(default_factory=list)
    records: list[OutcomeRecord] = field(default_factory=list)
    """Every record of the outcome topics and of ``notifications.sent``, as it came."""

    def _take(self, record: OutcomeRecord) -> None:
        topic = record.topic
        if topic not in OUTCOME_IDS and topic != topics.NOTIFICATIONS_SENT:
            self.others.append(record)
            return
        self.records.append(record)
        document = json.loads(record.value)
        if topic == topics.NOTIFICATIONS_SENT:
            self.mails.append(document)
            return
        names = OUTCOME_IDS[topic]
        for name in (names,) if isinstance(names, str) else names:
            if name in document:
                self.seen[document[name]].append(document)

    async def wait(self, ids: Iterable[str], timeout_s: float = 90.0) -> dict[str, dict[str, Any]]:
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.seen.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(wanted - self.seen.keys())
                raise AssertionError(f"no outcome for {len(missing)} sagas, e.g. {missing[:3]}")
            try:
                record = await asyncio.wait_for(self.client.received.get(), timeout=remaining)
            except TimeoutError:
                continue
            self._take(record)
        return {key: self.seen[key][0] for key in wanted}

    def drain(self) -> None:
        """Take every record received so far."""
        while not self.client.received.empty():
            self._take(self.client.received.get_nowait())

    async def settle(self, seconds: float) -> None:
        """Take what comes within ``seconds``: a late duplicate would be among it."""
        await asyncio.sleep(seconds)
        self.drain()

    async def one(self, key: str, timeout_s: float = 90.0) -> dict[str, Any]:
        return (await self.wait([key], timeout_s))[key]

    async def mail_to(self, recipient: str, timeout_s: float = 30.0) -> dict[str, Any]:
        return (await self.mails_to(recipient, 1, timeout_s))[0]

    async def mails_to(
        self, recipient: str, count: int, timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [mail for mail in self.mails if mail["recipient"] == recipient]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no notification to {recipient}")
            try:
                record = await asyncio.wait_for(self.client.received.get(), timeout=remaining)
            except TimeoutError:
                continue
            self._take(record)


def code_in(mail: dict[str, Any]) -> str:
    return str(mail["body"]).rsplit("activation code: ", 1)[1].strip()


async def wallet_balance(database_url: str, customer_id: str) -> Decimal:
    rows = await query(
        database_url,
        "SELECT balance_minor FROM customer_wallets WHERE customer_id = :c",
        c=customer_id,
    )
    assert len(rows) == 1, rows
    return Decimal(int(rows[0][0])) / 100  # type: ignore[call-overload]


async def available(database_url: str, sku: str) -> tuple[int, int]:
    rows = await query(
        database_url,
        "SELECT COALESCE(SUM(available), 0), COALESCE(SUM(reserved), 0) FROM stock WHERE sku = :s",
        s=sku,
    )
    return int(rows[0][0]), int(rows[0][1])  # type: ignore[call-overload]


async def capacity(database_url: str, point_id: str) -> int:
    rows = await query(
        database_url, "SELECT capacity FROM delivery_points WHERE point_id = :p", p=point_id
    )
    return int(rows[0][0])  # type: ignore[call-overload]


async def ledger_consistent(database_url: str) -> None:
    """Balances equal the sum of their ledger entries, and the ledger sums to zero."""
    assert await query(
        database_url, "SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries"
    ) == [(0,)]
    drift = await query(
        database_url,
        """
        SELECT a.account, a.balance, COALESCE(l.total, 0) FROM (
            SELECT 'wallet:' || wallet_id AS account, balance_minor AS balance
              FROM customer_wallets
            UNION ALL
            SELECT 'giftcard:' || gift_card_id, balance_minor FROM gift_cards
        ) a LEFT JOIN (
            SELECT account, SUM(amount_minor) AS total FROM ledger_entries GROUP BY account
        ) l ON l.account = a.account
        WHERE a.balance <> COALESCE(l.total, 0)
        """,
    )
    assert drift == [], drift


def minor(amount: str | Decimal) -> int:
    return to_minor(Decimal(amount))
