"""The participants the sagas talk to, with their command topics."""

from __future__ import annotations

from events import topics
from orchestrator.engine.definition import Participant

CARD_ISSUANCE = Participant("card-issuance", topics.CARD_ISSUANCE_COMMANDS)
BILLING = Participant("billing", topics.BILLING_COMMANDS)
PAYMENT = Participant("payment", topics.PAYMENT_COMMANDS)
STORE = Participant("store", topics.STORE_COMMANDS)
DELIVERY = Participant("delivery", topics.DELIVERY_COMMANDS)
NOTIFICATION = Participant("notification", topics.NOTIFICATION_COMMANDS)
