"""Contact details on the wire: e-mail addresses, phone numbers, personal names."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

Email = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Phone = Annotated[str, Field(min_length=5, max_length=32, pattern=r"^\+?[0-9][0-9 ()-]{3,30}$")]
PersonName = Annotated[str, Field(min_length=1, max_length=100)]


def _blank_is_absent(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


BLANK_IS_ABSENT = BeforeValidator(_blank_is_absent)
"""On an optional detail: an empty or blank string is one not given, as null is (an upstream
form may send "" for a field left empty)."""
