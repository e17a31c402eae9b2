"""Every topic name the project uses, in one place."""

from __future__ import annotations

from typing import Final

DLQ_SUFFIX: Final = ".dlq"

# Upstream contract (CONTRACT.md): inbound requests and their outcome topics.
CARDS_ISSUE_REQUESTED: Final = "cards.issue-requested"
CARDS_STATUS: Final = "cards.status"

# Internal: commands to each participant, replies to the orchestrator.
CARD_ISSUANCE_COMMANDS: Final = "card-issuance.commands"
BILLING_COMMANDS: Final = "billing.commands"
SAGA_REPLIES: Final = "orchestra.replies"


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


# Seed 003: the commerce sagas and the feeds of the warehouse and logistics systems.
CUSTOMERS_REGISTERED: Final = "customers.registered"
CUSTOMERS_STATUS: Final = "customers.status"
WALLETS_TOPUP_REQUESTED: Final = "wallets.topup-requested"
WALLETS_STATUS: Final = "wallets.status"
ORDERS_SUBMITTED: Final = "orders.submitted"
ORDERS_STATUS: Final = "orders.status"
GIFTCARDS_PURCHASE_REQUESTED: Final = "giftcards.purchase-requested"
GIFTCARDS_ACTIVATION_REQUESTED: Final = "giftcards.activation-requested"
GIFTCARDS_STATUS: Final = "giftcards.status"
STORE_STOCK_RECEIVED: Final = "store.stock-received"
DELIVERY_POINTS_UPDATED: Final = "delivery.points-updated"
NOTIFICATIONS_SENT: Final = "notifications.sent"

CARDS_INVOICE_PAYMENT_REQUESTED: Final = "cards.invoice-payment-requested"
CARDS_INVOICE_PAYMENTS_STATUS: Final = "cards.invoice-payments.status"

PAYMENT_COMMANDS: Final = "payment.commands"
STORE_COMMANDS: Final = "store.commands"
DELIVERY_COMMANDS: Final = "delivery.commands"
NOTIFICATION_COMMANDS: Final = "notification.commands"

OUTBOUND: Final = frozenset(
    {
        CARDS_STATUS,
        CUSTOMERS_STATUS,
        WALLETS_STATUS,
        ORDERS_STATUS,
        GIFTCARDS_STATUS,
        CARDS_INVOICE_PAYMENTS_STATUS,
        NOTIFICATIONS_SENT,
    }
)
"""The topics systems outside the project read (outcomes, sent notifications): their readers
need not be idempotent, so a record published there twice is seen twice."""
