"""Two batches of billing commands that touch the same wallets in opposite orders, handled at
once by two consumers (two processes, two partitions): the rows each batch will lock are
locked first and in key order, so neither waits on the other in a cycle, and no batch has to
be run again after PostgreSQL breaks a deadlock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.base import Reply
from events.billing import (
    BalanceSource,
    CheckCustomer,
    DebitBalance,
    RefundBalance,
    UndoRedemption,
)
from events.delivery import BookDelivery, CancelDelivery, DeliveryBooked, DeliveryMethod
from events.envelope import Envelope
from events.notification import NotifyCustomer
from events.store import OrderLine, ReleaseStock, ReserveStock
from orchestrator.engine.outbox import OutboxRelay
from schemas.billing import customer_wallets, ledger_entries
from schemas.delivery import delivery_cases, delivery_points
from schemas.notification import accounts, channels
from tests.integration.helpers import Record, Sent, saga_command, unique
from workers.billing.service import BillingService
from workers.delivery.service import DeliveryService
from workers.notification.service import NotificationService
from workers.registry import WORKERS
from workers.runtime import ParticipantRuntime
from workers.store.service import StoreService

SPEC = WORKERS["billing"]
BARRIER_S = 1.5


class _Interleaved(BillingService):
    """Billing whose two batches each wait, after their first command, until the other
    has handled its first too: without the locks taken ahead each then holds one wallet
    and waits for the other's."""

    def __init__(self) -> None:
        super().__init__("test-code-key")
        self.commands_run = 0
        self._first_done: set[int] = set()
        self._both = asyncio.Event()

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, command: object) -> Reply:
        self.commands_run += 1
        reply = await super().__call__(conn, envelope, command)
        if id(conn) not in self._first_done:
            self._first_done.add(id(conn))
            if len(self._first_done) >= 2:
                self._both.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._both.wait(), timeout=BARRIER_S)
        return reply


class _NoLocksAhead(_Interleaved):
    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None:
        return None


def _debit(customer_id: str) -> Record:
    command = DebitBalance(
        customer_id=customer_id,
        source=BalanceSource.WALLET,
        amount_minor=100,
        currency="KZT",
        purpose="orders",
    )
    return saga_command(SPEC.topic, command, "order-checkout", "debit-wallet")


def _check(customer_id: str) -> Record:
    command = CheckCustomer(customer_id=customer_id)
    return saga_command(SPEC.topic, command, "order-checkout", "check-customer")


async def _wallets(engine: AsyncEngine, *customers: str) -> None:
    """A wallet of 1,000 for each client, funded through the ledger as billing would, so the
    shared database's ledger still sums to zero and matches every balance."""
    wallets = {customer: unique("W") for customer in customers}
    async with engine.begin() as conn:
        await conn.execute(
            customer_wallets.insert(),
            [
                {
                    "wallet_id": wallet,
                    "customer_id": customer,
                    "currency": "KZT",
                    "balance_minor": 1_000,
                    "status": "OPEN",
                    "saga_id": uuid4(),
                }
                for customer, wallet in wallets.items()
            ],
        )
        await conn.execute(
            ledger_entries.insert(),
            [
                {
                    "movement_id": f"fund-{wallet}",
                    "account": account,
                    "amount_minor": amount,
                    "currency": "KZT",
                    "saga_id": uuid4(),
                    "step": "fund",
                    "memo": "test funding",
                }
                for wallet in wallets.values()
                for account, amount in (("clearing:bank", -1_000), (f"wallet:{wallet}", 1_000))
            ],
        )


async def _two_batches_at_once(
    engine: AsyncEngine, handler: _Interleaved, first: Callable[[str], Record] = _debit
) -> dict[str, int]:
    a, b = unique("cust"), unique("cust")
    await _wallets(engine, a, b)
    runtime = ParticipantRuntime(
        SPEC.name,
        SPEC.topic,
        engine,
        SPEC.commands,
        handler,
        OutboxRelay(engine, SPEC.outbox, Sent(), delete_delay_s=0.0),
        SPEC.inbox,
    )
    await asyncio.gather(
        runtime.handle_batch([first(a), _debit(b)]),
        runtime.handle_batch([first(b), _debit(a)]),
    )
    await runtime.relay.drain()
    async with engine.connect() as conn:
        balances = await conn.execute(
            text(
                f"SELECT customer_id, balance_minor FROM {customer_wallets.name}"
                " WHERE customer_id IN (:a, :b)"
            ),
            {"a": a, "b": b},
        )
        return {row.customer_id: row.balance_minor for row in balances}


async def test_batches_in_opposite_orders_run_once_each(engine: AsyncEngine) -> None:
    handler = _Interleaved()
    balances = await _two_batches_at_once(engine, handler)
    assert sorted(balances.values()) == [800, 800]
    assert handler.commands_run == 4


