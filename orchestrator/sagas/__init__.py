"""Every saga definition the orchestrator runs, one module each."""

from orchestrator.engine.definition import Saga
from orchestrator.sagas.card_issuance import CARD_ISSUANCE_SAGA

ALL_SAGAS: tuple[Saga, ...] = (CARD_ISSUANCE_SAGA,)  # type: ignore[type-arg]

__all__ = ["ALL_SAGAS"]
