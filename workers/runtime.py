"""The participant side of every worker: inbox, handler, reply through the outbox.

One consumed batch is one transaction: the inbox rows (command ids), the effects of
every new command and the replies (outbox rows) commit together. A redelivered command
finds its id in the inbox and is skipped; its reply is already in the outbox or sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from pydantic import TypeAdapter
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from events.base import Command, Reply, StepFailed
from events.dlq import DeadLetter, DeadLetterReason
from events.envelope import H_ID, Envelope
from events.topics import SAGA_REPLIES
from orchestrator import metrics, telemetry
from orchestrator.db import driver_connection
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay, OutboxRow, write_outbox
from orchestrator.engine.records import (
    Parsed,
    RawRecord,
    dead_letter_message,
    envelope_letter,
    parse_record,
    report_dead_letters,
)
from orchestrator.engine.retry import is_transient, with_retries
from orchestrator.errors import error_of
from workers.claimed_write import claim_and_write
from workers.operations import Operations

log = structlog.get_logger(__name__)

PARTICIPANT_ERROR = "PARTICIPANT_ERROR"


@dataclass(frozen=True)
class Handled:
    """A reply plus other messages the handler publishes in the same transaction."""

    reply: Reply
    publish: tuple[OutboundMessage, ...] = ()


CommandHandler = Callable[[AsyncConnection, Envelope, Any], Awaitable[Reply | Handled]]


@dataclass(frozen=True)
class Decider:
    """A handler that decides from the command alone: it reads and writes nothing and has
    no effect outside, so a batch of its commands is claimed and answered in one statement
    (``claimed_write``), without a transaction around a handler."""

    decide: Callable[[Envelope, Any], Reply]


@runtime_checkable
class KeepsSteps(Protocol):
    """A handler whose steps go through ``Operations``: a batch's step rows are read in one
    statement before its commands are handled and written in one after
    (``Operations.batched``)."""

    operations: Operations


@runtime_checkable
class LocksAhead(Protocol):
    """A handler whose commands lock rows that another batch's commands may lock too (a
    wallet, a SKU's stock): it locks every row its batch will lock, in key order, before the
    first command, so two batches never each hold a row the other waits for (a deadlock,
    which PostgreSQL ends by failing one of them, and the batch runs again). Key order is
    byte order (``COLLATE "C"``), the order Python sorts the keys of the feeds' batches in,
    whatever collation the database was created with. Not when a
    failed batch is handled command by command (``isolate``): the rare path, where a command
    the lock cannot read must still be dead-lettered on its own."""

    async def lock_ahead(
        self, conn: AsyncConnection, commands: Sequence[tuple[Envelope, Any]]
    ) -> None: ...


class ParticipantRuntime:
    """Runs one worker's command handler over batches of its command topic."""

    def __init__(
        self,
        name: str,
        topic: str,
        engine: AsyncEngine,
        commands: TypeAdapter[Any],
        handle: CommandHandler | Decider,
        relay: OutboxRelay,
        inbox: Table,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.name = name
        self.topic = topic
        self.engine = engine
        self.commands = commands
        self.handle = handle
        self.relay = relay
        self.inbox = inbox
        self._claim_statement = text(
            f"INSERT INTO {inbox.name} (message_id) SELECT unnest(CAST(:ids AS text[])) "
            "ON CONFLICT DO NOTHING RETURNING message_id"
        )
        self.max_message_bytes = max_message_bytes
        metrics.declare_dead_letters([topic])

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        what = f"{self.name} commands"
        start_ns = time.time_ns()
        if isinstance(self.handle, Decider):
            decide = self.handle.decide
            rows, handled = await with_retries(lambda: self._decided(records, decide), what=what)
            self.relay.publish_soon(rows)
            self._trace(handled, start_ns)
            return
        try:
            rows, handled = await with_retries(lambda: self._tx(records, isolate=False), what=what)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error(
                "batch failed; handling its commands one by one",
                worker=self.name,
                error=error_of(exc),
            )
            rows, handled = await with_retries(lambda: self._tx(records, isolate=True), what=what)
        self.relay.publish_soon(rows)
        self._trace(handled, start_ns)

    def _trace(self, handled: list[tuple[Envelope, str, str]], start_ns: int) -> None:
        """A span per handled command, child of the orchestrator's send span."""
        if not telemetry.enabled():
            return
        for command, reply_id, kind in handled:
            assert command.saga_id is not None
            telemetry.record(
                f"{self.name} {kind}",
                command.saga_id,
                telemetry.message_span_id(reply_id),
                telemetry.message_span_id(command.id),
                start_ns,
                {"saga.step": command.saga_step or "", "worker": self.name},
            )

    async def _tx(
        self, records: Sequence[RawRecord], isolate: bool
    ) -> tuple[list[OutboxRow], list[tuple[Envelope, str, str]]]:
        """One transaction for the batch. With ``isolate``, each command runs in a savepoint
        and one whose handler fails is dead-lettered and answered with a refusal, so a bug
        met by one command neither stalls the partition nor blocks the others."""
        handle = self.handle
        assert not isinstance(handle, Decider)
        parsed, letters = self._parse(records)
        messages: list[OutboundMessage] = []
        handled: list[tuple[Envelope, str, str]] = []
        async with self.engine.begin() as conn:
            fresh = await self._claim(conn, list(parsed))
            todo = [item for message_id, item in parsed.items() if message_id in fresh]
            async with self._steps_batched(conn, todo, isolate):
                if todo and not isolate and isinstance(handle, LocksAhead):
                    await handle.lock_ahead(conn, [(item.envelope, item.body) for item in todo])
                for item in todo:
                    result = await self._handled(conn, item, letters, handle, isolate)
                    if isinstance(result, Handled):
                        messages.extend(result.publish)
                        result = result.reply
                    reply = self._reply(item.envelope, result)
                    messages.append(reply)
                    handled.append((item.envelope, reply.headers[H_ID], item.body.kind))
            messages.extend(dead_letter_message(letter) for letter in letters)
            rows = await write_outbox(conn, self.relay.table, messages)
        if len(fresh) < len(parsed):
            log.info("duplicate commands skipped", worker=self.name, count=len(parsed) - len(fresh))
        report_dead_letters(letters)
        return rows, handled

    def _steps_batched(
        self, conn: AsyncConnection, todo: Sequence[Parsed[Command]], isolate: bool
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The batch's step rows read and written together, if the handler keeps steps. Not
        with ``isolate``: a savepoint rolled back alone would leave them stale."""
        if isolate or not todo or not isinstance(self.handle, KeepsSteps):
            return contextlib.nullcontext()
        return self.handle.operations.batched(conn, [item.envelope for item in todo])

    async def _handled(
        self,
        conn: AsyncConnection,
        item: Parsed[Command],
        letters: list[DeadLetter],
        handle: CommandHandler,
        isolate: bool,
    ) -> Reply | Handled:
        structlog.contextvars.bind_contextvars(
            message_id=item.envelope.id,
            saga_id=str(item.envelope.saga_id),
            saga_type=item.envelope.saga_type,
        )
        try:
            if isolate:
                return await self._isolated(conn, item, letters, handle)
            return await handle(conn, item.envelope, item.body)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "saga_id", "saga_type")

    async def _decided(
        self, records: Sequence[RawRecord], decide: Callable[[Envelope, Any], Reply]
    ) -> tuple[list[OutboxRow], list[tuple[Envelope, str, str]]]:
        """The batch of a ``Decider``: every reply decided first, then one statement claims
        the commands and writes the replies (and dead letters) of those it claimed."""
        parsed, unreadable = self._parse(records)
        messages: list[tuple[OutboundMessage, str | None]] = [
            (dead_letter_message(letter), None) for letter in unreadable
        ]
        failed: dict[str, DeadLetter] = {}
        answers: dict[str, tuple[Envelope, str, str]] = {}
        for message_id, item in parsed.items():
            try:
                result = decide(item.envelope, item.body)
            except Exception as exc:
                failed[message_id], result = _refusal(item, exc)
                messages.append((dead_letter_message(failed[message_id]), message_id))
            reply = self._reply(item.envelope, result)
            messages.append((reply, message_id))
            answers[message_id] = (item.envelope, reply.headers[H_ID], item.body.kind)
        async with driver_connection(self.engine) as driver:
            claimed = await claim_and_write(
                driver, self.inbox, self.relay.table, list(parsed), messages
            )
        if len(claimed.fresh) < len(parsed):
            log.info(
                "duplicate commands skipped",
                worker=self.name,
                count=len(parsed) - len(claimed.fresh),
            )
        letters = unreadable + [failed[i] for i in failed if i in claimed.fresh]
        for letter in letters[len(unreadable) :]:
            log.error(
                "command failed; dead-lettered and refused", worker=self.name, error=letter.error
            )
        report_dead_letters(letters)
        return claimed.rows, [answers[i] for i in answers if i in claimed.fresh]

    def _parse(
        self, records: Sequence[RawRecord]
    ) -> tuple[dict[str, Parsed[Command]], list[DeadLetter]]:
        """The batch's commands by message id (a repeat within the batch counted once), and
        the records refused before any handler saw them."""
        letters: list[DeadLetter] = []
        parsed: dict[str, Parsed[Command]] = {}
        for record in records:
            item = parse_record(
                record, self.commands, self.max_message_bytes, "command", require_envelope=True
            )
            if isinstance(item, DeadLetter):
                letters.append(item)
            elif item.envelope.saga_id is None:
                letters.append(envelope_letter(item, "command without ce_sagaid header"))
            else:
                parsed.setdefault(item.envelope.id, item)
        return parsed, letters

    async def _isolated(
        self,
        conn: AsyncConnection,
        item: Parsed[Command],
        letters: list[DeadLetter],
        handle: CommandHandler,
    ) -> Reply | Handled:
        try:
            async with conn.begin_nested():
                return await handle(conn, item.envelope, item.body)
        except Exception as exc:
            if is_transient(exc):
                raise
            letter, refusal = _refusal(item, exc)
            log.error(
                "command failed; dead-lettered and refused", worker=self.name, error=letter.error
            )
            letters.append(letter)
            return refusal

    async def _claim(self, conn: AsyncConnection, message_ids: list[str]) -> set[str]:
        """Insert inbox rows, in key order as every batch does; the ids that were not there
        yet are the ones to handle."""
        if not message_ids:
            return set()
        result = await conn.execute(self._claim_statement, {"ids": sorted(message_ids)})
        return {row[0] for row in result}

    def _reply(self, command: Envelope, reply: Reply) -> OutboundMessage:
        envelope = Envelope(
            type=f"{self.name}.{reply.kind}.v1",
            source=f"orchestra/{self.name}",
            correlation_id=command.correlation_id,
            causation_id=command.id,
            saga_id=command.saga_id,
            saga_type=command.saga_type,
            saga_step=command.saga_step,
        )
        return OutboundMessage.of(SAGA_REPLIES, str(command.saga_id), envelope, reply)


def _refusal(item: Parsed[Command], exc: Exception) -> tuple[DeadLetter, StepFailed]:
    """What a command whose handler failed gets: a dead letter and a refusal, both with
    the error."""
    error = error_of(exc)
    letter = envelope_letter(item, error, DeadLetterReason.HANDLER_ERROR)
    return letter, StepFailed(reason=PARTICIPANT_ERROR, detail=error)
