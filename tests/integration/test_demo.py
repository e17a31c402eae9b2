"""``make demo`` (``orchestra demo``) runs end to end and every expectation it prints holds."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_and_every_answer_is_the_expected_one() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "demo finished" in run.stdout
    assert "Traceback" not in run.stderr
