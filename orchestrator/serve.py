"""Running an Application until SIGTERM or Ctrl-C, then stopping it gracefully."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from orchestrator.app import Application
from orchestrator.errors import OrchestraError, error_of
from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

STOP_DURING_START_S = 5.0
"""How long the clean-up after a start cut short by a stop signal may take."""
STOP_LIMIT_S = 45.0
"""How long a graceful stop may take (a Kubernetes pod has 60 s): past it, PostgreSQL or Kafka
not answering (frozen, cut off), the process ends anyway; what it had committed stays in the
outboxes and is published by the next process."""


class StopCutShort(OrchestraError):
    """The graceful stop did not finish within ``STOP_LIMIT_S``."""


class StartInterrupted(OrchestraError):
    """A stop signal arrived before the services had started."""


async def serve(
    settings: Settings, services: Sequence[str] = (), ready: asyncio.Event | None = None
) -> None:
    """Start the services, run until a stop signal, stop gracefully.

    A stop signal during start-up (a consumer group join can wait forever) ends the start
    and cleans up for at most ``STOP_DURING_START_S``; that is a stop as asked, reported
    with a warning, as a stop signal before the services are built is (``cli``).
    """
    app = Application(settings, services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = False
    try:
        try:
            await start_unless_stopped(app, stop)
        except StartInterrupted as exc:
            log.warning(str(exc))
            return
        started = True
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stop signal received; finishing in-flight work")
    finally:
        # a second signal during the stop below ends the process at once
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if started:
            try:
                await asyncio.wait_for(app.stop(), timeout=STOP_LIMIT_S)
            except TimeoutError:
                raise StopCutShort(
                    f"the stop did not finish in {STOP_LIMIT_S:.0f} s (PostgreSQL or Kafka not "
                    "answering): what was committed and not yet published stays in the "
                    "outboxes for the next start"
                ) from None


async def start_unless_stopped(app: Application, stop: asyncio.Event) -> None:
    """``app.start()``, cut short when ``stop`` is set first; either way, a start that did
    not finish is cleaned up (bounded) before its error or ``StartInterrupted`` is raised."""
    starting = asyncio.ensure_future(app.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        starting.cancel()
        raise
    finally:
        stopping.cancel()
    if starting.done():
        try:
            starting.result()
        except BaseException:
            await _stop_within(app, STOP_DURING_START_S)
            raise
        return
    waiting = app.broker.not_joined()
    log.warning("stop signal during start-up; giving up the start", not_joined=waiting)
    starting.cancel()
    await asyncio.wait({starting}, timeout=STOP_DURING_START_S)
    if starting.done() and not starting.cancelled():
        starting.exception()  # retrieved: it is the interruption that is reported
    await _stop_within(app, STOP_DURING_START_S)
    groups = f" (consumer groups not joined: {', '.join(waiting)})" if waiting else ""
    raise StartInterrupted(f"stopped during start-up{groups}")


async def _stop_within(app: Application, timeout_s: float) -> None:
    """Stop what a cut-short or failed start did start, for at most ``timeout_s``."""
    try:
        await asyncio.wait_for(app.stop(), timeout=timeout_s)
    except TimeoutError:
        log.warning("clean-up after an unfinished start timed out", timeout_s=timeout_s)
    except Exception as exc:
        log.warning("clean-up after an unfinished start failed", error=error_of(exc))
