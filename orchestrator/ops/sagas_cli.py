"""``orchestra sagas list|show|trace|retry|compensate``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from events.masking import masked
from orchestrator.arguments import MAX_LIMIT, age, limit, not_empty, utf8
from orchestrator.db import create_engine, first_line, unreachable
from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.engine.machine import NO_STEP
from orchestrator.errors import OrchestraError
from orchestrator.ops import inspection, manual, trace
from orchestrator.ops.output import print_table, visible
from orchestrator.ops.prune import prune_history
from orchestrator.sagas import ALL_SAGAS
from orchestrator.settings import Settings
from orchestrator.writers import new_writer_id

console = Console()
DEFINITIONS = {saga.name: saga for saga in ALL_SAGAS}
DEFINED_TYPES = frozenset(DEFINITIONS)


def step_name(saga: SagaInstance) -> str | None:
    """The name of the step the saga is at (None for a type this release does not define)."""
    definition = DEFINITIONS.get(saga.saga_type)
    step = definition.step_at(saga.step_index) if definition is not None else None
    return step.name if step is not None else None


def step_number(saga: SagaInstance) -> int | None:
    """The place in its definition's order of the step the saga is at, counted from 0 (the
    recorded slot where the definition has none); None for a saga that ran no step."""
    if saga.step_index == NO_STEP:
        return None
    definition = DEFINITIONS.get(saga.saga_type)
    place = definition.position(saga.step_index) if definition is not None else None
    return place if place is not None else saga.step_index


def step_shown(saga: SagaInstance) -> str:
    """The step as a table shows it: its number and name, ``1 credit-wallet``; ``-`` for a
    saga that ran no step."""
    name, number = step_name(saga), step_number(saga)
    if number is None:
        return "-"
    return f"{number} {name}" if name else str(number)


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sagas = commands.add_parser(
        "sagas", help="list, inspect, trace, retry, compensate and prune sagas"
    )
    verbs = sagas.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="sagas, newest first, filtered")
    listing.add_argument(
        "--type", dest="saga_type", type=utf8, help="saga type, e.g. order-checkout"
    )
    listing.add_argument(
        "--status", type=str.upper, choices=[status.value for status in SagaStatus]
    )
    listing.add_argument(
        "--older-than", type=age, help="created at least this long ago: 90s, 15m, 2h, 3d"
    )
    listing.add_argument("--key", type=not_empty, help="business key (order_id, request_id, ...)")
    listing.add_argument(
        "--limit", type=limit, default=50, help=f"at most this many, 1-{MAX_LIMIT} (default 50)"
    )
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per saga per line, not a table"
    )
    for verb, text in (("show", "state and step history"), ("trace", "message flow diagram")):
        one = verbs.add_parser(verb, help=text)
        one.add_argument("saga", type=utf8, help="saga id, or a business key naming one saga")
        if verb == "trace":
            one.add_argument("--svg", type=Path, help="also write an SVG rendering here")
            one.add_argument("--html", type=Path, help="also write an HTML page here")
    for verb, text in (
        ("retry", "re-send the current step (a stuck step, or a FAILED compensation)"),
        (
            "compensate",
            "roll a running saga back from its current step (not past its point of no return, "
            "nor at a step nothing undoes while it may run: retry that)",
        ),
    ):
        act = verbs.add_parser(verb, help=text)
        act.add_argument("saga", type=utf8, help="saga id, or a business key naming one saga")
        act.add_argument(
            "--why",
            type=why,
            required=True,
            help=f"recorded in the saga's history (at most {WHY_MAX} characters)",
        )
        act.add_argument("--actor", type=actor, default=None, help="who (default: the login name)")
    prune = verbs.add_parser(
        "prune",
        help="delete the step history of sagas that ended (COMPLETED or ABORTED) long ago",
    )
    prune.add_argument(
        "--ended-before",
        type=age,
        required=True,
        metavar="AGE",
        help=f"ended at least this long ago, at least {PRUNE_MIN_DAYS}d: 30d, 90d",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")


ACTOR_MAX = 128
PRUNE_MIN_DAYS = 1
"""A saga's history is what an operator reads while a saga is recent: not pruned younger."""
WHY_MAX = 1_000
"""A reason, not a document: it is printed in every ``show`` and ``trace`` of the saga."""


def why(text: str) -> str:
    text = not_empty(text)
    if len(text) > WHY_MAX:
        raise argparse.ArgumentTypeError(f"at most {WHY_MAX} characters, not {len(text)}")
    return text


