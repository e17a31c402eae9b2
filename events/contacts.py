"""Contact details on the wire: e-mail addresses, phone numbers, personal names."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Email = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Phone = Annotated[str, Field(min_length=5, max_length=32, pattern=r"^\+?[0-9][0-9 ()-]{3,30}$")]
PersonName = Annotated[str, Field(min_length=1, max_length=100)]
