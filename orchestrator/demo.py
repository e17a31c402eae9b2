"""``orchestra demo``: card requests and the shop's sagas through every service, embedded."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from events import topics
from events.cards import CardIssueRequested, CardStatusChanged, CardType
from orchestrator import logging as orchestra_logging
from orchestrator.app import Application
from orchestrator.client import UpstreamClient
from orchestrator.demo_api import run_api_tour
from orchestrator.demo_shop import WATCHED as SHOP_TOPICS
from orchestrator.demo_shop import run_shop
from orchestrator.embedded import EmbeddedStack

console = Console()


@dataclass(frozen=True)
class DemoBatch:
    first_wave: list[CardIssueRequested]
    second_wave: list[CardIssueRequested]
    duplicates: list[CardIssueRequested]
    reused: list[CardIssueRequested]
    """Requests under a key whose saga another request started: dead-lettered (KEY_REUSED)."""
    poison: list[bytes]

    @property
    def expected(self) -> set[str]:
        return {r.request_id for r in self.first_wave + self.second_wave}


def demo_batch(users: int) -> DemoBatch:
    """Realistic traffic: new users, duplicates, an existing card holder, a bad currency, a
    request id reused for another request, poison."""
    first = [
        CardIssueRequested(
            request_id="req-holder-1", user_id="user-holder", card_type=CardType.VIRTUAL
        )
    ]
    second = [
        CardIssueRequested(
            request_id=f"req-{n:04d}",
            user_id=f"user-{n:04d}",
            card_type=CardType.VIRTUAL if n % 3 else CardType.PHYSICAL,
        )
        for n in range(users)
    ]
    second.append(
        CardIssueRequested(
            request_id="req-holder-2", user_id="user-holder", card_type=CardType.VIRTUAL
        )
    )
    second.append(
        CardIssueRequested(
            request_id="req-gbp", user_id="user-gbp", card_type=CardType.VIRTUAL, currency="GBP"
        )
    )
    poison = [
        b"{this is not json",
        b'{"request_id": "req-bad", "user_id": "u", "card_type": "gold"}',
    ]
    reused = [first[0].model_copy(update={"card_type": CardType.PHYSICAL})]
    return DemoBatch(first, second, duplicates=second[:5], reused=reused, poison=poison)


async def run_demo(users: int = 40, timeout_s: float = 90.0) -> int:
    started = time.monotonic()
    console.print("[bold]Orchestra demo[/bold]: starting the embedded broker and PostgreSQL")
    async with EmbeddedStack() as stack:
        # its own token key: the tour signs its tokens, whatever keys the environment names
        settings = stack.settings(
            log_level="WARNING",
            jwt_algorithm="HS256",
            jwt_secret=SecretStr(secrets.token_urlsafe(32)),
        )
        orchestra_logging.configure(settings.log_level, settings.log_format)
        app = Application(settings)
        await app.start()
        try:
            batch = demo_batch(users)
            async with UpstreamClient(
                settings, watch=[topics.CARDS_STATUS, topics.dlq(topics.CARDS_ISSUE_REQUESTED)]
            ) as client:
                outcomes = await _drive(client, batch, timeout_s)
            _report(batch, outcomes, time.monotonic() - started)
            console.print("\n[bold]The shop[/bold]: seed 003's sagas")
            async with UpstreamClient(settings, watch=SHOP_TOPICS) as client:
                shop_failed = await run_shop(client, app.engine, console)
            console.print("\n[bold]The card service over HTTP[/bold]: seeds 000, 004, 001, 002")
            api_wrong = await run_api_tour(settings, console)
        finally:
            await app.stop()
    missing = batch.expected - outcomes.keys()
    console.print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 1 if missing or _letters_wrong(batch, outcomes) or shop_failed or api_wrong else 0


def _letters_wrong(batch: DemoBatch, outcomes: dict[str, CardStatusChanged | str]) -> bool:
    """Whether the dead letters are not one for each poison record and reused key."""
    reasons = Counter(outcome for outcome in outcomes.values() if isinstance(outcome, str))
    refused = len(batch.reused) + len(batch.poison)
    wrong = reasons["KEY_REUSED"] != len(batch.reused) or reasons.total() != refused
    if wrong:
        console.print(f"[red]dead letters not as expected: {dict(reasons)}[/red]")
    return wrong


async def _drive(
    client: UpstreamClient, batch: DemoBatch, timeout_s: float
) -> dict[str, CardStatusChanged | str]:
    outcomes: dict[str, CardStatusChanged | str] = {}
    refused = len(batch.reused) + len(batch.poison)
    total = len(batch.expected) + refused
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("sagas finished", total=total)
        for request in batch.first_wave:
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        await _collect(
            client, outcomes, {r.request_id for r in batch.first_wave}, 0, progress, task, timeout_s
        )
        for request in batch.second_wave + batch.duplicates + batch.reused:
            await client.send(topics.CARDS_ISSUE_REQUESTED, request)
        for value in batch.poison:
            await client.send_raw(topics.CARDS_ISSUE_REQUESTED, "poison", value)
        await _collect(client, outcomes, batch.expected, refused, progress, task, timeout_s)
    return outcomes


async def _collect(
    client: UpstreamClient,
    outcomes: dict[str, CardStatusChanged | str],
    wanted: set[str],
    dead_letters: int,
    progress: Progress,
    task: object,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    seen_dead = sum(1 for v in outcomes.values() if isinstance(v, str))
    while not (wanted <= outcomes.keys() and seen_dead >= dead_letters):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            record = await asyncio.wait_for(client.received.get(), timeout=remaining)
        except TimeoutError:
            return
        if record.topic == topics.CARDS_STATUS:
            status = CardStatusChanged.model_validate_json(record.value)
            outcomes[status.request_id] = status
        else:
            seen_dead += 1
            outcomes[f"dlq:{record.headers.get('dlq_offset')}"] = record.headers.get(
                "dlq_reason", "?"
            )
        progress.update(task, completed=len(outcomes))  # type: ignore[arg-type]


def _report(batch: DemoBatch, outcomes: dict[str, CardStatusChanged | str], elapsed: float) -> None:
    table = Table(title="Card issuance outcomes (cards.status)")
    for column in ("request", "user", "status", "reason", "card id", "card number", "balance"):
        table.add_column(column)
    notable = {"req-holder-1", "req-holder-2", "req-gbp", "req-0000", "req-0001", "req-0002"}
    counts: Counter[str] = Counter()
    for key, outcome in sorted(outcomes.items()):
        if isinstance(outcome, str):
            counts[f"dead-lettered ({outcome})"] += 1
            continue
        counts[f"{outcome.status.value}{' ' + outcome.reason if outcome.reason else ''}"] += 1
        if key in notable:
            user = next(
                (r.user_id for r in batch.first_wave + batch.second_wave if r.request_id == key), ""
            )
            table.add_row(
                key,
                user,
                outcome.status.value,
                outcome.reason or "",
                outcome.card_id or "",
                outcome.masked_number or "",
                f"{outcome.balance} {outcome.currency}" if outcome.balance is not None else "",
            )
    console.print(table)
    summary = Table(title="All outcomes")
    summary.add_column("outcome")
    summary.add_column("count", justify="right")
    for label, count in sorted(counts.items()):
        summary.add_row(label, str(count))
    console.print(summary)
    missing = batch.expected - outcomes.keys()
    console.print(
        f"{len(batch.expected)} sagas ({len(batch.duplicates)} repeats ignored, "
        f"{len(batch.reused)} key reused), {len(batch.poison)} poison records, {elapsed:.1f} s"
        + (f"; [red]{len(missing)} without outcome[/red]" if missing else "")
    )
