from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from events.masking import holds_card_number, luhn_valid, mask_card_numbers, mask_text
from events.money import MAX_MINOR, Amount, CurrencyCode, from_minor, plain, spellings, to_minor
from events.orders import OrderSubmitted
from workers.card_issuance.numbers import mask, new_card_number, number_hash


class Priced(BaseModel):
    amount: Amount


@pytest.mark.parametrize("raw", [10.5, "10.50", 1, "0.01"])
def test_amount_accepts_numbers_and_decimal_strings(raw: object) -> None:
    assert Priced.model_validate({"amount": raw}).amount == Decimal(str(raw))


@pytest.mark.parametrize("raw", [0, -1, "1.001", 1.001, 10.5000000001, "abc", True, "NaN"])
def test_amount_refuses_bad_values(raw: object) -> None:
    with pytest.raises(ValidationError):
        Priced.model_validate({"amount": raw})


def test_a_binary_rounding_error_is_read_as_the_cents_meant() -> None:
    assert Priced.model_validate({"amount": 0.1 + 0.2}).amount == Decimal("0.30")
    assert Priced.model_validate({"amount": 0.1 + 0.7}).amount == Decimal("0.80")


def test_minor_units_round_trip() -> None:
    assert to_minor(Decimal("10.50")) == 1050
    assert from_minor(1050) == Decimal("10.50")


def _order(quantity: int, unit_price: str, cost: str) -> dict[str, object]:
    return {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "RUB",
        "items": [{"sku": "S-1", "quantity": quantity, "unit_price": unit_price}],
        "payment": {"method": "bank_card", "card_token": "tok_ok"},
        "delivery": {"method": "pickup", "point_id": "PP-1", "cost": cost},
    }


@pytest.mark.parametrize(
    ("quantity", "unit_price", "cost", "fits"),
    [
        (1, "9999999999999.99", "0", True),
        (1, "9999999999999.98", "0.01", True),
        (2, "9999999999999.99", "0", False),
        (1, "9999999999999.99", "0.01", False),
        (1_000_000, "9999999999999.99", "0", False),
    ],
)
def test_an_order_whose_total_is_no_amount_is_refused(
    quantity: int, unit_price: str, cost: str, fits: bool
) -> None:
    """Each amount is below the limit, but the total is charged and reported as one."""
    order = _order(quantity, unit_price, cost)
    if fits:
        assert OrderSubmitted.model_validate(order).total_minor <= MAX_MINOR
    else:
        with pytest.raises(ValidationError, match="total"):
            OrderSubmitted.model_validate(order)


def test_card_numbers_are_luhn_valid_and_masked() -> None:
    numbers = {new_card_number() for _ in range(200)}
    assert len(numbers) == 200
    assert all(len(n) == 16 and luhn_valid(n) for n in numbers)
    number = next(iter(numbers))
    assert mask(number) == number[:4] + "********" + number[-4:]
    assert number_hash(number, "a") != number_hash(number, "b")
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + n) for n in range(10)))


def test_stored_text_loses_its_card_numbers_and_nothing_else() -> None:
    assert mask_card_numbers("paid with 4111111111111111") == "paid with 4111********1111"
    assert mask_card_numbers("shop 4012 8888 8888 1881") == "shop 4012 **** **** 1881"
    assert mask_card_numbers("tok.4111.1111.1111.1111") == "tok.4111.****.****.1111"
    groups = ["4111", "1111", "1111", "1111"]
    for gap in ("  ", "\u00a0", "/", ",", "\t", "\u2013", "\u200b"):
        masked = gap.join(["4111", "****", "****", "1111"])
        assert mask_card_numbers(gap.join(groups)) == masked, repr(gap)
    full_width = "4111111111111111".translate(FULL_WIDTH)
    assert mask_card_numbers(full_width) == full_width[:4] + "*" * 8 + full_width[-4:]
    kept_whole = ("EAN 4006381333931", "Order #20261127123456", "Tel +5511987654321", "1.5 kg")
    for kept in (*kept_whole, "1,234,567 items", "12/25/2024"):
        assert mask_card_numbers(kept) == kept


