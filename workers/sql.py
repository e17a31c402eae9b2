"""SQL shapes more than one worker uses."""

from __future__ import annotations

from sqlalchemy import BindParameter, Table, Update, bindparam, update


def add_within(table: Table, key: str, column: str, cap: str) -> Update:
    """Raise ``column`` of the row whose ``key`` is ``b_key`` by ``b_amount``, only where the
    sum stays within the row's ``cap`` column; no row matches otherwise."""
    amount: BindParameter[int] = bindparam("b_amount")
    return (
        update(table)
        .where(table.c[key] == bindparam("b_key"), table.c[column] + amount <= table.c[cap])
        .values({column: table.c[column] + amount})
    )