async def test_a_check_that_moves_no_money_takes_no_lock_behind_the_batch(
    engine: AsyncEngine,
) -> None:
    """A client check reads the wallet without locking it: locked there, after the batch's
    locks ahead, it would wait for the other batch's wallet while holding its own."""
    handler = _Interleaved()
    balances = await _two_batches_at_once(engine, handler, first=_check)
    assert sorted(balances.values()) == [900, 900]
    assert handler.commands_run == 4


async def test_without_the_locks_ahead_the_same_batches_deadlock(engine: AsyncEngine) -> None:
    """The control: the interleaving above does make a deadlock when nothing is locked
    ahead; the batch PostgreSQL fails runs again, and the money still comes out right."""
    handler = _NoLocksAhead()
    balances = await _two_batches_at_once(engine, handler)
    assert sorted(balances.values()) == [800, 800]
    assert handler.commands_run > 4


async def _held(engine: AsyncEngine, statement: str, **values: object) -> bool:
    """Whether another transaction holds a lock on the rows ``statement`` selects."""
    async with engine.connect() as conn:
        try:
            await conn.execute(text(f"{statement} FOR UPDATE NOWAIT"), values)
        except DBAPIError as exc:
            if "could not obtain lock" not in str(exc):
                raise
            return True
        return False


async def test_the_rows_of_undone_steps_and_reserved_skus_are_locked_ahead(
    engine: AsyncEngine,
) -> None:
    """A refund locks the wallet its step's ledger entries name; an undone redemption the gift
    card its stored reply names; a reservation its SKUs, a release the SKUs it gave out."""
    refunded, redeemed = _debit(unique("cust")), unique("G")
    customer = DebitBalance.model_validate_json(refunded.value).customer_id
    refund = Envelope.from_headers({k: v.decode() for k, v in refunded.headers})
    released, sku, other_sku = uuid4(), unique("SKU"), unique("SKU")
    bystander = unique("cust")
    await _wallets(engine, customer, bystander)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"""INSERT INTO ledger_entries (movement_id, account, amount_minor, currency,
                saga_id, step, memo)
                SELECT 'm1', account, amount, 'KZT', :saga, :step, 'test'
                FROM {customer_wallets.name},
                LATERAL (VALUES ('wallet:' || wallet_id, -100), ('sales:orders', 100))
                    AS movement(account, amount)
                WHERE customer_id = :customer"""
            ),
            {"saga": refund.saga_id, "step": refund.saga_step, "customer": customer},
        )
        await conn.execute(
            text(
                f"UPDATE {customer_wallets.name} SET balance_minor = balance_minor - 100"
                " WHERE customer_id = :customer"
            ),
            {"customer": customer},
        )
        await conn.execute(
            text(
                """INSERT INTO gift_cards (gift_card_id, code_hash, currency, initial_minor,
                balance_minor, status, purchaser_id, recipient_name, design, saga_id)
                VALUES (:card, :card, 'KZT', 100, 0, 'ACTIVE', 'p', 'r', 'd',
                        gen_random_uuid())"""
            ),
            {"card": redeemed},
        )
        undo = uuid4()
        await conn.execute(
            text(
                """INSERT INTO billing_operations (saga_id, step, status, reply)
                VALUES (:saga, 'redeem', 'DONE', CAST(:reply AS jsonb))"""
            ),
            {"saga": undo, "reply": f'{{"gift_card_id": "{redeemed}"}}'},
        )
        await conn.execute(
            text(
                """INSERT INTO stock (sku, warehouse_id, available, reserved)
                VALUES (:sku, 'w1', 5, 0), (:other, 'w1', 0, 2)"""
            ),
            {"sku": sku, "other": other_sku},
        )
        await conn.execute(
            text(
                """INSERT INTO stock_reservations (saga_id, sku, warehouse_id, quantity, status)
                VALUES (:saga, :other, 'w1', 2, 'RESERVED')"""
            ),
            {"other": other_sku, "saga": released},
        )

    def step(saga: UUID, name: str) -> Envelope:
        return Envelope(type="t", saga_id=saga, saga_type="t", saga_step=name)

    billing, store = BillingService("test-code-key"), StoreService()
    async with engine.begin() as conn:
        assert refund.saga_id is not None
        assert refund.saga_step is not None
        await billing.lock_ahead(
            conn,
            [
                (step(refund.saga_id, refund.saga_step), RefundBalance()),
                (step(undo, "redeem"), UndoRedemption()),
            ],
        )
        await store.lock_ahead(
            conn,
            [
                (
                    step(uuid4(), "reserve"),
                    ReserveStock(order_id="o", lines=[OrderLine(sku=sku, quantity=1)]),
                ),
                (step(released, "reserve"), ReleaseStock()),
            ],
        )
        wallet = f"SELECT 1 FROM {customer_wallets.name} WHERE customer_id = :id"
        assert await _held(engine, wallet, id=customer)
        assert await _held(engine, "SELECT 1 FROM gift_cards WHERE gift_card_id = :id", id=redeemed)
        for each in (sku, other_sku):
            assert await _held(engine, "SELECT 1 FROM stock WHERE sku = :id", id=each)
        assert not await _held(engine, wallet, id=bystander)


