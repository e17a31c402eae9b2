"""Every saga definition the orchestrator runs, one module each."""

from orchestrator.engine.definition import Saga
from orchestrator.sagas.card_issuance import CARD_ISSUANCE_SAGA
from orchestrator.sagas.giftcards import GIFT_CARD_ACTIVATION_SAGA, GIFT_CARD_PURCHASE_SAGA
from orchestrator.sagas.invoice_payment import INVOICE_PAYMENT_SAGA
from orchestrator.sagas.order_checkout import ORDER_CHECKOUT_SAGA
from orchestrator.sagas.registration import REGISTRATION_SAGA
from orchestrator.sagas.wallet_topup import WALLET_TOPUP_SAGA

ALL_SAGAS: tuple[Saga, ...] = (  # type: ignore[type-arg]
    CARD_ISSUANCE_SAGA,
    REGISTRATION_SAGA,
    WALLET_TOPUP_SAGA,
    ORDER_CHECKOUT_SAGA,
    GIFT_CARD_PURCHASE_SAGA,
    GIFT_CARD_ACTIVATION_SAGA,
    INVOICE_PAYMENT_SAGA,
)

__all__ = ["ALL_SAGAS"]