def test_log_masking_hides_card_numbers() -> None:
    assert mask_text("card 4111111111111111 ok") == "card 4111********1111 ok"
    assert mask_text("order 12345") == "order 12345"
    assert mask_text("'4012 8888 8888 1881'") == "'4012 **** **** 1881'"
    assert mask_text("4012-8888-8888-1881.") == "4012-****-****-1881."
    assert mask_text("amex 3782 822463 10005") == "amex 3782 ****** *0005"
    assert mask_text("card 4111111111111111.") == "card 4111********1111."
    assert mask_text("would pass 9999999999999.99, 4111111111111111.5") == (
        "would pass 9999999999999.99, 4111********1111.5"
    )
    for touching in ("card4111111111111111", "4111111111111111_x", "4111111111111111x"):
        assert "4111********1111" in mask_text(touching), touching
    assert mask_text("4111_1111_1111_1111") == "4111_****_****_1111"
    assert mask_text("card 4111 1111 1111 1111 123") == "card 4111 **** **** 1111 123"
    assert mask_text("pan 4111111111111111 12/25") == "pan 4111********1111 12/25"
    assert mask_text("ref 100000007 4111 1111 1111 1111") == "ref 100000007 4111 **** **** 1111"
    assert mask_text("Card with ID 4111.1111.1111.1111 not found") == (
        "Card with ID 4111.****.****.1111 not found"
    )
    assert mask_text("4111\u00a01111\u00a01111\u00a01111") == "4111\u00a0****\u00a0****\u00a01111"
    for kept in ("ip 192.168.1.1", "on 2024.12.20", "1,234,567.89 RUB", "ref 100000007.4111"):
        assert mask_text(kept) == kept
    for uuid in ("88e66075-fb83-4d17-8564-218223430171", "3fd88c00-5642-4207-9016-8cbe98812025"):
        assert mask_text(uuid) == uuid
    assert mask_text("+7 912 345-67-89") == "+7 912 345-67-89"
    assert mask_text("at 2026-11-27 10:35:24, offset 1234") == "at 2026-11-27 10:35:24, offset 1234"


@pytest.mark.parametrize(("code", "valid"), [("KZT", True), ("GBP", True), ("ZZZ", False)])
def test_a_currency_is_an_iso_4217_code(code: str, valid: bool) -> None:
    class Quoted(BaseModel):
        currency: CurrencyCode

    if valid:
        assert Quoted(currency=code).currency == code
    else:
        with pytest.raises(ValidationError, match="ISO 4217"):
            Quoted(currency=code)


@pytest.mark.parametrize(
    ("token", "refused"),
    [
        ("4111_1111_1111_1111", True),
        ("4111.1111.1111.1111", True),
        ("tok_4111111111111111", True),
        ("4111111111111112", False),
        ("tok_visa", False),
    ],
)
def test_a_card_number_in_a_token_is_found_however_written(token: str, refused: bool) -> None:
    assert holds_card_number(token) is refused


def test_an_invoice_payment_beyond_the_largest_amount_is_refused() -> None:
    """It failed billing's statement instead (out of int64), a handler error."""
    from events.card_invoices import InvoicePaymentRequested

    request = {
        "payment_id": "p-1",
        "card_id": "card-1",
        "source_account_id": "acc-1",
        "currency": "RUB",
    }
    assert InvoicePaymentRequested.model_validate({**request, "amount_minor": MAX_MINOR})
    with pytest.raises(ValidationError, match="amount_minor"):
        InvoicePaymentRequested.model_validate({**request, "amount_minor": MAX_MINOR + 1})


def test_an_amount_is_spelled_each_way_it_may_have_been_written() -> None:
    assert [str(s) for s in spellings(Decimal("10.50"))] == ["10.5", "10.50"]
    assert [str(s) for s in spellings(Decimal("10"))] == ["10", "10.0", "10.00"]
    assert [str(s) for s in spellings(Decimal("123.45"))] == ["123.45"]
    assert str(plain(Decimal("-0.00"))) == "0"
    assert format(plain(Decimal("10.0")), "f") == "10"
