"""Tables for operators: on a terminal fitted to it, elsewhere never cut."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


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
