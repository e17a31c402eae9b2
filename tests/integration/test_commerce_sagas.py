"""The commerce sagas of seed 003 through the contract topics: every outcome and reason,
with balances, stock and delivery capacity checked afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer import message_accumulator as accumulator
from aiokafka.producer import producer as producing
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from events import topics
from events.delivery import DeliveryMethod
from events.orders import DeliveryChoice
from orchestrator.client import UpstreamClient
from orchestrator.embedded import EmbeddedStack
from tests.integration import commerce as c
from tests.integration.helpers import query, unique, wait_for

pytestmark = pytest.mark.usefixtures("running_app")


@pytest.fixture
async def client(stack: EmbeddedStack) -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient(stack.settings(), watch=c.WATCHED) as upstream:
        yield upstream


@pytest.fixture
def outcomes(client: UpstreamClient) -> c.Outcomes:
    return c.Outcomes(client)


async def registered(client: UpstreamClient, outcomes: c.Outcomes, **kwargs: str) -> str:
    record = c.customer(**kwargs)
    await client.send(topics.CUSTOMERS_REGISTERED, record)
    status = await outcomes.one(record.customer_id)
    assert status["status"] == "ACTIVE", status
    return record.customer_id


async def shop(client: UpstreamClient, units: int = 10, slots: int = 5) -> tuple[str, str]:
    """A fresh SKU with ``units`` in stock (over two warehouses) and a pickup point."""
    sku, point_id = unique("SKU"), unique("PP")
    await client.send(topics.STORE_STOCK_RECEIVED, c.stock(sku, units - units // 2, "WH-1"))
    await client.send(topics.STORE_STOCK_RECEIVED, c.stock(sku, units // 2, "WH-2"))
    await client.send(topics.DELIVERY_POINTS_UPDATED, c.point(point_id, slots))
    return sku, point_id


async def funded(
    client: UpstreamClient, outcomes: c.Outcomes, customer_id: str, amount: str
) -> None:
    request = c.topup(customer_id, amount)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    assert (await outcomes.one(request.topup_id))["status"] == "COMPLETED"


async def bank_statuses(stack: EmbeddedStack, customer_id: str) -> list[str]:
    rows = await query(
        stack.database_url,
        "SELECT status FROM bank_payments WHERE customer_id = :c ORDER BY created_at",
        c=customer_id,
    )
    return [str(row[0]) for row in rows]


# -- registration -------------------------------------------------------------------------


async def test_registration_opens_wallet_and_account(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    record = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, record)
    status = await outcomes.one(record.customer_id)

    assert status["status"] == "ACTIVE"
    assert status["reason"] is None
    assert status["wallet_id"]
    assert await c.wallet_balance(stack.database_url, record.customer_id) == 0
    channels = await query(
        stack.database_url,
        "SELECT ch.channel, ch.address FROM notification_channels ch "
        "JOIN notification_accounts a USING (account_id) WHERE a.customer_id = :c "
        "ORDER BY ch.channel",
        c=record.customer_id,
    )
    assert channels == [("email", record.email), ("sms", record.phone)]


async def test_taken_username_is_rejected_and_its_wallet_closed(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    first = c.customer()
    await client.send(topics.CUSTOMERS_REGISTERED, first)
    await outcomes.one(first.customer_id)
    second = c.customer().model_copy(update={"username": first.username})
    await client.send(topics.CUSTOMERS_REGISTERED, second)
    status = await outcomes.one(second.customer_id)

    assert (status["status"], status["reason"], status["wallet_id"]) == (
        "REJECTED",
        "USERNAME_TAKEN",
        None,
    )
    wallets = await query(
        stack.database_url,
        "SELECT status FROM customer_wallets WHERE customer_id = :c",
        c=second.customer_id,
    )
    assert wallets == [("CLOSED",)]


# -- wallet top-up ------------------------------------------------------------------------


async def test_topup_credits_wallet_and_tells_the_client(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    request = c.topup(customer_id, "150.25", c.SBP)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)

    assert (status["status"], status["reason"], Decimal(status["balance"])) == (
        "COMPLETED",
        None,
        Decimal("150.25"),
    )
    assert await c.wallet_balance(stack.database_url, customer_id) == Decimal("150.25")
    mail = await outcomes.mail_to(f"{customer_id}@example.com")
    assert mail["template"] == "wallet-topped-up"
    assert "150.25" in mail["body"]
    await c.ledger_consistent(stack.database_url)


async def test_sales_sent_right_after_the_registration_wait_for_it(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    """Upstream need not wait for `customers.status`: a client whose registration is still
    on its way is asked about again rather than refused as unknown."""
    sku, point_id = await shop(client)
    registration = c.customer()
    topup = c.topup(registration.customer_id, "40")
    order = c.order(registration.customer_id, [(sku, 1, "5")], point_id)
    await client.send(topics.CUSTOMERS_REGISTERED, registration)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, topup)
    await client.send(topics.ORDERS_SUBMITTED, order)
    expected = {
        registration.customer_id: ("ACTIVE", None),
        topup.topup_id: ("COMPLETED", None),
        order.order_id: ("CONFIRMED", None),
    }
    done = await outcomes.wait(expected)
    assert {key: (doc["status"], doc["reason"]) for key, doc in done.items()} == expected
    assert await c.wallet_balance(stack.database_url, registration.customer_id) == Decimal("40")


@pytest.mark.parametrize(
    ("payment", "reason"), [(c.DECLINED, "PAYMENT_DECLINED"), (c.UNAVAILABLE, "TIMEOUT")]
)
async def test_topup_refused_by_the_bank_changes_nothing(
    client: UpstreamClient,
    outcomes: c.Outcomes,
    stack: EmbeddedStack,
    payment: c.PaymentDetails,
    reason: str,
) -> None:
    customer_id = await registered(client, outcomes)
    request = c.topup(customer_id, "10", payment)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", reason)
    assert await c.wallet_balance(stack.database_url, customer_id) == 0
    assert await bank_statuses(stack, customer_id) == []
    mail = await outcomes.mail_to(f"{customer_id}@example.com")  # seed 003: told either way
    assert mail["template"] == "payment-failed"
    assert mail["subject"] == "Your wallet top-up did not go through"
    assert "did not go through: " in mail["body"]
    assert f"(code {reason})" in mail["body"], "told why in words, the code for support"


async def test_topup_for_unknown_client_is_refused_before_any_charge(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = unique("nobody")
    request = c.topup(customer_id, "20")
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "UNKNOWN_CUSTOMER")
    assert await bank_statuses(stack, customer_id) == []


async def test_topup_in_another_currency_than_the_wallet_is_refused_before_any_charge(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    await funded(client, outcomes, customer_id, "30")
    request = c.topup(customer_id, "20").model_copy(update={"currency": "KZT"})
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "CURRENCY_MISMATCH")
    assert await bank_statuses(stack, customer_id) == ["CAPTURED"], "only the funding top-up"
    assert await c.wallet_balance(stack.database_url, customer_id) == Decimal("30")
    await c.ledger_consistent(stack.database_url)


async def test_topup_past_the_largest_balance_is_refunded(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    """A balance is reported as an amount: new money never takes a wallet past the largest one."""
    customer_id = await registered(client, outcomes)
    await funded(client, outcomes, customer_id, "9999999999999.99")
    request = c.topup(customer_id, "0.01")
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "BALANCE_LIMIT_REACHED")
    assert await c.wallet_balance(stack.database_url, customer_id) == Decimal("9999999999999.99")
    assert (await bank_statuses(stack, customer_id))[-1] == "REFUNDED"
    assert await bank_statuses(stack, customer_id) == ["CAPTURED", "REFUNDED"]
    await c.ledger_consistent(stack.database_url)


# -- order checkout -----------------------------------------------------------------------


async def test_order_paid_by_card_is_confirmed_with_stock_and_slot_taken(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, point_id = await shop(client, units=10, slots=5)
    request = c.order(customer_id, [(sku, 7, "10.50")], point_id, cost="3.00")
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], status["reason"]) == ("CONFIRMED", None)
    assert Decimal(status["total"]) == Decimal("76.50")
    assert status["saga_id"]
    assert await c.available(stack.database_url, sku) == (3, 7)
    assert await c.capacity(stack.database_url, point_id) == 4
    assert await bank_statuses(stack, customer_id) == ["CAPTURED"]
    mail = await outcomes.mail_to(f"{customer_id}@example.com")
    assert mail["template"] == "order-confirmed"
    assert request.order_id in mail["body"]
    assert mail["body"].endswith(f"on its way to Point {point_id} ({point_id}).")
    recorded = await query(
        stack.database_url,
        "SELECT reply FROM delivery_operations WHERE saga_id = CAST(:s AS uuid)",
        s=status["saga_id"],
    )
    assert "point_name" not in recorded[0][0], "a delivery worker of the release before reads it"


async def test_order_paid_from_wallet_needs_the_funds(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, point_id = await shop(client)
    poor = c.order(customer_id, [(sku, 2, "30")], point_id, c.WALLET, cost="0")
    await client.send(topics.ORDERS_SUBMITTED, poor)
    assert (await outcomes.one(poor.order_id))["reason"] == "INSUFFICIENT_FUNDS"

    await funded(client, outcomes, customer_id, "100")
    paid = c.order(customer_id, [(sku, 2, "30")], point_id, c.WALLET, cost="5")
    await client.send(topics.ORDERS_SUBMITTED, paid)
    status = await outcomes.one(paid.order_id)

    assert (status["status"], Decimal(status["total"])) == ("CONFIRMED", Decimal("65.00"))
    assert await c.wallet_balance(stack.database_url, customer_id) == Decimal("35.00")
    assert await c.available(stack.database_url, sku) == (8, 2)
    await c.ledger_consistent(stack.database_url)


async def test_out_of_stock_refunds_the_card(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, point_id = await shop(client, units=3)
    request = c.order(customer_id, [(sku, 4, "1")], point_id)
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "OUT_OF_STOCK")
    assert await c.available(stack.database_url, sku) == (3, 0)
    assert await bank_statuses(stack, customer_id) == ["REFUNDED"]
    mail = await outcomes.mail_to(f"{customer_id}@example.com")
    assert mail["template"] == "payment-failed"
    assert (
        "your order of 7.00 RUB did not go through: an item is out of stock (code OUT_OF_STOCK)."
        in mail["body"]
    )


async def test_no_delivery_capacity_releases_stock_and_returns_wallet_money(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    await funded(client, outcomes, customer_id, "50")
    sku, point_id = await shop(client, units=5, slots=0)
    request = c.order(customer_id, [(sku, 2, "10")], point_id, c.WALLET)
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "NO_DELIVERY_CAPACITY")
    assert await c.available(stack.database_url, sku) == (5, 0)
    assert await c.wallet_balance(stack.database_url, customer_id) == Decimal("50.00")
    assert await c.capacity(stack.database_url, point_id) == 0
    await c.ledger_consistent(stack.database_url)


@pytest.mark.parametrize(
    ("payment", "reason"), [(c.DECLINED, "PAYMENT_DECLINED"), (c.UNAVAILABLE, "TIMEOUT")]
)
async def test_order_refused_by_the_bank_takes_nothing(
    client: UpstreamClient,
    outcomes: c.Outcomes,
    stack: EmbeddedStack,
    payment: c.PaymentDetails,
    reason: str,
) -> None:
    customer_id = await registered(client, outcomes)
    sku, point_id = await shop(client)
    request = c.order(customer_id, [(sku, 1, "5")], point_id, payment)
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", reason)
    assert await c.available(stack.database_url, sku) == (10, 0)
    assert await c.capacity(stack.database_url, point_id) == 5


async def test_order_of_unknown_client_is_cancelled_before_any_charge(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    sku, point_id = await shop(client)
    customer_id = unique("nobody")
    request = c.order(customer_id, [(sku, 1, "5")], point_id)
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "UNKNOWN_CUSTOMER")
    assert await bank_statuses(stack, customer_id) == []


async def test_courier_order_books_the_courier_company(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, _ = await shop(client)
    courier = unique("COURIER")
    await client.send(
        topics.DELIVERY_POINTS_UPDATED, c.point(courier, 2, kind=DeliveryMethod.COURIER)
    )
    request = c.order(customer_id, [(sku, 1, "5")], courier).model_copy(
        update={
            "delivery": DeliveryChoice(
                method=DeliveryMethod.COURIER,
                point_id=courier,
                address="Moscow, Tverskaya 1",
                cost=Decimal("4.99"),
            )
        }
    )
    await client.send(topics.ORDERS_SUBMITTED, request)
    status = await outcomes.one(request.order_id)

    assert (status["status"], Decimal(status["total"])) == ("CONFIRMED", Decimal("9.99"))
    cases = await query(
        stack.database_url,
        "SELECT method, address, status FROM delivery_cases WHERE order_id = :o",
        o=request.order_id,
    )
    assert cases == [("courier", "Moscow, Tverskaya 1", "OPEN")]


async def test_courier_order_without_a_company_takes_one_with_room(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, _ = await shop(client)
    courier = unique("COURIER")
    await client.send(
        topics.DELIVERY_POINTS_UPDATED, c.point(courier, 10**6, kind=DeliveryMethod.COURIER)
    )
    request = c.order(customer_id, [(sku, 1, "5")], "unused").model_copy(
        update={
            "delivery": DeliveryChoice(method=DeliveryMethod.COURIER, address="Kazan, Baumana 2")
        }
    )
    await client.send(topics.ORDERS_SUBMITTED, request)
    assert (await outcomes.one(request.order_id))["status"] == "CONFIRMED"
    cases = await query(
        stack.database_url,
        "SELECT point_id FROM delivery_cases WHERE order_id = :o",
        o=request.order_id,
    )
    assert cases == [(courier,)]


async def test_saved_bank_card_needs_no_token_and_missing_gift_card_is_refused(
    client: UpstreamClient, outcomes: c.Outcomes
) -> None:
    customer_id = await registered(client, outcomes)
    sku, point_id = await shop(client)
    saved = c.order(customer_id, [(sku, 1, "5")], point_id, c.PaymentDetails(method="bank_card"))
    no_card = c.order(customer_id, [(sku, 1, "5")], point_id, c.PaymentDetails(method="gift_card"))
    for request in (saved, no_card):
        await client.send(topics.ORDERS_SUBMITTED, request)
    done = await outcomes.wait([saved.order_id, no_card.order_id])
    assert done[saved.order_id]["status"] == "CONFIRMED"
    assert (done[no_card.order_id]["status"], done[no_card.order_id]["reason"]) == (
        "CANCELLED",
        "GIFT_CARD_NOT_FOUND",
    )


async def test_invalid_order_is_dead_lettered_with_its_reason(
    client: UpstreamClient, outcomes: c.Outcomes
) -> None:
    bad = b'{"order_id": "o-bad", "customer_id": "c", "currency": "RUB", "items": []}'
    await client.send_raw(topics.ORDERS_SUBMITTED, "o-bad", bad)
    async with UpstreamClient(
        client.settings, watch=[topics.dlq(topics.ORDERS_SUBMITTED)]
    ) as reader:
        letters = await wait_for(
            reader, topics.dlq(topics.ORDERS_SUBMITTED), lambda r: r.key == "o-bad", count=1
        )
    assert letters[0].headers["dlq_reason"] == "INVALID_PAYLOAD"
    assert "items" in letters[0].headers["dlq_error"]
    assert letters[0].value == bad


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_records_of_a_compressing_producer_are_read(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack, codec: str
) -> None:
    """Upstream producers often compress: every codec Kafka has is read, none stalls."""
    records = [c.customer() for _ in range(3)]
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap_servers, compression_type=codec, linger_ms=20
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.CUSTOMERS_REGISTERED,
                record.model_dump_json().encode(),
                key=record.record_key().encode(),
            )
            for record in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    for record in records:
        assert (await outcomes.one(record.customer_id))["status"] == "ACTIVE"


class _NotUtf8(str):
    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfetrace"


async def test_a_record_whose_header_name_is_not_utf8_stalls_nothing(
    client: UpstreamClient,
    outcomes: c.Outcomes,
    stack: EmbeddedStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kafka clients write header names as UTF-8, the broker does not check: one that is not
    is read (the name decoded leniently), and the records after it on its partition too."""
    for module in (accumulator, producing):  # aiokafka's own writer in Python, which writes it
        monkeypatch.setattr(module, "DefaultRecordBatchBuilder", _DefaultRecordBatchBuilderPy)
    odd, after = c.customer(), c.customer().model_copy(update={"customer_id": unique("after")})
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers)
    await producer.start()
    try:
        for record, headers in ((odd, [(_NotUtf8("x"), b"1")]), (after, [])):
            await producer.send_and_wait(
                topics.CUSTOMERS_REGISTERED,
                record.model_dump_json().encode(),
                key=odd.record_key().encode(),  # one partition: the second waits behind the first
                headers=headers,
            )
    finally:
        await producer.stop()
    for record in (odd, after):
        assert (await outcomes.one(record.customer_id))["status"] == "ACTIVE"


