"""``orchestra bench``: the standard saga through the real engine, beside the bare-Kafka ceiling."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator import event_loop
from orchestrator import logging as orchestra_logging
from orchestrator.benchmark import ceiling
from orchestrator.benchmark.driver import DriveResult, drive
from orchestrator.benchmark.scenarios import SCENARIOS, Scenario
from orchestrator.embedded import EmbeddedStack
from orchestrator.kafka import ensure_topics
from orchestrator.settings import Settings

console = Console(stderr=True)


@dataclass(frozen=True)
class BenchOptions:
    sagas: int = 20_000
    concurrency: int = 100
    warmup: int = 500
    with_ceiling: bool = True
    external: bool = False
    as_json: bool = False
    saga: str = "standard"
    split: bool = True
    """Run the orchestrator and the workers in two processes (else all in one)."""


def _serve_engine(
    settings_json: str, ready: MpEvent, stop: MpEvent, scenario: str, services: list[str]
) -> None:
    """Child process: what ``orchestra run [SERVICE ...]`` runs, for the scenario's sagas."""
    from orchestrator.app import Application

    settings = Settings.model_validate_json(settings_json)
    orchestra_logging.configure("WARNING", "json")
    sagas, workers = SCENARIOS[scenario].services()

    async def main() -> None:
        app = Application(settings, services, sagas=sagas, workers=workers)
        await app.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await app.stop()

    event_loop.run(main(), settings.event_loop)


def _serve_ceiling(
    settings_json: str, ready: MpEvent, stop: MpEvent, _scenario: str, _services: list[str]
) -> None:
    settings = Settings.model_validate_json(settings_json)

    async def main() -> None:
        ready.set()
        await ceiling.run_ceiling(settings, stop.is_set)

    event_loop.run(main(), settings.event_loop)


@dataclass
class Measured:
    result: DriveResult
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]


