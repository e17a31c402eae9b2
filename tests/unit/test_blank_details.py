"""An optional contact detail sent empty is one not given (an upstream form may send "" for a
field left empty); a detail given must still be well-formed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.customers import CustomerRegistered

REQUIRED = '"customer_id": "c-1", "username": "ivan", "email": "ivan@example.com"'


def test_empty_or_blank_optional_details_are_absent() -> None:
    record = CustomerRegistered.model_validate_json(
        f'{{{REQUIRED}, "phone": "", "first_name": "  ", "last_name": ""}}'
    )
    assert (record.phone, record.first_name, record.last_name) == (None, None, None)


def test_a_detail_given_is_still_checked() -> None:
    with pytest.raises(ValidationError, match="phone"):
        CustomerRegistered.model_validate_json(f'{{{REQUIRED}, "phone": "12"}}')
    with pytest.raises(ValidationError, match="email"):
        CustomerRegistered.model_validate_json(
            '{"customer_id": "c-1", "username": "ivan", "email": ""}'
        )