async def test_channels_and_delivery_points_are_locked_ahead(engine: AsyncEngine) -> None:
    """A notice locks its client's channels; a booking the point it names, or every courier
    company when it names none; a cancellation the point of its saga's open case."""
    customer, account = unique("cust"), unique("acc")
    pickup, courier, freed = unique("P"), unique("C"), unique("P")
    cancelled = uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            accounts.insert().values(
                account_id=account,
                customer_id=customer,
                username=customer,
                first_name="A",
                last_name="B",
                status="ACTIVE",
                saga_id=uuid4(),
            )
        )
        await conn.execute(
            channels.insert(),
            [
                {"account_id": account, "channel": name, "address": "x", "status": "ACTIVE"}
                for name in ("email", "sms")
            ],
        )
        await conn.execute(
            delivery_points.insert(),
            [
                # no room: a saga of another test never books these
                {"point_id": point, "kind": kind.value, "name": point, "capacity": 0}
                for point, kind in (
                    (pickup, DeliveryMethod.PICKUP),
                    (courier, DeliveryMethod.COURIER),
                    (freed, DeliveryMethod.PICKUP),
                )
            ],
        )
        await conn.execute(
            delivery_cases.insert().values(
                case_id=unique("DLV"),
                saga_id=cancelled,
                order_id="o",
                point_id=freed,
                method=DeliveryMethod.PICKUP.value,
                status="OPEN",
            )
        )

    def step(saga: UUID) -> Envelope:
        return Envelope(type="t", saga_id=saga, saga_type="t", saga_step="s")

    async with engine.begin() as conn:
        await NotificationService("test-code-key").lock_ahead(
            conn, [(step(uuid4()), NotifyCustomer(customer_id=customer, template="t"))]
        )
        await DeliveryService().lock_ahead(
            conn,
            [
                (step(uuid4()), BookDelivery(order_id="o", method="pickup", point_id=pickup)),
                (step(uuid4()), BookDelivery(order_id="o", method="courier", address="a")),
                (step(cancelled), CancelDelivery()),
            ],
        )
        held = "SELECT 1 FROM notification_channels WHERE account_id = :id"
        assert await _held(engine, held, id=account)
        for point in (pickup, courier, freed):
            assert await _held(
                engine, "SELECT 1 FROM delivery_points WHERE point_id = :id", id=point
            )


async def test_a_booking_handled_alone_goes_on_to_the_next_courier_when_one_fills(
    engine: AsyncEngine,
) -> None:
    """A command handled on its own (a failed batch's path) has no courier locked ahead: the
    courier with most room is locked as it is chosen, so when another transaction takes its
    last slot meanwhile, the booking goes to the next courier, not to NO_DELIVERY_CAPACITY."""
    first, second = unique("C-a"), unique("C-b")
    couriers = "SELECT point_id, capacity FROM delivery_points WHERE kind = 'courier'"
    async with engine.begin() as conn:  # these two are the only couriers with room, a while
        others = (await conn.execute(text(f"{couriers} AND capacity > 0"))).all()
        await conn.execute(text("UPDATE delivery_points SET capacity = 0 WHERE kind = 'courier'"))
        await conn.execute(
            delivery_points.insert(),
            [
                {"point_id": p, "kind": DeliveryMethod.COURIER.value, "name": p, "capacity": 1}
                for p in (first, second)
            ],
        )
    service = DeliveryService()

    def booking() -> tuple[Envelope, BookDelivery]:
        envelope = Envelope(type="t", saga_id=uuid4(), saga_type="t", saga_step="s")
        return envelope, BookDelivery(order_id="o", method="courier", address="a")

    async def alone() -> Reply:
        async with engine.begin() as conn:
            return await service(conn, *booking())

    try:
        async with engine.connect() as conn:
            async with conn.begin():
                assert isinstance(await service(conn, *booking()), DeliveryBooked)
                later = asyncio.create_task(alone())
                await asyncio.sleep(0.5)  # it chooses while the first booking is uncommitted
            reply = await later
        assert isinstance(reply, DeliveryBooked), reply
        async with engine.connect() as conn:
            left = (
                await conn.execute(
                    text(f"{couriers} AND point_id IN (:a, :b)"), {"a": first, "b": second}
                )
            ).all()
        assert sorted(left) == [(first, 0), (second, 0)]
    finally:
        async with engine.begin() as conn:
            for point_id, capacity in others:
                await conn.execute(
                    delivery_points.update()
                    .where(delivery_points.c.point_id == point_id)
                    .values(capacity=capacity)
                )