async def _measure(
    target: Any,
    settings: Settings,
    scenario: Scenario,
    options: BenchOptions,
    label: str,
    stack: EmbeddedStack | None,
    roles: dict[str, list[str]],
) -> Measured:
    """Start one child process per role (its services), drive the load, account CPU."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    children: dict[str, Any] = {}
    readiness = []
    for role, services in roles.items():
        ready = context.Event()
        child = context.Process(
            target=target,
            args=(settings.model_dump_json(), ready, stop, scenario.name, services),
            daemon=True,
        )
        child.start()
        children[role] = child
        readiness.append(ready)
    pids = {role: child.pid for role, child in children.items()}
    try:
        for ready in readiness:
            if not await asyncio.to_thread(ready.wait, 120):
                raise RuntimeError(f"{label}: services did not start")
        run_id = uuid.uuid4().hex[:8]
        if scenario.prepare is not None:
            await scenario.prepare(settings, run_id)
        before = _cpu_by_role(pids, stack)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=options.as_json) as progress:
            result = await drive(
                settings,
                scenario,
                run_id=run_id,
                total=options.sagas,
                warmup=options.warmup,
                concurrency=options.concurrency,
                progress=progress,
                label=label,
            )
        after = _cpu_by_role(pids, stack)
        rss = {role: _rss_mb(pid) for role, pid in pids.items()}
        return Measured(result, {role: after[role] - before.get(role, 0.0) for role in after}, rss)
    finally:
        stop.set()
        for child in children.values():
            await asyncio.to_thread(child.join, 30)
            if child.is_alive():
                child.kill()


def _processes(
    pids: dict[str, int | None], stack: EmbeddedStack | None
) -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {"driver": [psutil.Process(os.getpid())]}
    for role, pid in pids.items():
        if pid is not None:
            found[role] = [psutil.Process(pid)]
    if stack is not None:
        found.update(stack.processes())
    return found


def _rss_mb(pid: int | None) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20 if pid else 0.0
    except psutil.Error:
        return 0.0


def _cpu_by_role(pids: dict[str, int | None], stack: EmbeddedStack | None) -> dict[str, float]:
    """CPU seconds so far per role; PostgreSQL backends are listed anew each time."""
    totals: dict[str, float] = {}
    for role, processes in _processes(pids, stack).items():
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        totals[role] = total
    return totals


async def run_bench(options: BenchOptions, configured: Settings | None = None) -> dict[str, Any]:
    stack: EmbeddedStack | None = None
    if configured is None:
        stack = await asyncio.to_thread(EmbeddedStack().start)
        settings = stack.settings(log_level="WARNING", group_prefix=f"bench-{uuid.uuid4().hex[:6]}")
    else:
        settings = configured.model_copy(update={"group_prefix": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        scenario = SCENARIOS[options.saga]
        await ensure_topics(
            settings, [scenario.request_topic, scenario.status_topic, *ceiling.TOPICS]
        )
        _, workers = scenario.services()
        roles = (
            {"orchestrator": ["orchestrator"], "workers": list(workers)}
            if options.split
            else {"services": ["orchestrator", *workers]}
        )
        engine = await _measure(
            _serve_engine, settings, scenario, options, "orchestra", stack, roles
        )
        roof = None
        if options.with_ceiling:
            roof = await _measure(
                _serve_ceiling,
                settings,
                ceiling.SCENARIO,
                options,
                "ceiling",
                stack,
                {"services": []},
            )
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.stop)
    report = _report(engine, roof, options)
    if options.as_json:
        print(json.dumps(report))
    else:
        _print(report)
    return report


def _report(engine: Measured, roof: Measured | None, options: BenchOptions) -> dict[str, Any]:
    result = engine.result
    ceiling_rate = roof.result.per_second if roof else None
    return {
        "saga": options.saga,
        "sagas": options.sagas,
        "concurrency": options.concurrency,
        "warmup": options.warmup,
        "seconds": round(result.seconds, 3),
        "sagas_per_s": round(result.per_second, 1),
        "p50_ms": round(result.percentile(50), 2),
        "p95_ms": round(result.percentile(95), 2),
        "p99_ms": round(result.percentile(99), 2),
        "cpu_s": {k: round(v, 2) for k, v in engine.cpu_s.items()},
        "rss_mb": {k: round(v, 1) for k, v in engine.rss_mb.items()},
        "ceiling_sagas_per_s": round(ceiling_rate, 1) if ceiling_rate else None,
        "ceiling_p99_ms": round(roof.result.percentile(99), 2) if roof else None,
        "ceiling_cpu_s": {k: round(v, 2) for k, v in roof.cpu_s.items()} if roof else None,
        "ratio": round(result.per_second / ceiling_rate, 3) if ceiling_rate else None,
        "outcomes_ok": not result.wrong and len(result.latencies_ms) == options.sagas,
        "wrong_outcomes": len(result.wrong),
        "cores": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _print(report: dict[str, Any]) -> None:
    table = Table(
        title=f"orchestra bench: {report['sagas']} sagas, {report['concurrency']} in flight"
    )
    table.add_column("")
    table.add_column("orchestra (durable)", justify="right")
    table.add_column("ceiling (bare aiokafka)", justify="right")
    table.add_row("sagas/s", str(report["sagas_per_s"]), str(report["ceiling_sagas_per_s"]))
    table.add_row(
        "p50 / p95 / p99 ms",
        f"{report['p50_ms']} / {report['p95_ms']} / {report['p99_ms']}",
        str(report["ceiling_p99_ms"]) + " (p99)",
    )
    for name, seconds in report["cpu_s"].items():
        roof = (report["ceiling_cpu_s"] or {}).get(name, "")
        table.add_row(f"CPU s: {name}", str(seconds), str(roof))
    table.add_row("ratio to ceiling", str(report["ratio"]), "")
    table.add_row(
        "outcomes right",
        "yes" if report["outcomes_ok"] else f"NO ({report['wrong_outcomes']} wrong)",
        "",
    )
    Console().print(table)
