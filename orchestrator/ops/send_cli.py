"""``orchestra send``: publish one upstream record as the contract's producers would, checked
against its topic's model first, and with ``--wait`` print the outcome it leads to."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError

from events.base import UpstreamRecord
from orchestrator.client import OutcomeRecord, UpstreamClient
from orchestrator.errors import OrchestraError
from orchestrator.sagas import ALL_SAGAS
from orchestrator.settings import Settings
from workers.registry import WORKERS

UPSTREAM: dict[str, type[UpstreamRecord]] = {
    **{saga.inbound_topic: saga.trigger for saga in ALL_SAGAS},
    **{feed.topic: feed.record for spec in WORKERS.values() for feed in spec.feeds},
}
"""Every topic upstream systems publish on, and the model of its records."""
OUTCOMES: dict[str, str] = {saga.inbound_topic: saga.outcome_topic for saga in ALL_SAGAS}


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    send = commands.add_parser(
        "send",
        help="publish one upstream record (checked first), and wait for its outcome",
        description="Publish one record on an upstream topic, with CloudEvents headers, as "
        "an upstream system would. The JSON is checked against the topic's model first.",
    )
    send.add_argument("topic", choices=sorted(UPSTREAM), metavar="TOPIC")
    send.add_argument("payload", metavar="JSON", help="the record's JSON, or - to read stdin")
    send.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the saga's outcome and print it (not for feeds)",
    )


def parse(topic: str, text: str) -> UpstreamRecord:
    """The record, or an OrchestraError saying what is wrong with the JSON."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise OrchestraError(f"the payload is not JSON: {exc}") from None
    try:
        return UPSTREAM[topic].model_validate(document)
    except ValidationError as exc:
        faults = [
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()[:5]
        ]
        raise OrchestraError(f"not a record of {topic}: {'; '.join(faults)}") from None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.wait < 0 or args.wait > 3600:
        raise OrchestraError("--wait is 0 to 3600 seconds")
    record = parse(args.topic, sys.stdin.read() if args.payload == "-" else args.payload)
    outcome_topic = OUTCOMES.get(args.topic) if args.wait else None
    key = record.record_key()
    async with UpstreamClient(settings, watch=[outcome_topic] if outcome_topic else []) as client:
        message_id = await client.send(args.topic, record)
        print(f"sent to {args.topic}, key {key}, ce_id {message_id}", flush=True)
        if outcome_topic is None:
            return 0
        try:
            outcome = await asyncio.wait_for(_outcome(client, key), timeout=args.wait)
        except TimeoutError:
            print(
                f"orchestra: error: no outcome on {outcome_topic} within {args.wait:g} s",
                file=sys.stderr,
            )
            return 1
    print(outcome.value.decode("utf-8", "replace"))
    return 0


async def _outcome(client: UpstreamClient, key: str) -> OutcomeRecord:
    while (record := await client.received.get()).key != key:
        pass
    return record
