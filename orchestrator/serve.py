"""Running an Application until SIGTERM or Ctrl-C, then stopping it gracefully."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from orchestrator.app import Application
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)


async def serve(
    settings: Settings, services: Sequence[str] = (), ready: asyncio.Event | None = None
) -> None:
    """Start the services, run until a stop signal, stop gracefully."""
    app = Application(settings, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await app.start()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stop signal received; finishing in-flight work")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await app.stop()
