"""``orchestra send``: publish one upstream record as the contract's producers would, checked
by the rules its consumer applies first, and with ``--wait`` print the outcome it leads to."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from events.base import UpstreamRecord
from events.dlq import DeadLetter
from events.envelope import H_CORRELATION, H_SAGA_TYPE
from orchestrator.client import OutcomeRecord, UpstreamClient
from orchestrator.engine.definition import Saga
from orchestrator.engine.records import parse_record
from orchestrator.errors import OrchestraError
from orchestrator.sagas import ALL_SAGAS
from orchestrator.settings import Settings
from workers.registry import WORKERS

UPSTREAM: dict[str, type[UpstreamRecord]] = {
    **{saga.inbound_topic: saga.trigger for saga in ALL_SAGAS},
    **{feed.topic: feed.record for spec in WORKERS.values() for feed in spec.feeds},
}
"""Every topic upstream systems publish on, and the model of its records."""
SAGAS: dict[str, Saga[Any, Any]] = {saga.inbound_topic: saga for saga in ALL_SAGAS}
"""The saga each upstream topic starts (feeds start none)."""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    send = commands.add_parser(
        "send",
        help="publish one upstream record (checked first), and wait for its outcome",
        description="Publish one record on an upstream topic, with CloudEvents headers, as "
        "an upstream system would. The JSON is checked by the rules its consumer applies.",
    )
    send.add_argument(
        "topic",
        choices=sorted(UPSTREAM),
        metavar="TOPIC",
        help=f"one of: {', '.join(sorted(UPSTREAM))}",
    )
    send.add_argument("payload", metavar="JSON", help="the record's JSON, or - to read stdin")
    send.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long (at most 3600) for the saga's outcome and print it",
    )


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 <= seconds <= 3600):
        raise argparse.ArgumentTypeError(f"seconds from 0 to 3600, not {text!r}")
    return seconds


@dataclass
class _Typed:
    """The record as a consumer would read it off the topic."""

    topic: str
    value: bytes | None
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def parse(topic: str, text: str, max_bytes: int) -> UpstreamRecord:
    """The record, or an OrchestraError saying what its consumer would dead-letter it for."""
    text = text.removeprefix("\ufeff")  # as the consumer reads it
    try:
        value = text.encode()
    except UnicodeEncodeError:  # bytes the locale could not decode, kept as surrogates
        raise OrchestraError("the payload is not UTF-8 text") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise OrchestraError(f"the payload is not JSON: {exc}") from None
    model = UPSTREAM[topic]
    adapter: TypeAdapter[UpstreamRecord] = TypeAdapter(model)
    read = parse_record(_Typed(topic, value), adapter, max_bytes, model.event_type, False)
    if isinstance(read, DeadLetter):
        raise OrchestraError(f"not a record of {topic}: {read.error}")
    return read.body


def _stdin() -> str:
    """The payload piped in, read as UTF-8 whatever the locale."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream standing in for stdin
        return sys.stdin.read()
    try:
        return bytes(raw.read()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OrchestraError(
            f"the payload is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    payload = _stdin() if args.payload == "-" else args.payload
    record = parse(args.topic, payload, settings.max_message_bytes)
    saga = SAGAS.get(args.topic)
    if args.wait and saga is None:
        raise OrchestraError(f"{args.topic} is a feed: no saga, no outcome to wait for")
    watched = [saga.outcome_topic] if args.wait and saga is not None else []
    async with UpstreamClient(settings, watch=watched, publishes=[args.topic]) as client:
        message_id = await client.send(args.topic, record)
        print(f"sent to {args.topic}, key {record.record_key()}, ce_id {message_id}", flush=True)
        if saga is None or not args.wait:
            return 0
        try:
            outcome = await asyncio.wait_for(_outcome(client, saga, record), timeout=args.wait)
        except TimeoutError:
            print(
                f"orchestra: no outcome on {saga.outcome_topic} within {args.wait:g} s "
                f"(a record its consumer refuses goes to {args.topic}.dlq)",
                file=sys.stderr,
            )
            return 1
    print(outcome.value.decode("utf-8", "replace"))
    if outcome.headers.get(H_CORRELATION) != message_id:
        print(
            f"orchestra: that is the outcome of the saga an earlier record under key "
            f"{record.business_key()} started: this record was its repeat, or, if it asked "
            f"something else, it is on {args.topic}.dlq (KEY_REUSED)",
            file=sys.stderr,
        )
    return 0


async def _outcome(
    client: UpstreamClient, saga: Saga[Any, Any], record: UpstreamRecord
) -> OutcomeRecord:
    """The first outcome of this record's saga: its outcome key, its saga type (purchases and
    activations share a topic), and the record's business key among its fields."""
    key, business_key = saga.outcome_key(saga.begin(record)), record.business_key()
    while True:
        found = await client.received.get()
        if found.key != key or found.headers.get(H_SAGA_TYPE) != saga.name:
            continue
        if business_key in json.loads(found.value).values():
            return found
