"""A record's content digest: how a repeat of a request is told from another request that
reuses its business key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from events.customers import CustomerRegistered
from events.envelope import Envelope
from events.orders import OrderSubmitted
from orchestrator.engine.machine import SagaMachine
from orchestrator.sagas.card_issuance import CARD_ISSUANCE_SAGA
from tests.unit.test_machine import POLICY, T0, request

ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "currency": "RUB",
    "items": [{"sku": "A", "quantity": 2, "unit_price": 10.5}],
    "payment": {"method": "bank_card", "card_token": "tok_ok"},
    "delivery": {"method": "courier", "address": "Arbat 1", "cost": 3},
}


def digest(document: dict[str, Any]) -> str:
    return OrderSubmitted.model_validate(document).content_digest()


def with_(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """ORDER with the member at ``path`` set to ``value``."""
    copy: Any = {**ORDER, "items": [dict(ORDER["items"][0])]}
    copy["payment"], copy["delivery"] = dict(ORDER["payment"]), dict(ORDER["delivery"])
    inner = copy
    for step in path[:-1]:
        inner = inner[step]
    inner[path[-1]] = value
    return dict(copy)


@pytest.mark.parametrize(
    "spelled",
    [
        dict(reversed(list(ORDER.items()))),
        ORDER | {"comment": "a member the order does not read", "source": None},
        with_(("items", 0, "unit_price"), "10.50"),
        with_(("delivery", "cost"), "3.00"),
        with_(("customer_id",), "  c-1 "),
        with_(("payment", "gift_card_id"), None),
    ],
    ids=["member-order", "unknown-members", "amount-as-text", "cost-spelled", "spaces", "null"],
)
def test_the_same_request_however_spelled_has_one_digest(spelled: dict[str, Any]) -> None:
    assert digest(spelled) == digest(ORDER)


@pytest.mark.parametrize(
    "other",
    [
        with_(("items", 0, "quantity"), 3),
        with_(("items", 0, "unit_price"), "10.51"),
        with_(("payment", "card_token"), "tok_decline"),
        with_(("delivery",), {"method": "pickup", "point_id": "P"}),
        with_(("currency",), "KZT"),
        with_(("customer_id",), "c-2"),
    ],
    ids=["quantity", "price", "token", "delivery", "currency", "customer"],
)
def test_another_request_under_the_same_key_has_another_digest(other: dict[str, Any]) -> None:
    assert digest(other) != digest(ORDER)


def test_a_blank_optional_member_is_the_same_as_one_left_out() -> None:
    bare = {"customer_id": "c-1", "username": "ann", "email": "ann@example.com"}
    blank = bare | {"phone": "", "first_name": " "}
    assert (
        CustomerRegistered.model_validate(bare).content_digest()
        == CustomerRegistered.model_validate(blank).content_digest()
    )


def test_the_digest_is_short_hex_and_kept_with_the_saga_it_starts() -> None:
    record = request()
    value = record.content_digest()
    assert re.fullmatch("[0-9a-f]{32}", value)
    started = SagaMachine(CARD_ISSUANCE_SAGA, POLICY).start(
        record, Envelope(type=record.event_type), T0
    )
    assert started.instance.request_digest == value
