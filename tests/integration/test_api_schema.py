"""schemathesis against the API's own OpenAPI document, on a real ``orchestra run api``:
no 500s, every response matches the schema (status, content type, body)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.api.auth import dev_token
from orchestrator.embedded import EmbeddedStack, free_port
from orchestrator.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("running_app")]


@pytest.fixture(scope="module")
def api_url(stack: EmbeddedStack) -> Iterator[str]:
    """Only the API, in its own process, beside the session's orchestrator and workers."""
    config = stack.settings(group_prefix="session")
    env = {
        **os.environ,
        "ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap_servers,
        "ORCHESTRA_DATABASE_URL": config.database_url,
        "ORCHESTRA_HTTP_HOST": "127.0.0.1",
        "ORCHESTRA_HTTP_PORT": str(port := free_port()),
        "ORCHESTRA_API_SAGA_WAIT_S": "2",
        "ORCHESTRA_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/openapi.json").raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, "orchestra run api exited"
                assert time.monotonic() < deadline, "the API did not come up"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_api_honours_its_openapi_document(api_url: str) -> None:
    """Every operation, generated and mutated inputs, every check schemathesis has (but
    the one ``schemathesis.toml`` explains): no server error, and status code, content
    type, headers and body as documented."""
    token = dev_token(load_settings(), "schemathesis")
    run = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{api_url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            os.environ.get("ORCHESTRA_SCHEMA_EXAMPLES", "15"),
            "--seed",
            "20261125",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