# -- gift cards ---------------------------------------------------------------------------


async def test_gift_card_bought_activated_and_spent(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    buyer = await registered(client, outcomes)
    friend = await registered(client, outcomes)
    bought = c.purchase(buyer, "40")
    await client.send(topics.GIFTCARDS_PURCHASE_REQUESTED, bought)
    status = await outcomes.one(bought.purchase_id)
    assert (status["status"], status["reason"]) == ("COMPLETED", None)
    assert "code" not in status
    assert "activation_code" not in status
    gift_card_id = status["gift_card_id"]

    mail = await outcomes.mail_to(bought.recipient_email)
    code = c.code_in(mail)
    stored = await query(
        stack.database_url,
        "SELECT code_hash FROM gift_cards WHERE gift_card_id = :g",
        g=gift_card_id,
    )
    assert code not in str(stored)
    assert code.replace("-", "") not in str(stored)
    receipt = await outcomes.mail_to(f"{buyer}@example.com")  # seed 003: the payment result
    assert receipt["template"] == "giftcard-purchased"
    assert code not in receipt["body"]

    activated = c.activation(friend, code)
    await client.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, activated)
    status = await outcomes.one(activated.activation_id)
    assert (status["status"], status["gift_card_id"], Decimal(status["balance"])) == (
        "ACTIVATED",
        gift_card_id,
        Decimal("40.00"),
    )

    again = c.activation(buyer, code)
    await client.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, again)
    assert (await outcomes.one(again.activation_id))["reason"] == "CODE_ALREADY_USED"

    sku, point_id = await shop(client)
    spent = c.order(friend, [(sku, 3, "10")], point_id, c.gift_card(gift_card_id), cost="0")
    await client.send(topics.ORDERS_SUBMITTED, spent)
    assert (await outcomes.one(spent.order_id))["status"] == "CONFIRMED"
    balance = await query(
        stack.database_url,
        "SELECT balance_minor, owner_id FROM gift_cards WHERE gift_card_id = :g",
        g=gift_card_id,
    )
    assert balance == [(1000, friend)]
    stolen = c.order(buyer, [(sku, 1, "1")], point_id, c.gift_card(gift_card_id), cost="0")
    await client.send(topics.ORDERS_SUBMITTED, stolen)
    assert (await outcomes.one(stolen.order_id))["reason"] == "GIFT_CARD_NOT_FOUND"
    await c.ledger_consistent(stack.database_url)


