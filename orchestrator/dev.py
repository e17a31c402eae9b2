"""``orchestra dev``: the embedded broker and PostgreSQL, and every service on them."""

from __future__ import annotations

from orchestrator import logging as orchestra_logging
from orchestrator.embedded import EmbeddedStack
from orchestrator.serve import serve


async def run_dev(kafka_port: int | None = None) -> None:
    async with EmbeddedStack(kafka_port=kafka_port) as stack:
        settings = stack.settings()
        orchestra_logging.configure(settings.log_level, settings.log_format)
        print(f"ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap_servers}", flush=True)
        print(f"ORCHESTRA_DATABASE_URL={stack.database_url}", flush=True)
        print("running every service; Ctrl-C to stop", flush=True)
        await serve(settings)
