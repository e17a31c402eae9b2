"""Tables for operators: on a terminal fitted to it, elsewhere never cut."""

from __future__ import annotations

import re

from rich.console import Console
from rich.table import Table

from events.masking import mask_text


def print_table(console: Console, table: Table) -> None:
    """Off a terminal (a pipe, a file) the table is as wide as its widest row needs, so ids,
    types and keys reach a script whole."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(1_000_000)).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with control characters (an upstream record's terminal escapes, say) written
    as escapes, so that printing a record cannot drive the operator's terminal, and card
    numbers, gift card codes and bearer tokens masked as in the logs."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", mask_text(text))
