"""A record's content digest: how a repeat of a request is told from another request that
reuses its business key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from events.customers import CustomerRegistered
from events.envelope import Envelope
from events.giftcards import GiftCardActivationRequested, GiftCardPurchaseRequested
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


def test_the_digest_is_hex_and_kept_with_the_saga_it_starts() -> None:
    record = request()
    value = record.content_digest()
    assert re.fullmatch("[0-9a-f]{40}", value)
    started = SagaMachine(CARD_ISSUANCE_SAGA, POLICY).start(
        record, Envelope(type=record.event_type), T0
    )
    assert started.instance.request_digest == value


def test_activation_codes_spelled_as_billing_reads_them_ask_the_same() -> None:
    def asked(code: str) -> GiftCardActivationRequested:
        return GiftCardActivationRequested(
            activation_id="a-1", customer_id="c-1", activation_code=code
        )

    first = asked("abcd-efgh-ijkl").content_digest()
    assert not asked("ABCD EFGH IJKL").asks_otherwise(first)
    assert asked("ABCD-EFGH-IJKX").asks_otherwise(first)
    assert "abcd" not in json.dumps(asked("abcd-efgh-ijkl").digest_content()).lower()


class OrderWithNote(OrderSubmitted):
    """The order as a later release might read it: one optional member more."""

    note: str | None = None


def test_a_digest_made_under_another_version_of_the_model_cannot_tell() -> None:
    """The same bytes read by a release whose model has one member more digest otherwise; a
    repeat across that release is taken as the same, not as another request."""
    earlier = OrderSubmitted.model_validate(ORDER).content_digest()
    later = OrderWithNote.model_validate(ORDER)
    assert later.content_digest()[8:] != earlier[8:]
    assert not later.asks_otherwise(earlier)
    assert OrderWithNote.model_validate(with_(("currency",), "KZT")).asks_otherwise(
        later.content_digest()
    )


def test_the_digest_does_not_depend_on_the_process() -> None:
    """Two processes (other hash seeds) make the same digest of the same record."""
    program = (
        "from events.orders import OrderSubmitted; import json, sys; "
        "print(OrderSubmitted.model_validate(json.loads(sys.argv[1])).content_digest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", program, json.dumps(ORDER)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {OrderSubmitted.model_validate(ORDER).content_digest()}


def test_blank_optional_details_of_an_order_are_the_same_as_left_out() -> None:
    """An order form that sends "" for what was left empty asks what one leaving it out does."""
    pickup = ORDER | {
        "delivery": {"method": "pickup", "point_id": "PP-1"},
        "payment": {"method": "bank_card"},
    }
    blank = pickup | {
        "delivery": {"method": "pickup", "point_id": "PP-1", "address": "  "},
        "payment": {"method": "bank_card", "card_token": "", "gift_card_id": " "},
    }
    assert digest(blank) == digest(pickup)
    assert OrderSubmitted.model_validate(blank).payment.card_token is None


@pytest.mark.parametrize("design", [None, "", "  "])
def test_a_gift_card_design_left_empty_is_the_default_one(design: str | None) -> None:
    purchase = {
        "purchase_id": "p-1",
        "customer_id": "c-1",
        "recipient_name": "Anna",
        "recipient_email": "anna@example.com",
        "amount": "10",
        "currency": "RUB",
        "payment": {"method": "wallet"},
    }
    empty = GiftCardPurchaseRequested.model_validate(purchase | {"design": design})
    assert empty.design == "classic"
    assert (
        empty.content_digest()
        == GiftCardPurchaseRequested.model_validate(purchase).content_digest()
    )
