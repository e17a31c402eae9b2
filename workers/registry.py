"""Every worker the process can run: its command topic, its tables, its handler, its feeds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Table

from events import topics
from events.billing import BillingCommand
from events.cards import CardIssuanceCommand
from events.delivery import DeliveryCommand, PointUpdated
from events.notification import NotificationCommand
from events.payment import PaymentCommand
from events.store import StockReceived, StoreCommand
from orchestrator.settings import Settings
from schemas import billing, card_issuance, delivery, notification, payment, store
from workers.billing.service import BillingService
from workers.card_issuance.service import CardIssuanceService
from workers.delivery.service import DeliveryService, update_points
from workers.feeds import FeedSpec
from workers.notification.service import NotificationService
from workers.payment.service import PaymentService
from workers.runtime import CommandHandler, Decider
from workers.store.service import StoreService, receive_stock


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    topic: str
    command_model: Any
    """The (discriminated union) type of the worker's commands."""
    inbox: Table
    outbox: Table
    build: Callable[[Settings], CommandHandler | Decider]
    feeds: tuple[FeedSpec, ...] = ()
    publishes: tuple[str, ...] = ()

    @functools.cached_property
    def commands(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.command_model)


def _code_key(settings: Settings) -> str:
    return settings.giftcard_code_key.get_secret_value()


WORKERS: dict[str, WorkerSpec] = {
    spec.name: spec
    for spec in (
        WorkerSpec(
            card_issuance.OWNER,
            topics.CARD_ISSUANCE_COMMANDS,
            CardIssuanceCommand,
            card_issuance.card_issuance_inbox,
            card_issuance.card_issuance_outbox,
            lambda settings: CardIssuanceService(settings.card_number_salt.get_secret_value()),
        ),
        WorkerSpec(
            billing.OWNER,
            topics.BILLING_COMMANDS,
            BillingCommand,
            billing.billing_inbox,
            billing.billing_outbox,
            lambda settings: BillingService(_code_key(settings)),
        ),
        WorkerSpec(
            payment.OWNER,
            topics.PAYMENT_COMMANDS,
            PaymentCommand,
            payment.payment_inbox,
            payment.payment_outbox,
            lambda _settings: PaymentService(),
        ),
        WorkerSpec(
            store.OWNER,
            topics.STORE_COMMANDS,
            StoreCommand,
            store.store_inbox,
            store.store_outbox,
            lambda _settings: StoreService(),
            feeds=(FeedSpec(topics.STORE_STOCK_RECEIVED, StockReceived, receive_stock),),
        ),
        WorkerSpec(
            delivery.OWNER,
            topics.DELIVERY_COMMANDS,
            DeliveryCommand,
            delivery.delivery_inbox,
            delivery.delivery_outbox,
            lambda _settings: DeliveryService(),
            feeds=(FeedSpec(topics.DELIVERY_POINTS_UPDATED, PointUpdated, update_points),),
        ),
        WorkerSpec(
            notification.OWNER,
            topics.NOTIFICATION_COMMANDS,
            NotificationCommand,
            notification.notification_inbox,
            notification.notification_outbox,
            lambda settings: NotificationService(_code_key(settings)),
            publishes=(topics.NOTIFICATIONS_SENT,),
        ),
    )
}
