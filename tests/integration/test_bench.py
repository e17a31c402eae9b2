"""``orchestra bench`` end to end with a small N: every outcome right (speed is not tested)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_runs_standard_saga_and_ceiling_with_right_outcomes() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "bench",
            "-n",
            "150",
            "-c",
            "20",
            "--warmup",
            "20",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["outcomes_ok"] is True
    assert report["wrong_outcomes"] == 0
    for field in ("sagas_per_s", "p50_ms", "p95_ms", "p99_ms", "ceiling_sagas_per_s", "ratio"):
        assert report[field] > 0, field
    assert {"orchestrator", "workers", "broker", "postgres", "driver"} <= report["cpu_s"].keys()


def test_bench_runs_the_real_order_checkout_saga() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "bench",
            "--saga",
            "order-checkout",
            "-n",
            "100",
            "-c",
            "20",
            "--warmup",
            "10",
            "--no-ceiling",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["saga"] == "order-checkout"
    assert report["outcomes_ok"] is True
    assert report["sagas_per_s"] > 0


def test_bench_refuses_bad_arguments_with_a_clear_message() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "bench", "-n", "zero"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "not a whole number" in run.stderr
    assert "Traceback" not in run.stderr
