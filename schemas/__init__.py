"""Persistence: every table of every owner, declared on one MetaData."""

from schemas import (
    billing,
    card_issuance,
    card_service,
    delivery,
    notification,
    payment,
    sagas,
    store,
)
from schemas.metadata import metadata

__all__ = [
    "billing",
    "card_issuance",
    "card_service",
    "delivery",
    "metadata",
    "notification",
    "payment",
    "sagas",
    "store",
]
