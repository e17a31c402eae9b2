"""The saga runtime: upstream records start sagas, replies and timers move them on.

Each consumed batch is written atomically: every saga change, its history and its outgoing
messages (outbox) in one statement (see ``batch_write``). Offsets are committed by the
consumer only after the handler returns, that is after the write; the outbox is published
right after it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from events.base import Reply, UpstreamRecord
from events.dlq import DeadLetter, DeadLetterReason
from events.replies import REPLY_ADAPTER
from events.topics import SAGA_REPLIES
from orchestrator import metrics
from orchestrator.db import driver_connection, driver_of
from orchestrator.engine import store, tracing
from orchestrator.engine.batch_write import BatchWrite, Written, updated, write_batch
from orchestrator.engine.clock import AlignedClock
from orchestrator.engine.definition import Saga
from orchestrator.engine.instance import SagaInstance
from orchestrator.engine.isolation import isolating
from orchestrator.engine.machine import Decision, RetryPolicy, SagaMachine
from orchestrator.engine.outbox import OutboundMessage, OutboxRelay, OutboxRow
from orchestrator.engine.records import (
    Parsed,
    RawRecord,
    dead_letter_message,
    envelope_letter,
    parse_record,
    record_letter,
    report_dead_letters,
)
from orchestrator.engine.retry import with_retries
from orchestrator.engine.saga_cache import SagaCache
from orchestrator.engine.waiting import TakenCheck, Waiting, waits
from orchestrator.errors import ConcurrentUpdate, SagaCodeFailed, SagaRefused, error_of
from schemas.sagas import orchestrator_outbox

log = structlog.get_logger(__name__)

_MAX_REREADS = 50
"""Rounds of read-decide-write for the replies of one batch whose sagas keep moving."""


class UnknownSaga(LookupError):
    """No saga with that id (or of that type)."""


class SagaRuntime:
    """Applies the saga machines to batches of records, durably."""

    def __init__(
        self,
        engine: AsyncEngine,
        definitions: Sequence[Saga[Any, Any]],
        policy: RetryPolicy,
        relay: OutboxRelay,
        max_message_bytes: int = 1_000_000,
        clock: AlignedClock | None = None,
        taken_check: TakenCheck | None = None,
    ) -> None:
        self.engine = engine
        self.relay = relay
        self.clock = clock or AlignedClock()
        self.policy = policy
        self.taken_check = taken_check
        self._participants = {p.topic: p.name for d in definitions for p in d.participants}
        self._timeouts_from: datetime | None = None
        self.max_message_bytes = max_message_bytes
        self.machines = {d.name: SagaMachine(d, policy) for d in definitions}
        metrics.declare(definitions)
        metrics.declare_dead_letters([*(d.inbound_topic for d in definitions), SAGA_REPLIES])
        self._cache = SagaCache()
        self.by_topic = {d.inbound_topic: self.machines[d.name] for d in definitions}
        self._adapters: dict[str, TypeAdapter[Any]] = {
            d.inbound_topic: TypeAdapter(d.trigger) for d in definitions
        }

    @property
    def inbound_topics(self) -> list[str]:
        return list(self.by_topic)

    # -- upstream ---------------------------------------------------------------------------

    async def handle_inbound(self, records: Sequence[RawRecord]) -> None:
        """Start one saga per valid record (deduplicated by business key); dead-letter the rest."""
        await isolating(records, self._handle_inbound, self.relay, "upstream records")

    async def _handle_inbound(self, records: Sequence[RawRecord]) -> None:
        start_ns = time.time_ns()
        started = await with_retries(lambda: self._start_sagas(records), what="start sagas")
        self.relay.publish_soon(started.rows)
        metrics.observe(started.fresh)
        tracing.record_decisions(started.fresh, start_ns)
        report_dead_letters(started.letters)
        if started.repeats:
            await self._answer_repeats(started)

    async def _start_sagas(self, records: Sequence[RawRecord]) -> _Started:
        """One statement: the sagas of the batch's new keys, with their first commands, and the
        dead letters of its invalid records. The records left are repeats of a key."""
        now = self.clock()
        letters: list[DeadLetter] = []
        starts: dict[tuple[str, str], Decision] = {}
        firsts: dict[tuple[str, str], Parsed[UpstreamRecord]] = {}
        asked: list[tuple[tuple[str, str], Parsed[UpstreamRecord]]] = []
        for record in records:
            machine = self.by_topic.get(record.topic)
            if machine is None:
                continue
            parsed = parse_record(
                record,
                self._adapters[record.topic],
                self.max_message_bytes,
                default_type=machine.definition.trigger.event_type,
                require_envelope=False,
            )
            if isinstance(parsed, DeadLetter):
                letters.append(parsed)
                continue
            key = (machine.definition.name, parsed.body.business_key())
            asked.append((key, parsed))
            if key not in starts:
                starts[key] = machine.start(parsed.body, parsed.envelope, now)
                firsts[key] = parsed
        batch = BatchWrite(inserts=[d.instance for d in starts.values()])
        for decision in starts.values():
            batch.add(decision, owned=True)
        batch.messages.extend((dead_letter_message(letter), None) for letter in letters)
        written = await self._write(batch)
        fresh = [d for d in starts.values() if d.instance.id in written.sagas]
        self._cache.written(d.instance for d in fresh)
        repeats = [
            (key, parsed)
            for key, parsed in asked
            if parsed is not firsts[key] or starts[key].instance.id not in written.sagas
        ]
        decided = {
            key: (d.instance.id, d.instance.request_digest)
            for key, d in starts.items()
            if d.instance.id in written.sagas
        }
        return _Started(written.rows, fresh, letters, repeats, decided)

    async def _answer_repeats(self, started: _Started) -> None:
        """Dead-letter the repeats that reuse their key for another request (``KEY_REUSED``),
        in a statement of its own, retried on its own: the sagas started stay started and
        counted once. The others changed nothing, and are logged."""
        reused, rows = await with_retries(
            lambda: self._refuse_reused(started), what="refuse reused keys"
        )
        self.relay.publish_soon(rows)
        report_dead_letters(reused)
        refused = {(letter.topic, letter.partition, letter.offset) for letter in reused}
        ignored = [key for key, p in started.repeats if _place(p.record) not in refused]
        if ignored:
            log.info(
                "repeated requests ignored: their business key has a saga already",
                count=len(ignored),
                keys=[f"{saga_type}:{key}" for saga_type, key in ignored[:20]],
            )

    async def _refuse_reused(self, started: _Started) -> tuple[list[DeadLetter], list[OutboxRow]]:
        """The dead letters of the repeats that ask something else than the record that
        started their key's saga, in this batch or before, and their outbox rows. A saga whose
        digest was made under another version of its trigger (or none: an earlier release)
        takes any repeat as the same."""
        decided = dict(started.decided)
        earlier = {key for key, _ in started.repeats} - decided.keys()
        if earlier:
            async with driver_connection(self.engine) as driver:
                decided |= await store.request_digests(driver, earlier)
        letters = []
        for (saga_type, business_key), parsed in started.repeats:
            saga_id, digest = decided.get((saga_type, business_key), (None, None))
            if digest is not None and parsed.body.asks_otherwise(digest):
                why = (
                    f"{saga_type} {business_key} is saga {saga_id}'s key, which a record asking "
                    "something else started; the first one decides (see the saga: if this is "
                    "another request, send it under a new key)"
                )
                letters.append(record_letter(parsed.record, DeadLetterReason.KEY_REUSED, why))
        if not letters:
            return [], []
        written = await self._write(
            BatchWrite(messages=[(dead_letter_message(letter), None) for letter in letters])
        )
        return letters, written.rows

    # -- replies ------------------------------------------------------------------------------

    async def handle_replies(self, records: Sequence[RawRecord]) -> None:
        """Apply replies without locks: read, decide, write under a version check in one
        statement; the sagas that moved meanwhile (a timer, an operator) are read again."""
        await isolating(records, self._handle_replies, self.relay, "replies")

    async def _handle_replies(self, records: Sequence[RawRecord]) -> None:
        start_ns = time.time_ns()
        now = self.clock()
        letters: list[DeadLetter] = []
        pending: list[Parsed[Reply]] = []
        adapter: TypeAdapter[Any] = REPLY_ADAPTER
        for record in records:
            parsed = parse_record(
                record, adapter, self.max_message_bytes, "reply", require_envelope=True
            )
            if isinstance(parsed, DeadLetter):
                letters.append(parsed)
            elif parsed.envelope.saga_id is None or parsed.envelope.saga_type not in self.machines:
                letters.append(envelope_letter(parsed, "reply without a known saga id and type"))
            else:
                pending.append(parsed)
        extra = [(dead_letter_message(letter), None) for letter in letters]
        for round_ in range(_MAX_REREADS):
            apply = functools.partial(self._apply_replies, pending, extra, now, cached=round_ == 0)
            applied = await with_retries(apply, what="apply replies")
            self.relay.publish_soon(applied.rows)
            metrics.observe(applied.decisions, applied.timings)
            tracing.record_decisions(applied.decisions, start_ns)
            letters.extend(applied.orphans)
            if not applied.conflicts:
                break
            pending = [r for r in pending if r.envelope.saga_id in applied.conflicts]
            extra = []
        else:
            raise ConcurrentUpdate(f"{len(pending)} replies met sagas that kept moving")
        report_dead_letters(letters)

    async def _apply_replies(
        self,
        replies: Sequence[Parsed[Reply]],
        extra: Sequence[tuple[OutboundMessage, None]],
        now: datetime,
        cached: bool,
    ) -> _Applied:
        """One round of read, decide, write. With ``cached``, the sagas this process wrote
        last are taken from its cache instead of read; those whose change the write then
        refuses, or whose cached state would ignore a reply, come back as conflicts, to be
        decided again on a fresh read."""
        ids = {r.envelope.saga_id for r in replies if r.envelope.saga_id is not None}
        from_cache = self._cache.get(ids) if cached else {}
        async with driver_connection(self.engine) as driver:
            before = from_cache | await store.load(driver, ids - from_cache.keys())
            known = await store.known_messages(driver, _not_awaited(replies, before))
            current = dict(before)
            decisions: list[Decision] = []
            timings: list[tuple[UUID, metrics.StepTiming]] = []
            suspects: set[UUID] = set()
            orphans: list[DeadLetter] = []
            for reply in replies:
                saga_id = reply.envelope.saga_id
                assert saga_id is not None
                instance = current.get(saga_id)
                if instance is None:
                    orphans.append(
                        envelope_letter(reply, f"no saga {saga_id}", DeadLetterReason.UNKNOWN_SAGA)
                    )
                    continue
                if (saga_id, reply.envelope.id) in known.replies:
                    continue
                machine = self.machines[instance.saga_type]
                answered = known.commands.get((saga_id, reply.envelope.causation_id or ""))
                decision = machine.on_reply(instance, reply.body, reply.envelope, now, answered)
                if not decision.changed and saga_id in from_cache:
                    suspects.add(saga_id)
                current[saga_id] = decision.instance
                decisions.append(decision)
                step = reply.envelope.saga_step
                if step and decision.changed and not instance.status.terminal:
                    seconds = (now - instance.updated_at).total_seconds()
                    timing = metrics.StepTiming(
                        instance.saga_type, step, instance.compensating, seconds
                    )
                    timings.append((saga_id, timing))
            decisions = [d for d in decisions if d.instance.id not in suspects]
            changed = {
                i for i, after in current.items() if after != before[i] and i not in suspects
            }
            batch = BatchWrite(
                updates=[(before[i], current[i]) for i in sorted(changed)],
                messages=[*extra, *((dead_letter_message(o), None) for o in orphans)],
            )
            for decision in decisions:
                batch.add(decision, owned=decision.instance.id in changed)
            written = (
                await write_batch(driver, orchestrator_outbox, batch)
                if not batch.empty
                else Written(set(), [])
            )
        conflicts = (changed - written.sagas) | suspects
        self._cache.forget(conflicts)
        self._cache.written(updated(before[i], current[i]) for i in written.sagas)
        return _Applied(
            written.rows,
            [d for d in decisions if d.instance.id not in conflicts],
            [t for saga_id, t in timings if saga_id not in conflicts],
            conflicts,
            orphans,
        )

    # -- timers -------------------------------------------------------------------------------

    def hold_timeouts(self, grace_s: float) -> None:
        """At start, once this process's consumers have joined their groups: its timer leaves
        steps whose answer is late alone for ``grace_s`` (retries after a backoff go on).

        A deadline judges the participant; the time the orchestrator was down, or its and the
        workers' consumers were rejoining their groups after a crash (10-30 s), is not the
        participant's. Without it every saga in flight across a restart longer than the
        timeout was rolled back with TIMEOUT, the answers of its steps landing just after.
        Nothing is written: other processes' timers go on, and a process that keeps
        restarting holds back only its own."""
        self._timeouts_from = self.clock() + timedelta(seconds=grace_s)

    async def fire_due(self, limit: int = 500) -> int:
        """Handle every saga whose step timed out or whose retry is due; returns how many."""
        start_ns = time.time_ns()
        asked_at = self.clock()
        held = self._timeouts_from is not None and asked_at < self._timeouts_from
        waiting = None if held else await self._waiting(limit, asked_at)
        rows, decisions = await with_retries(
            lambda: self._due_tx(limit, waiting, held), what="fire timers"
        )
        self._cache.forget(d.instance.id for d in decisions)
        self.relay.publish_soon(rows)
        metrics.observe(decisions)
        tracing.record_decisions(decisions, start_ns)
        return len(decisions)

    async def _waiting(self, limit: int, now: datetime) -> Waiting | None:
        """The late steps whose participant has not taken the command, or has just now
        after the saga waited: those wait rather than time out (``engine.waiting``). None
        when steps are not waited for (no broker check)."""
        if self.taken_check is None or self.policy.queue_timeout_s <= 0:
            return None
        async with driver_connection(self.engine) as driver:
            late = await store.awaiting(driver, now, self._participants, self.machines, limit)
        sent_after = now - timedelta(seconds=self.policy.queue_timeout_s)
        asked = [a for a in late if a.participant and a.sent_at > sent_after]
        found = waits(asked, await self.taken_check.untaken(asked)) if asked else {}
        queued = [a for a in asked if (w := found.get(a.saga_id)) and not w.taken and not w.noted]
        if queued:
            log.warning(
                "late steps wait: their participants have not taken the commands (down, behind)",
                sagas=len(queued),
                participants=sorted({a.participant for a in queued}),
            )
        due_after = now - timedelta(seconds=self.policy.queue_timeout_s)
        timing_out = [
            a for a in late if a.saga_id not in found and (a.due_at is None or a.due_at > due_after)
        ]
        behind = await self.taken_check.replies_behind(timing_out, now) if timing_out else set()
        return Waiting(now, {a.saga_id for a in late} - behind, found)

    async def _due_tx(
        self, limit: int, waiting: Waiting | None, held: bool
    ) -> tuple[list[OutboxRow], list[Decision]]:
        """``held``: within the restart grace (``hold_timeouts``) when the tick began."""
        async with self.engine.begin() as conn:
            now = await self.clock.align(conn)
            cutoff = now if waiting is None else min(now, waiting.at)
            due = await store.lock_due(conn, cutoff, limit, self.machines, retries_only=held)
            decisions = []
            changes = []
            for instance in due:
                if waiting is not None and not waiting.looked_at(instance):
                    continue  # late since the broker was asked: the next tick asks
                machine = self.machines[instance.saga_type]
                wait = waiting.waits.get(instance.id) if waiting is not None else None
                try:
                    if wait is not None and wait.command_id == instance.pending_command_id:
                        decision = machine.wait_for_participant(
                            instance, now, wait.taken, wait.noted
                        )
                    else:
                        decision = machine.on_due(instance, now)
                except Exception as exc:
                    log.error(
                        "saga timer failed",
                        saga_id=str(instance.id),
                        saga_type=instance.saga_type,
                        error=error_of(exc),
                    )
                    decision = machine.put_off(instance, now, error_of(exc))
                changes.append((instance, decision.instance))
                decisions.append(decision)
            batch = BatchWrite(updates=changes)
            for decision in decisions:
                batch.add(decision, owned=True)
            if batch.empty:  # nothing due: the usual tick, no write
                return [], decisions
            rows = (await write_batch(await driver_of(conn), orchestrator_outbox, batch)).rows
        return rows, decisions

    # -- manual actions ---------------------------------------------------------------------

    async def manual(self, saga_id: UUID, action: str, actor: str, why: str) -> SagaInstance:
        """Operator actions: ``retry`` the current step or ``compensate`` the saga."""

        async def tx() -> tuple[list[OutboxRow], SagaInstance]:
            async with self.engine.begin() as conn:
                found = await store.lock(conn, [saga_id])
                if saga_id not in found:
                    raise UnknownSaga(f"no saga {saga_id}")
                instance = found[saga_id]
                machine = self.machines.get(instance.saga_type)
                if machine is None:
                    raise UnknownSaga(
                        f"saga type {instance.saga_type!r} is not run by this process"
                    )
                now = await self.clock.align(conn)
                decision = _manual_decision(machine, instance, action, now, actor, why)
                batch = BatchWrite(updates=[(instance, decision.instance)])
                batch.add(decision, owned=True)
                written = await write_batch(await driver_of(conn), orchestrator_outbox, batch)
                if saga_id not in written.sagas:
                    raise ConcurrentUpdate(f"saga {saga_id} changed under this action")
                return written.rows, updated(instance, decision.instance)

        rows, saved = await with_retries(tx, what=f"manual {action}")
        self._cache.forget([saga_id])
        self.relay.publish_soon(rows)
        return saved

    # -- shared -----------------------------------------------------------------------------

    async def _write(self, batch: BatchWrite) -> Written:
        """One statement, so no transaction around it: atomic on its own."""
        if batch.empty:
            return Written(set(), [])
        async with driver_connection(self.engine) as driver:
            return await write_batch(driver, orchestrator_outbox, batch)


def _place(record: RawRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


@dataclass(frozen=True)
class _Started:
    rows: list[OutboxRow]
    fresh: list[Decision]
    """The sagas started."""
    letters: list[DeadLetter]
    """The invalid records' dead letters, written with them."""
    repeats: list[tuple[tuple[str, str], Parsed[UpstreamRecord]]]
    """The records, by (saga type, business key), whose key has a saga already."""
    decided: dict[tuple[str, str], tuple[UUID, str | None]]
    """The id and request digest of the sagas started, by key."""


