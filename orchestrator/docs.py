"""``orchestra docs``: the AsyncAPI document (JSON and an HTML page) and the OpenAPI one."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import asyncapi
from orchestrator.errors import OrchestraError
from orchestrator.settings import Settings


class DocsFolderUnusable(OrchestraError):
    """The output folder cannot be created or written."""


def write_docs(settings: Settings, out: str) -> list[Path]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from orchestrator.api.app import build_api
    from orchestrator.engine.outbox import OutboxRelay
    from orchestrator.publisher import KafkaPublisher
    from schemas.card_service import api_outbox

    folder = Path(out)
    engine = create_async_engine(settings.database_url)
    unstarted = OutboxRelay(engine, api_outbox, KafkaPublisher(settings, "docs"))
    api = build_api(settings, engine, unstarted)
    document, page = asyncapi.rendered(settings)
    files = {
        "asyncapi.json": document,
        "asyncapi.html": page,
        "openapi.json": json.dumps(api.openapi(), indent=2),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    except OSError as exc:
        raise DocsFolderUnusable(f"cannot write the documents into {folder}: {exc}") from None
    return [folder / name for name in files]
