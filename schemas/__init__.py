"""Persistence: every table of every owner, declared on one MetaData."""

from schemas import billing, card_issuance, sagas
from schemas.metadata import metadata

__all__ = ["billing", "card_issuance", "metadata", "sagas"]
