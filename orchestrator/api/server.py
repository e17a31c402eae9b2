"""Serving the API with uvicorn inside the process's own event loop."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
import uvicorn
from fastapi import FastAPI

from orchestrator.errors import HttpUnavailable

log = structlog.get_logger(__name__)


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        # The process handles SIGTERM itself (graceful stop of every service).
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
        self.address = f"{host}:{port}"
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self._task = asyncio.create_task(self._serve())
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise HttpUnavailable(f"the HTTP API cannot listen on {self.address}")
            await asyncio.sleep(0.02)
        log.info("http api listening", address=self.address)

    async def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
            await self.server.serve()

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=15)
        self._task = None
