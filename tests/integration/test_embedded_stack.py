"""The embedded stack does not outlive its owner: kill -9 the owner, and PostgreSQL (which runs
detached) and the broker go, with their folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil

_OWNER = """
from orchestrator.embedded import EmbeddedStack
stack = EmbeddedStack().start()
found = stack.processes()
print(found["postgres"][0].pid, found["broker"][0].pid, stack.database_url, flush=True)
import time
time.sleep(600)
"""


def test_a_killed_owner_leaves_no_postgres_broker_or_folder() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True, start_new_session=True
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
