"""``orchestra dev``: the embedded broker and PostgreSQL, and every service on them."""

from __future__ import annotations

import shlex

from orchestrator import logging as orchestra_logging
from orchestrator.api.auth import dev_token
from orchestrator.embedded import EmbeddedStack, ensure_free
from orchestrator.errors import OrchestraError
from orchestrator.serve import serve
from orchestrator.settings import PUBLIC_KEY_ALGORITHMS, load_settings


async def run_dev(kafka_port: int | None = None) -> None:
    """The API on ``ORCHESTRA_HTTP_PORT``; topics of one partition (the embedded broker
    answers a fetch over several late) unless ``ORCHESTRA_TOPIC_PARTITIONS`` asks for more,
    for several processes to share the work."""
    own = load_settings()
    orchestra_logging.configure(own.log_level, own.log_format)
    port = own.http_port
    if own.metrics_port == port:
        raise OrchestraError(
            f"ORCHESTRA_METRICS_PORT is ORCHESTRA_HTTP_PORT ({port}): give each its own "
            "(the API serves /metrics on its own port too)"
        )
    if kafka_port:
        if kafka_port in (port, own.metrics_port):
            raise OrchestraError(
                f"--kafka-port {kafka_port} is also the HTTP or metrics port "
                "(ORCHESTRA_HTTP_PORT, ORCHESTRA_METRICS_PORT): give each its own"
            )
        ensure_free(kafka_port, "--kafka-port")
    ensure_free(port, "ORCHESTRA_HTTP_PORT")
    if own.metrics_port:
        ensure_free(own.metrics_port, "ORCHESTRA_METRICS_PORT", "0.0.0.0")
    chosen = (
        {"topic_partitions": own.topic_partitions}
        if "topic_partitions" in own.model_fields_set
        else {}
    )
    async with EmbeddedStack(kafka_port=kafka_port) as stack:
        settings = stack.settings(http_port=port, http_host="127.0.0.1", **chosen)
        print("# paste these into another shell to point orchestra commands at this stack:")
        for name, value in (
            ("ORCHESTRA_KAFKA_BOOTSTRAP_SERVERS", stack.kafka_bootstrap_servers),
            ("ORCHESTRA_DATABASE_URL", stack.database_url),
            ("ORCHESTRA_TOPIC_PARTITIONS", str(settings.topic_partitions)),
        ):
            print(f"export {name}={shlex.quote(value)}", flush=True)
        print(
            f"HTTP API: http://127.0.0.1:{port}/docs (OpenAPI), /asyncapi; another process "
            "serving the API on this machine needs its own ORCHESTRA_HTTP_PORT",
            flush=True,
        )
        if settings.jwt_algorithm in PUBLIC_KEY_ALGORITHMS:
            print(
                f"bearer tokens: {settings.jwt_algorithm}, signed with the private key of the "
                "configured ORCHESTRA_JWT_SECRET",
                flush=True,
            )
        else:
            token = dev_token(settings, "dev-user")
            print(f"a bearer token for user dev-user: {token}", flush=True)
        print("running every service; Ctrl-C to stop", flush=True)
        await serve(settings)
