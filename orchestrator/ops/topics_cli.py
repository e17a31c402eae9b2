"""``orchestra replay`` and ``orchestra dlq list|show|redrive``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from events import envelope as env
from events.dlq import DeadLetterReason
from events.topics import DLQ_SUFFIX, OUTBOUND, dlq
from orchestrator.arguments import moment, offset, partition
from orchestrator.engine.records import exact_headers, exact_key, redriven_raw_headers
from orchestrator.errors import OrchestraError
from orchestrator.kafka import list_topics
from orchestrator.ops.output import print_table, visible
from orchestrator.ops.records import (
    Headers,
    NotSent,
    Record,
    Selection,
    UnknownPartition,
    UnknownTopic,
    describe,
    partitions,
    publish,
    read,
)
from orchestrator.settings import Settings

console = Console()
DLQ_HEADERS = (
    env.H_DLQ_REASON,
    env.H_DLQ_ERROR,
    env.H_DLQ_TOPIC,
    env.H_DLQ_PARTITION,
    env.H_DLQ_OFFSET,
)
REASONS = [reason.value for reason in DeadLetterReason]


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = commands.add_parser(
        "replay", help="re-publish selected records of a topic (consumers are idempotent)"
    )
    replay.add_argument("topic")
    _selection_arguments(replay)
    replay.add_argument("--to-topic", help="publish there instead of back to the same topic")
    replay.add_argument("--dry-run", action="store_true", help="list what would be sent")
    replay.add_argument(
        "--outbound",
        action="store_true",
        help="allow publishing to a topic systems outside the project read (a status topic, "
        "notifications.sent): they see every record again",
    )

    dead = commands.add_parser("dlq", help="dead-letter records: list, show, re-drive")
    verbs = dead.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="records of one topic's DLQ, or of every DLQ")
    listing.add_argument("topic", nargs="?", help="the original topic (default: every DLQ)")
    listing.add_argument("--reason", type=str.upper, choices=REASONS, help="only this dlq_reason")
    show = verbs.add_parser("show", help="one dead letter: headers and value")
    show.add_argument("topic", help="the original topic")
    show.add_argument("--partition", type=partition, required=True)
    show.add_argument("--offset", type=offset, required=True)
    show.add_argument(
        "--full", action="store_true", help=f"the whole value (else its first {SHOWN_CHARS:,})"
    )
    redrive = verbs.add_parser("redrive", help="send dead letters back to their topic")
    redrive.add_argument("topic", help="the original topic")
    redrive.add_argument(
        "--partition",
        type=partition,
        action="append",
        default=[],
        help="only this DLQ partition (repeatable)",
    )
    which = redrive.add_mutually_exclusive_group()
    which.add_argument(
        "--offset",
        type=offset,
        action="append",
        default=[],
        help="one record's offset in the given partition (repeatable; --partition is "
        "required when the DLQ has several partitions)",
    )
    which.add_argument(
        "--reason",
        type=str.upper,
        choices=REASONS,
        help="every dead letter with this dlq_reason (one re-driven and dead-lettered again "
        "counts once: its newest letter is sent)",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="every dead letter of the topic (one re-driven and dead-lettered again counts "
        "once: its newest letter is sent)",
    )
    redrive.add_argument("--dry-run", action="store_true")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--partition",
        type=partition,
        action="append",
        default=[],
        help="only this partition (repeatable)",
    )
    parser.add_argument("--from-offset", type=offset, help="first offset (per partition)")
    parser.add_argument("--to-offset", type=offset, help="last offset, inclusive")
    times = "(ISO 8601 with a time zone, e.g. 2026-11-27T10:00:00Z"
    parser.add_argument(
        "--since",
        type=moment,
        help=f"records at or after {times}; a time before 1970 means from the start)",
    )
    parser.add_argument("--until", type=moment, help=f"records at or before {times})")
    parser.add_argument("--key", help="only records with this key")


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    offsets = (args.from_offset, args.to_offset)
    if None not in offsets and args.from_offset > args.to_offset:
        raise OrchestraError(
            f"--from-offset {args.from_offset} is after --to-offset {args.to_offset}"
        )
    if args.since is not None and args.until is not None and args.since > args.until:
        raise OrchestraError(
            f"--since {args.since.isoformat()} is after --until {args.until.isoformat()}"
        )
    selection = Selection(
        tuple(args.partition), args.from_offset, args.to_offset, args.since, args.until, args.key
    )
    target = args.to_topic or args.topic
    if target.endswith(DLQ_SUFFIX) != args.topic.endswith(DLQ_SUFFIX):
        raise OrchestraError(
            f"{target} holds the records its consumer refused, each with why (dlq_* headers): "
            f"a replay of {args.topic} there would make letters without them; choose another "
            "topic (and `orchestra dlq redrive` sends dead letters back)"
            if target.endswith(DLQ_SUFFIX)
            else f"{args.topic} holds dead letters: `orchestra dlq redrive` sends them back to "
            "their topic (their values as they were, each record once), a replay would not"
        )
    if args.to_topic:
        await _existing(settings, {target})
    records = await read(settings, args.topic, selection)
    if args.dry_run:
        _table(f"{len(records)} records would be re-published to {target}", records)
        return 0
    if target in OUTBOUND and not args.outbound:
        raise OrchestraError(
            f"{target} is read by systems outside the project, which may not ignore a record "
            "seen before: a replay there publishes each record again (a second terminal "
            "record of a saga, a second e-mail); add --outbound to do it on purpose"
        )
    refused = await _send(settings, records, lambda _: target, _replayed)
    console.print(
        f"re-published {_count(records, refused)} records of {args.topic} to {target}"
        + _left(refused, args.topic),
        soft_wrap=True,
    )
    return 2 if refused else 0


async def dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    topic = source_topic(args.topic) if args.topic else ""
    if args.verb == "list":
        names = [dlq(topic)] if topic else await _dlq_topics(settings)
        empty = 0
        for name in names:
            letters = [
                r
                for r in await read(settings, name, Selection())
                if args.reason is None or r.headers.get(env.H_DLQ_REASON) == args.reason
            ]
            if letters or topic:
                _table(f"{name}: {len(letters)} dead letters", letters, dead=True)
            else:
                empty += 1
        if empty:
            console.print(f"{empty} other dead-letter topics hold none" + _of_reason(args.reason))
        return 0
    name = dlq(topic)
    if args.verb == "show":
        found = await read(settings, name, Selection((args.partition,), args.offset, args.offset))
        if not found:
            raise OrchestraError(
                f"no record at {name} partition {args.partition} offset {args.offset}"
            )
        letter = found[0]
        for header, text in sorted(letter.headers.items()):
            console.print(
                f"[bold]{escape(visible(header))}[/bold]: {escape(visible(text))}",
                highlight=False,
                soft_wrap=True,
            )
        _show_exact(letter)
        value = visible(letter.value.decode("utf-8", "replace"))  # masked whole, then cut
        shown = value if args.full else value[:SHOWN_CHARS]
        console.print(shown, markup=False, highlight=False, soft_wrap=True)
        if len(shown) < len(value):
            console.print(
                f"... ({len(letter.value):,} bytes in all; --full prints the whole value)"
            )
        if _not_utf8(letter.value):
            console.print("(the value is not UTF-8: what is not is shown as \ufffd)")
        return 0
    if not (args.all or args.offset or args.reason):
        raise OrchestraError("say which dead letters: --offset (repeatable), --reason or --all")
    if args.offset and not args.partition:
        known = await partitions(settings, name)
        if len(known) > 1:
            raise OrchestraError(
                f"--offset needs --partition: {name} has partitions {describe(known)}"
            )
    held = await read(settings, name, Selection(tuple(args.partition)))
    again = superseded(held) if not args.offset else set()
    letters = [
        r
        for r in held
        if (not args.offset or r.offset in args.offset)
        and (args.reason is None or r.headers.get(env.H_DLQ_REASON) == args.reason)
        and _place(r) not in again
    ]
    unmatched = sorted(set(args.offset) - {r.offset for r in letters})
    if unmatched:
        raise OrchestraError(
            f"no dead letter at offset {', '.join(map(str, unmatched))} of {name}"
            + (f" partition {describe(set(args.partition))}" if args.partition else "")
        )
    await _existing(settings, {_origin(r, topic) for r in letters})
    if args.dry_run:
        _table(f"{len(letters)} dead letters would be re-driven to {topic}", letters, True)
        return 0
    exact, unreadable = _with_record_keys(letters)
    sendable, lost = await _restored(settings, exact)
    lost = unreadable + lost
    _say_not_sent(lost)
    refused = lost + await _send(settings, sendable, lambda r: _origin(r, topic), _redriven)
    console.print(
        f"re-drove {_count(letters, refused)} dead letters of {name} to their topic"
        + _left(refused, name),
        soft_wrap=True,
    )
    return 2 if refused else 0


def _show_exact(letter: Record) -> None:
    """The letter's key, and the record's headers it holds as bytes, readably; each says so
    when it is not UTF-8."""
    try:
        key, headers = exact_key(letter.headers, letter.raw_key), exact_headers(letter.headers)
    except ValueError as exc:
        key, headers = letter.raw_key, []
        console.print(f"(its bytes cannot be read: {escape(str(exc))}; a redrive refuses it)")
    if headers:
        console.print(f"the record's headers held byte for byte in {env.H_DLQ_HEADERS_B64}:")
    for name, value in headers:
        _show_bytes(f"  {name}", value, f"header {name}")
    _show_bytes("key", key, "the key")


def _show_bytes(label: str, raw: bytes | None, what: str) -> None:
    text = "None" if raw is None else raw.decode("utf-8", "replace")
    console.print(
        f"[bold]{escape(visible(label))}[/bold]: {escape(visible(text))}",
        highlight=False,
        soft_wrap=True,
    )
    if raw is not None and _not_utf8(raw):
        console.print(
            f"({escape(visible(what))} is not UTF-8: what is not is shown as \ufffd)",
            highlight=False,
            soft_wrap=True,
        )


def _not_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


SHOWN_CHARS = 2_000
"""How much of a dead letter's value ``dlq show`` prints unless asked for all of it."""