@dataclass(frozen=True)
class _Applied:
    rows: list[OutboxRow]
    decisions: list[Decision]
    timings: list[metrics.StepTiming]
    conflicts: set[UUID]
    orphans: list[DeadLetter]
    """Replies naming a saga that does not exist, dead-lettered (``UNKNOWN_SAGA``)."""


def _manual_decision(
    machine: SagaMachine, instance: SagaInstance, action: str, now: datetime, actor: str, why: str
) -> Decision:
    """The operator's action; SagaRefused when the saga's state refuses it, SagaCodeFailed
    when the saga's own code raises (a ValueError of a model among them; nothing is written
    either way)."""
    if action not in ("retry", "compensate"):
        raise ValueError(f"unknown action {action!r}")
    try:
        if action == "retry":
            return machine.retry_step(instance, now, actor, why)
        return machine.compensate(instance, now, actor, why)
    except SagaRefused:
        raise
    except Exception as exc:
        raise SagaCodeFailed(
            f"the saga's code failed on {action}, nothing was changed: {error_of(exc)}"
        ) from exc


def _not_awaited(
    replies: Sequence[Parsed[Reply]], sagas: dict[UUID, SagaInstance]
) -> list[tuple[UUID, str]]:
    """(saga id, message id) of the replies that do not answer the command their saga awaits
    (late, duplicate, or to an earlier attempt: the history tells which), each with the
    command it answers: the messages to look up in the sagas' history."""
    return [
        (saga_id, message)
        for reply in replies
        if (saga_id := reply.envelope.saga_id) in sagas
        and (causation := reply.envelope.causation_id) != sagas[saga_id].pending_command_id
        for message in (reply.envelope.id, causation)
        if message is not None
    ]