def login_name() -> str:
    """The login name, or the uid where the system knows none (a container's arbitrary uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def actor(text: str) -> str:
    """Who acts: not blank, and fits ``saga_history.actor``."""
    text = not_empty(text)
    if len(text) > ACTOR_MAX:
        raise argparse.ArgumentTypeError(f"at most {ACTOR_MAX} characters, not {len(text)}")
    return text


async def run(args: argparse.Namespace, settings: Settings) -> int:
    writer = new_writer_id()
    engine = create_engine(settings, writer=writer)
    try:
        return await _run(args, settings, engine, writer)
    except BrokenPipeError:
        raise
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
            raise OrchestraError(
                "this database holds no saga tables yet: a service creates them when it "
                "starts (orchestra run)"
            ) from None
        raise OrchestraError(f"PostgreSQL refused: {first_line(exc)}") from None
    except (OperationalError, DBAPIError, OSError) as exc:
        raise unreachable(engine, exc) from None
    finally:
        await engine.dispose()


async def _run(
    args: argparse.Namespace, settings: Settings, engine: AsyncEngine, writer: int
) -> int:
    if args.verb == "list":
        if args.saga_type and args.saga_type not in DEFINED_TYPES:
            known = DEFINED_TYPES | await inspection.saga_types(engine)
            if args.saga_type not in known:
                raise OrchestraError(
                    f"unknown saga type {args.saga_type!r}; known: {', '.join(sorted(known))}"
                )
        found = await inspection.list_sagas(
            engine,
            inspection.SagaFilter(
                args.saga_type, args.status, args.older_than, args.key, args.limit
            ),
        )
        if args.json:
            for saga in found:
                print(json.dumps(as_json(saga)))
        else:
            _print_list(found)
        return 0
    if args.verb == "prune":
        if args.ended_before < timedelta(days=PRUNE_MIN_DAYS):
            raise OrchestraError(f"--ended-before is at least {PRUNE_MIN_DAYS}d")
        cutoff = datetime.now(UTC) - args.ended_before
        pruned = await prune_history(engine, cutoff, args.dry_run)
        said = "would prune" if args.dry_run else "pruned"
        console.print(
            f"{said} {pruned.lines} history lines of {pruned.sagas} sagas that ended "
            f"(COMPLETED or ABORTED) before {cutoff:%Y-%m-%d %H:%M:%S} UTC",
            markup=False,
            highlight=False,
        )
        return 0
    outputs = [path for path in (getattr(args, "svg", None), getattr(args, "html", None)) if path]
    for path in outputs:
        _check_writable(path)
    instance = await inspection.one_saga(engine, args.saga)
    if args.verb == "show":
        _print_one(instance, await inspection.history(engine, instance.id))
    elif args.verb == "trace":
        rows = await inspection.history(engine, instance.id)
        diagram = trace.flow(instance, rows, DEFINITIONS.get(instance.saga_type))
        print(trace.mermaid(diagram), end="")
        if args.svg:
            _write(args.svg, trace.as_svg(diagram))
        if args.html:
            _write(args.html, trace.as_html(diagram))
    else:
        actor = args.actor or login_name()
        try:
            saved = await manual.act(
                settings, engine, instance.id, args.verb, actor, args.why, writer
            )
        except ValueError as exc:
            raise OrchestraError(str(exc)) from None
        console.print(
            visible(
                f"{args.verb}: saga {saved.id} is {saved.status.value} "
                f"(step {step_shown(saved)}, by {actor}: {args.why})"
            ),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _check_writable(path: Path) -> None:
    """Refuse an output file that cannot be written, before any work is done."""
    folder = path.parent
    if path.is_dir():
        raise OrchestraError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise OrchestraError(f"cannot write {path}: no folder {folder}")
    try:
        if path.exists():
            with path.open("a"):
                pass
        else:  # made and removed again; a dangling link is refused, not followed
            with path.open("x"):
                pass
            path.unlink()
    except OSError as exc:
        raise OrchestraError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise OrchestraError(f"cannot write {path}: {exc.strerror or exc}") from None


def _print_list(found: list[SagaInstance]) -> None:
    table = Table(title=f"{len(found)} sagas")
    columns = ("id", "type", "business key", "status", "step", "reason", "age", "updated (UTC)")
    for column in columns:
        table.add_column(column)
    now = datetime.now(UTC)
    for saga in found:
        cells = (
            str(saga.id),
            saga.saga_type,
            saga.business_key,
            saga.status.value,
            step_shown(saga),
            saga.reason or "",
            _age(now - saga.created_at),
            saga.updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
        table.add_row(*(escape(visible(cell)) for cell in cells))
    print_table(console, table)


def as_json(saga: SagaInstance) -> dict[str, object]:
    """One line of ``sagas list --json``."""
    return {
        "id": str(saga.id),
        "saga_type": saga.saga_type,
        "business_key": saga.business_key,
        "status": saga.status.value,
        "step": step_number(saga),
        "step_name": step_name(saga),
        "reason": saga.reason,
        "created_at": saga.created_at.isoformat(),
        "updated_at": saga.updated_at.isoformat(),
    }


def _print_one(saga: SagaInstance, rows: list[inspection.HistoryRow]) -> None:
    console.print(
        f"[bold]{escape(saga.saga_type)}[/bold] {saga.id}  key {escape(visible(saga.business_key))}"
    )
    console.print(
        f"status {saga.status.value}, step {step_shown(saga)}"
        f"{' (compensating)' if saga.compensating and not saga.status.terminal else ''}, "
        f"attempt {saga.attempt}, "
        f"reason {saga.reason or '-'}, next action {saga.next_action_at or '-'}, "
        f"version {saga.version}",
        markup=False,
    )
    console.print_json(json.dumps(masked(saga.data), default=str))
    table = Table(title="history")
    for column in ("at", "event", "step", "status", "message", "detail", "actor"):
        table.add_column(column)
    for row in rows:
        cells = (
            row.at.strftime("%H:%M:%S.%f")[:-3],
            row.event,
            row.step or "",
            row.status,
            row.message_type or "",
            row.detail or "",
            row.actor or "",
        )
        table.add_row(*(escape(visible(cell)) for cell in cells))
    print_table(console, table)
    if not rows and saga.status.terminal:
        console.print("(its history was pruned: orchestra sagas prune)", highlight=False)


def _age(delta: object) -> str:
    seconds = int(delta.total_seconds())  # type: ignore[attr-defined]
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
