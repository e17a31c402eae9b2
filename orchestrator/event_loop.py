"""The event loop every ``orchestra`` process runs on.

uvloop by default where it is installed (Linux and macOS): the services spend much of their
time in the loop itself (scheduling handles, socket reads and writes for the broker and the
database), which uvloop does in C. ``ORCHESTRA_EVENT_LOOP=asyncio`` keeps the standard loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

EventLoop = Literal["uvloop", "asyncio"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], kind: EventLoop) -> T:
    """``asyncio.run(main)`` on the loop ``kind`` names; the standard loop where uvloop is
    not installed (Windows)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
