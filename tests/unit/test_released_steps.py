"""A saga's row holds the slot of its step, so the steps of a released definition keep their
slots: a step declared before others, removed or renamed would make every saga in flight at
an upgrade read its step as another one (a charge taken for a check, its refund never run). A
new step is declared after the released ones, ``before=`` placing it in the order
(docs/SAGAS.md, "Changing a saga"); add it here then."""

from __future__ import annotations

import pytest

from orchestrator.engine.definition import Saga
from orchestrator.sagas import ALL_SAGAS
from orchestrator.sagas.bench import BENCH_SAGA

RELEASED: dict[str, list[str]] = {
    "card-issuance": ["reserve-card", "open-wallet", "activate-card"],
    "registration": ["open-wallet", "create-account", "activate-wallet"],
    "wallet-topup": ["charge-bank", "credit-wallet", "notify-client", "check-customer"],
    "order-checkout": [
        "check-customer",
        "charge-bank",
        "debit-balance",
        "reserve-stock",
        "book-delivery",
        "notify-client",
    ],
    "giftcard-purchase": [
        "check-customer",
        "charge-bank",
        "debit-balance",
        "issue-gift-card",
        "send-code",
        "notify-buyer",
    ],
    "giftcard-activation": ["redeem-code", "bind-gift-card", "activate-gift-card"],
    "invoice-payment": ["debit-source", "restore-limit"],
    "bench-order": ["reserve-payment", "reserve-stock", "create-delivery"],
}


@pytest.mark.parametrize("saga", [*ALL_SAGAS, BENCH_SAGA], ids=lambda saga: saga.name)
def test_released_steps_keep_their_places(saga: Saga) -> None:  # type: ignore[type-arg]
    released = RELEASED[saga.name]
    by_slot = sorted(saga.steps, key=lambda step: step.slot)
    assert [step.slot for step in by_slot] == list(range(len(saga.steps)))
    assert [step.name for step in by_slot][: len(released)] == released
    assert len(saga.steps) == len(released), "a new step: add it to RELEASED, at the end"