async def test_wrong_activation_code_is_rejected(
    client: UpstreamClient, outcomes: c.Outcomes
) -> None:
    customer_id = await registered(client, outcomes)
    request = c.activation(customer_id, "AAAA-BBBB-CCCC-DDDD")
    await client.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, request)
    status = await outcomes.one(request.activation_id)
    assert (status["status"], status["reason"]) == ("REJECTED", "INVALID_ACTIVATION_CODE")


async def test_gift_card_for_bouncing_recipient_is_cancelled_and_refunded(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    buyer = await registered(client, outcomes)
    await funded(client, outcomes, buyer, "30")
    request = c.purchase(buyer, "25", c.WALLET, email="friend@bounce.test")
    await client.send(topics.GIFTCARDS_PURCHASE_REQUESTED, request)
    status = await outcomes.one(request.purchase_id)

    assert (status["status"], status["reason"], status["gift_card_id"]) == (
        "CANCELLED",
        "RECIPIENT_UNREACHABLE",
        None,
    )
    assert await c.wallet_balance(stack.database_url, buyer) == Decimal("30.00")
    cards = await query(
        stack.database_url,
        "SELECT status, balance_minor FROM gift_cards WHERE purchaser_id = :b",
        b=buyer,
    )
    assert cards == [("CANCELLED", 0)]
    await c.ledger_consistent(stack.database_url)


async def test_gift_card_in_a_currency_billing_does_not_keep_is_refused_before_payment(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    buyer = await registered(client, outcomes)
    request = c.purchase(buyer, "25").model_copy(update={"currency": "GBP"})
    await client.send(topics.GIFTCARDS_PURCHASE_REQUESTED, request)
    status = await outcomes.one(request.purchase_id)

    assert (status["status"], status["reason"]) == ("CANCELLED", "UNSUPPORTED_CURRENCY")
    assert await bank_statuses(stack, buyer) == []
    mail = await outcomes.mail_to(f"{buyer}@example.com")
    assert mail["template"] == "payment-failed"
    assert "we do not take payments in this currency" in mail["body"]


# -- notification ---------------------------------------------------------------------------


async def test_bounced_email_falls_back_to_sms_and_is_not_tried_again(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    record = c.customer(email=f"{unique('x')}@bounce.test")
    await client.send(topics.CUSTOMERS_REGISTERED, record)
    await outcomes.one(record.customer_id)
    for _ in range(2):
        await funded(client, outcomes, record.customer_id, "5")

    texts = await outcomes.mails_to(record.phone, count=2)
    assert [(m["channel"], m["template"]) for m in texts] == [("sms", "wallet-topped-up")] * 2
    assert not [m for m in outcomes.mails if m["recipient"] == record.email]
    tries = await query(
        stack.database_url,
        "SELECT channel, status FROM notifications WHERE recipient = :email",
        email=record.email,
    )
    assert tries == [("email", "BOUNCED")]


async def test_a_failure_notice_its_channel_could_not_deliver_for_now_arrives_later(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    """Seed 003: the client hears of the payment's result either way; a failure's notice,
    sent as the saga ends, is sent again while the mail provider is down for a moment."""
    email = f"{unique('f')}@flaky.test"
    customer_id = await registered(client, outcomes, email=email)
    request = c.topup(customer_id, "5", c.DECLINED)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, request)
    status = await outcomes.one(request.topup_id)
    assert (status["status"], status["reason"]) == ("CANCELLED", "PAYMENT_DECLINED")

    mail = await outcomes.mail_to(email)
    assert (mail["channel"], mail["template"]) == ("email", "payment-failed")
    for _ in range(100):
        saga = await query(
            stack.database_url,
            "SELECT status, pending_command_id, next_action_at FROM saga_instances"
            " WHERE business_key = :k",
            k=request.topup_id,
        )
        if saga == [("ABORTED", None, None)]:
            break
        await asyncio.sleep(0.1)
    assert saga == [("ABORTED", None, None)]
    notices = await query(
        stack.database_url,
        "SELECT count(*) FROM saga_history h JOIN saga_instances i ON i.id = h.saga_id"
        " WHERE i.business_key = :k AND h.event = 'notice-sent'",
        k=request.topup_id,
    )
    assert notices == [(3,)]  # the provider was down for the first two


# -- the remaining refusals -----------------------------------------------------------------


async def test_remaining_refusals_each_give_their_reason(
    client: UpstreamClient, outcomes: c.Outcomes, stack: EmbeddedStack
) -> None:
    customer_id = await registered(client, outcomes)
    sku, _ = await shop(client)
    pound = c.customer(currency="GBP")
    kzt = c.topup(customer_id, "10").model_copy(update={"currency": "KZT"})
    nowhere = c.order(customer_id, [(sku, 1, "5")], unique("PP-missing"))
    declined_gift = c.purchase(customer_id, "15", c.DECLINED)
    stranger = c.activation(unique("nobody"), "AAAA-BBBB-CCCC-DDDD")
    await client.send(topics.CUSTOMERS_REGISTERED, pound)
    await client.send(topics.WALLETS_TOPUP_REQUESTED, kzt)
    await client.send(topics.ORDERS_SUBMITTED, nowhere)
    await client.send(topics.GIFTCARDS_PURCHASE_REQUESTED, declined_gift)
    await client.send(topics.GIFTCARDS_ACTIVATION_REQUESTED, stranger)
    expected = {
        pound.customer_id: ("REJECTED", "UNSUPPORTED_CURRENCY"),
        kzt.topup_id: ("CANCELLED", "CURRENCY_MISMATCH"),
        nowhere.order_id: ("CANCELLED", "UNKNOWN_DELIVERY_POINT"),
        declined_gift.purchase_id: ("CANCELLED", "PAYMENT_DECLINED"),
        stranger.activation_id: ("REJECTED", "UNKNOWN_CUSTOMER"),
    }
    done = await outcomes.wait(expected)
    assert {key: (doc["status"], doc["reason"]) for key, doc in done.items()} == expected
    assert await bank_statuses(stack, customer_id) == ["REFUNDED"], "the order, paid then refunded"
    assert await c.available(stack.database_url, sku) == (10, 0)