def _of_reason(reason: str | None) -> str:
    return f" with reason {reason}" if reason else ""


def source_topic(topic: str) -> str:
    """The topic a DLQ belongs to: ``orders.submitted`` for ``orders.submitted.dlq`` too."""
    return topic.removesuffix(DLQ_SUFFIX) or topic


async def _send(
    settings: Settings,
    records: list[Record],
    target: Callable[[Record], str],
    headers: Callable[[Record], Headers],
) -> list[NotSent]:
    """Publishes copies; each one refused is one ``orchestra: error:`` line on stderr."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("publishing", total=len(records))
        refused = await publish(
            settings, records, target, headers, lambda n: progress.update(task, completed=n)
        )
    _say_not_sent(refused)
    return refused


def _say_not_sent(refused: list[NotSent]) -> None:
    for item in refused:
        r = item.record
        print(
            f"orchestra: error: not sent: {r.topic}/{r.partition}/{r.offset} "
            f"({len(r.value)} bytes): {item.reason}",
            file=sys.stderr,
        )


def _with_record_keys(letters: list[Record]) -> tuple[list[Record], list[NotSent]]:
    """Dead letters with their record's key as it was (``dlq_key_b64``); one whose
    ``dlq_*_b64`` headers cannot be read is not sent."""
    keyed: list[Record] = []
    unreadable: list[NotSent] = []
    for letter in letters:
        try:
            key = exact_key(letter.headers, letter.raw_key)
            exact_headers(letter.headers)
        except ValueError as exc:
            unreadable.append(NotSent(letter, f"its record's bytes cannot be read: {exc}"))
        else:
            keyed.append(dataclasses.replace(letter, raw_key=key))
    return keyed, unreadable


async def _restored(
    settings: Settings, letters: list[Record]
) -> tuple[list[Record], list[NotSent]]:
    """Dead letters sent without their value (``dlq_value_dropped``: the broker refused them
    for its size) take it back from the refused record, which lies in its own topic; those
    whose record is no longer there are not sent."""
    restored: list[Record] = []
    lost: list[NotSent] = []
    for letter in letters:
        dropped = letter.headers.get(env.H_DLQ_VALUE_DROPPED)
        if dropped is None:
            restored.append(letter)
            continue
        origin = _origin(letter, "?")
        try:
            at = int(letter.headers[env.H_DLQ_PARTITION]), int(letter.headers[env.H_DLQ_OFFSET])
        except (KeyError, ValueError):
            why = f"its value was dropped ({dropped}), and it names no place of its record"
            lost.append(NotSent(letter, why))
            continue
        try:
            found = await read(settings, origin, Selection((at[0],), at[1], at[1]))
        except (UnknownTopic, UnknownPartition):
            found = []
        if found and (found[0].partition, found[0].offset) == at:
            restored.append(dataclasses.replace(letter, value=found[0].value))
        else:
            where = f"{origin}/{at[0]}/{at[1]}"
            lost.append(
                NotSent(
                    letter,
                    f"its value was dropped ({dropped}), and the record is no longer at {where}",
                )
            )
    return restored, lost


def _count(records: list[Record], refused: list[NotSent]) -> str:
    sent = len(records) - len(refused)
    return f"{sent} of {len(records)}" if refused else str(sent)


def _left(refused: list[NotSent], topic: str) -> str:
    if not refused:
        return ""
    return f"; {len(refused)} not sent (listed on stderr), still in {topic}"


def _origin(letter: Record, topic: str) -> str:
    return letter.headers.get(env.H_DLQ_TOPIC, topic)


def _replayed(record: Record) -> Headers:
    return _marked(record.raw_headers, REPLAYED_FROM, _place(record))


REPLAYED_FROM = "replayed_from"


def _redriven(record: Record) -> Headers:
    return _marked(redriven_raw_headers(record.raw_headers), REDRIVEN_FROM, _place(record))


REDRIVEN_FROM = "redriven_from"


def _place(record: Record) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def _marked(headers: Iterable[tuple[str, bytes | None]], name: str, value: str) -> Headers:
    """The headers with ``name`` set to ``value`` (in place of any it had)."""
    return (*((n, v) for n, v in headers if n != name), (name, value.encode()))


def superseded(letters: list[Record]) -> set[str]:
    """The places of dead letters another letter of the same record stands for, so that
    ``--all`` and ``--reason`` send each record once however often they are run: a re-driven
    letter dead-lettered again names the older in ``redriven_from``, and the letters that
    lead back to one first letter (one record, re-driven by offset twice, say), or to one
    refused record (dead-lettered twice when its batch was handled again after a fault), are
    one line (a copy a replay re-published too), of which only the newest is sent."""
    at = {_place(r): r for r in letters}
    lines: dict[str, list[Record]] = {}
    for letter in letters:
        lines.setdefault(_first_of_line(letter, at), []).append(letter)
    return {
        _place(r)
        for line in lines.values()
        for r in line
        if r is not max(line, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    }


def _first_of_line(letter: Record, at: dict[str, Record]) -> str:
    """Where the line of ``letter`` starts: the record the first letter it was re-driven
    from refused (as far as ``at`` goes)."""
    place = _place(letter)
    seen = {place}
    while (older := at[place].headers.get(REDRIVEN_FROM)) is not None and older not in seen:
        seen.add(older)
        if older not in at:
            return older
        place = older
    first = at[place].headers
    if all(h in first for h in DLQ_HEADERS[2:]):  # a replayed copy is its original's line
        return "refused " + first.get(REPLAYED_FROM, "/".join(first[h] for h in DLQ_HEADERS[2:]))
    return place


async def _existing(settings: Settings, names: set[str]) -> None:
    """Refuse a target topic that does not exist, before the broker would create it."""
    missing = sorted(names - set(await list_topics(settings))) if names else []
    if missing:
        raise UnknownTopic(
            f"no topic {', '.join(map(repr, missing))} on {settings.kafka_bootstrap_servers}"
        )


async def _dlq_topics(settings: Settings) -> list[str]:
    return sorted(name for name in await list_topics(settings) if name.endswith(DLQ_SUFFIX))


def _table(title: str, records: list[Record], dead: bool = False) -> None:
    table = Table(title=title)
    columns = ["partition", "offset", "time (UTC)", "key"]
    columns += ["reason", "error", "from", "re-drive of"] if dead else ["type"]
    for column in columns:
        table.add_column(column)
    for r in records:
        when = datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        row = [str(r.partition), str(r.offset), when, _key_cell(r)]
        if dead:
            origin = "/".join(r.headers.get(h, "?") for h in DLQ_HEADERS[2:])
            row += [
                r.headers.get(env.H_DLQ_REASON, ""),
                visible(r.headers.get(env.H_DLQ_ERROR, ""))[: 80 if console.is_terminal else None],
                origin,
                r.headers.get(REDRIVEN_FROM, "").removeprefix(r.topic + "/"),
            ]
        else:
            row.append(r.headers.get(env.H_TYPE, ""))
        table.add_row(*(escape(visible(cell)) for cell in row))
    print_table(console, table)


def _key_cell(record: Record) -> str:
    """The readable key, marked when the record's (or its dead letter's record's) is not
    UTF-8 text as it is."""
    binary = env.H_DLQ_KEY_B64 in record.headers or (
        record.raw_key is not None and _not_utf8(record.raw_key)
    )
    return (record.key or "") + (" (binary)" if binary else "")
