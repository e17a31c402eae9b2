"""The saga state machine: pure transitions from (instance, event, now) to a decision.

Nothing here does I/O. The runtime loads the instance, asks the machine what to do,
and commits the new instance, its history and its outgoing messages in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel

from events.base import Command, Compensated, Message, Reply, StepFailed, UpstreamRecord
from events.envelope import Envelope
from orchestrator.engine.definition import NOTICE_STEP, Saga, SagaResult, Step
from orchestrator.engine.instance import SagaInstance, SagaStatus, SentCommand
from orchestrator.engine.waiting import POLL
from orchestrator.errors import DefinitionError, SagaRefused, error_of

TIMEOUT = "TIMEOUT"
NO_STEP = -1
"""The step slot of a saga that ended before any step ran (refused at its start, or with no
step that applies to it)."""
FAILED = "FAILED"
UNEXPECTED_REPLY = "UNEXPECTED_REPLY"


@dataclass(frozen=True)
class RetryPolicy:
    """Per-step timeout and exponential backoff with a retry budget."""

    step_timeout_s: float = 30.0
    budget: int = 8
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    queue_timeout_s: float = 300.0
    """The longest a step waits for its participant to take its command before its timeout
    counts anyway (``orchestrator.engine.waiting``); 0: from when it is sent."""

    def backoff(self, attempt: int) -> timedelta:
        doublings = min(max(0, attempt - 1), 32)  # 2**1024 overflows a float
        return timedelta(seconds=min(self.backoff_max_s, self.backoff_s * 2**doublings))

    def slowed(self, attempt: int, budget: int) -> timedelta:
        """The wait before ``attempt`` of a step retried until it succeeds whose participant
        keeps refusing it (not for now: a bug, say) past the budget: doubling from
        ``backoff_max_s`` up to ``PUT_OFF_MAX``, so a refusal that needs a fix is not sent,
        and dead-lettered, every half minute for good, and still goes through once fixed."""
        doublings = min(max(1, attempt - budget), 32)
        longest = PUT_OFF_MAX.total_seconds()
        return timedelta(seconds=min(longest, self.backoff_max_s * 2**doublings))


PUT_OFF = timedelta(minutes=5)
"""The shortest wait of a saga whose timer raised before its timer fires again."""
PUT_OFF_MAX = timedelta(hours=6)
"""The longest such wait."""


@dataclass(frozen=True)
class Outgoing:
    """A message the decision asks to publish (through the outbox)."""

    topic: str
    key: str
    envelope: Envelope
    body: Message


@dataclass(frozen=True)
class HistoryEntry:
    event: str
    status: SagaStatus
    at: datetime
    step: str | None = None
    message_id: str | None = None
    message_type: str | None = None
    topic: str | None = None
    detail: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class Decision:
    instance: SagaInstance
    outgoing: list[Outgoing] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.outgoing) or any(h.event != "reply-ignored" for h in self.history)

    def caused_by(self, message_id: str | None) -> Decision:
        """The decision with ``message_id`` (what it answers) as every message's cause."""
        if message_id is None or not self.outgoing:
            return self
        outgoing = [
            replace(o, envelope=o.envelope.model_copy(update={"causation_id": message_id}))
            for o in self.outgoing
        ]
        return replace(self, outgoing=outgoing)


class SagaMachine:
    """Runs one saga definition: start, replies, timers and manual actions."""

    def __init__(self, definition: Saga[Any, Any], policy: RetryPolicy) -> None:
        self.definition = definition
        self.policy = policy

    # -- entry points -------------------------------------------------------------------

    def start(
        self, record: UpstreamRecord, envelope: Envelope, now: datetime, saga_id: UUID | None = None
    ) -> Decision:
        state = self.definition.begin(record)
        instance = SagaInstance(
            id=saga_id or uuid4(),
            saga_type=self.definition.name,
            business_key=record.business_key(),
            status=SagaStatus.RUNNING,
            step_index=0,
            compensating=False,
            pending_command_id=None,
            attempt=0,
            next_action_at=None,
            data=state.model_dump(mode="json"),
            reason=None,
            correlation_id=envelope.correlation_id or envelope.id,
            version=0,
            created_at=now,
            updated_at=now,
            request_digest=record.content_digest(),
        )
        started = HistoryEntry(
            "started",
            SagaStatus.RUNNING,
            now,
            message_id=envelope.id,
            message_type=envelope.type,
            topic=self.definition.inbound_topic,
        )
        refused = self.definition.refusal(state) if self.definition.refusal else None
        first = self._next_applicable(state, 0)
        if refused is not None or first is None:
            history = [started]
            if refused is not None:
                history.append(HistoryEntry("refused", SagaStatus.RUNNING, now, detail=refused))
            status = SagaStatus.ABORTED if refused is not None else SagaStatus.COMPLETED
            at_no_step = instance.evolve(step_index=NO_STEP)
            decision = self._finish(at_no_step, status, refused, now, history, state)
        else:
            decision = self._send(instance, first, False, now, [started], state=state)
        return decision.caused_by(envelope.id)

    def on_reply(
        self,
        instance: SagaInstance,
        reply: Reply,
        envelope: Envelope,
        now: datetime,
        answered: SentCommand | None = None,
    ) -> Decision:
        """Advance on a reply that answers the current step (``_answers``); ``answered``: the
        command the reply answers, from the saga's history, if it is not the one awaited."""
        step = self._step(instance)
        received = HistoryEntry(
            "reply-received",
            instance.status,
            now,
            step=step.name if step else None,
            message_id=envelope.id,
            message_type=reply.kind,
            detail=_reply_detail(reply),
        )
        notice = instance.pending_command_id
        if (
            instance.status.terminal
            and notice is not None
            and envelope.causation_id == notice
            and envelope.saga_step == NOTICE_STEP
        ):
            return self._on_notice_reply(instance, reply, now, replace(received, step=NOTICE_STEP))
        if (
            instance.status.terminal
            or step is None
            or not self._answers(instance, step, reply, envelope, answered)
        ):
            late = self._late_effect(instance, reply, envelope.saga_step)
            ignored = HistoryEntry(
                "late-effect" if late else "reply-ignored",
                instance.status,
                now,
                step=envelope.saga_step,
                message_id=envelope.id,
                message_type=reply.kind,
                detail=(
                    f"{envelope.saga_step} ran after the saga was rolled back, and nothing "
                    "undoes it: settle it by hand"
                    if late
                    else _why_ignored(instance, step, reply, envelope)
                ),
            )
            return Decision(instance, history=[ignored])
        if instance.compensating:
            decision = self._on_compensation_reply(instance, step, reply, now, [received])
        else:
            decision = self._on_forward_reply(instance, step, reply, now, [received])
        return decision.caused_by(envelope.id)

    def _answers(
        self,
        instance: SagaInstance,
        step: Step[Any],
        reply: Reply,
        envelope: Envelope,
        answered: SentCommand | None,
    ) -> bool:
        """Whether ``reply`` answers the step the saga is at: named for this saga type and
        step (a reply carries its command's), of the step's direction (a forward step is not
        compensated), and to the attempt awaited or to an earlier one that it settles
        (``_settles``). A reply of a buggy participant, or forged, that answers the command
        awaited but names another step would otherwise complete it (an order shipped as
        paid)."""
        if envelope.saga_step != step.name or envelope.saga_type != instance.saga_type:
            return False
        if isinstance(reply, Compensated) and not instance.compensating:
            return False
        awaited = instance.pending_command_id
        return (awaited is not None and envelope.causation_id == awaited) or self._settles(
            instance, step, reply, answered
        )

    @staticmethod
    def _settles(
        instance: SagaInstance, step: Step[Any], reply: Reply, answered: SentCommand | None
    ) -> bool:
        """Whether ``reply``, to an earlier attempt of the step the saga is at (one that timed
        out before its answer came), settles the step as the awaited attempt's answer would:
        the step done (or, compensating, undone) is done whichever attempt did it, so a
        participant slower than the step's timeout still moves the saga on. A refusal does
        not: a participant may answer a later attempt otherwise (a handler's error is not
        recorded, the next attempt runs the step afresh), and rolling back on the earlier
        refusal could leave the later attempt's effect behind. The attempt must be one the
        saga's history has: sent for this step, in this direction."""
        if answered != SentCommand(step.name, instance.compensating):
            return False
        if isinstance(reply, StepFailed):
            return False
        return isinstance(reply, Compensated) == instance.compensating

    def _late_effect(self, instance: SagaInstance, reply: Reply, step_name: str | None) -> bool:
        """Whether ``reply`` says a step nothing undoes ran in a saga rolled back around it
        (an orchestrator of an older release gave it up on a timeout, say): its effect stands,
        and only an operator can settle it."""
        if isinstance(reply, StepFailed | Compensated) or not (
            instance.compensating or instance.status in (SagaStatus.ABORTED, SagaStatus.FAILED)
        ):
            return False
        step = next((s for s in self.definition.steps if s.name == step_name), None)
        return step is not None and step.may_outlive_rollback

    def on_due(self, instance: SagaInstance, now: datetime) -> Decision:
        """A timer fired: a step timed out, or a scheduled retry is due."""
        if instance.status is SagaStatus.ABORTED and instance.pending_command_id is None:
            return self._notice_again(instance, now)
        if instance.status.terminal:
            return Decision(instance.evolve(next_action_at=None))
        here = self._here(instance)  # raises for no step: put off, and said, by the caller
        step = self.definition.steps[here]
        if instance.pending_command_id is None:
            return self._send(instance, here, instance.compensating, now, [], retry=True)
        timed_out = HistoryEntry(
            "timeout",
            instance.status,
            now,
            step=step.name,
            detail=f"no reply to {instance.pending_command_id}",
        )
        if instance.compensating or step.retriable or not step.undoable:
            decision = self._retry_or_fail(
                instance, step, now, [timed_out], TIMEOUT, unanswered=True
            )
        else:
            decision = self._compensate_from(instance, here, TIMEOUT, now, [timed_out])
        return decision.caused_by(instance.pending_command_id)

    def wait_for_participant(
        self, instance: SagaInstance, now: datetime, taken: bool, noted: bool
    ) -> Decision:
        """A step's answer is late, and its participant had not taken the command (down, or
        behind): the step's timeout counts from when it takes it (``orchestrator.engine.
        waiting``). ``taken``: it has now; ``noted``: the wait is in the history already."""
        step = self._step(instance)
        if step is None or instance.pending_command_id is None:
            return self.on_due(instance, now)
        if taken:
            timeout = step.timeout_s or self.policy.step_timeout_s
            entry = HistoryEntry(
                "command-taken",
                instance.status,
                now,
                step=step.name,
                message_id=instance.pending_command_id,
                detail=f"{step.participant.name} took the command; its answer is due in "
                f"{timeout:g} s",
            )
            later = now + timedelta(seconds=timeout)
            return Decision(instance.evolve(next_action_at=later), history=[entry])
        history = (
            []
            if noted
            else [
                HistoryEntry(
                    "command-queued",
                    instance.status,
                    now,
                    step=step.name,
                    message_id=instance.pending_command_id,
                    detail=f"{step.participant.name} has not taken the command yet (down, or "
                    "behind): the step's timeout counts from when it does",
                )
            ]
        )
        return Decision(instance.evolve(next_action_at=now + POLL), history=history)

    def put_off(self, instance: SagaInstance, now: datetime, error: str) -> Decision:
        """A timer whose decision raised: the saga stays as it is (``updated_at`` too: its last
        progress), with the error in its history, and is due again after as long as it has been
        stuck, between ``PUT_OFF`` and ``PUT_OFF_MAX``, so a saga that keeps failing is tried
        less and less often; the other due sagas go on."""
        step = self._step(instance)
        failed = HistoryEntry(
            "timer-failed",
            instance.status,
            now,
            step=step.name if step else None,
            detail=error,
        )
        stuck = now - instance.updated_at
        later = now + min(max(stuck, PUT_OFF), PUT_OFF_MAX)
        return Decision(instance.evolve(next_action_at=later), history=[failed])

    def retry_step(self, instance: SagaInstance, now: datetime, actor: str, why: str) -> Decision:
        """Manual: re-send the current step (forward or compensation) with a fresh budget."""
        note = HistoryEntry("manual-retry", instance.status, now, detail=why, actor=actor)
        if instance.status == SagaStatus.FAILED:  # ``ended_at`` kept: its record went out
            revived = instance.evolve(status=SagaStatus.COMPENSATING, attempt=0)
            return self._send(revived, self._here(revived), True, now, [note])
        if instance.status.terminal:
            raise SagaRefused(f"saga {instance.id} is {instance.status}; nothing to retry")
        return self._send(
            instance.evolve(attempt=0), self._here(instance), instance.compensating, now, [note]
        )

    def compensate(self, instance: SagaInstance, now: datetime, actor: str, why: str) -> Decision:
        """Manual: roll a running saga back from its current step."""
        if instance.status.terminal or instance.compensating:
            raise SagaRefused(f"saga {instance.id} is {instance.status}; cannot start compensation")
        step = self._step(instance)
        if step is not None and step.retriable:
            raise SagaRefused(
                f"saga {instance.id} is past its point of no return (step {step.name}); "
                "it can only be retried"
            )
        if step is not None and not step.undoable:
            raise SagaRefused(
                f"saga {instance.id} waits on step {step.name}, which may have run and which "
                "nothing undoes: rolling back now could leave its effect behind; wait for "
                f"{step.participant.name}'s answer (sagas retry sends the step again)"
            )
        note = HistoryEntry("manual-compensate", instance.status, now, detail=why, actor=actor)
        return self._compensate_from(instance, self._here(instance), "MANUAL", now, [note])

    # -- transitions ----------------------------------------------------------------------

    def _on_forward_reply(
        self,
        instance: SagaInstance,
        step: Step[Any],
        reply: Reply,
        now: datetime,
        history: list[HistoryEntry],
    ) -> Decision:
        if isinstance(reply, StepFailed):
            if reply.retryable or step.retriable or reply.reason in step.rechecked:
                reason = TIMEOUT if reply.retryable else reply.reason
                return self._retry_or_fail(
                    instance, step, now, history, reason, refused=not reply.retryable
                )
            history.append(
                HistoryEntry(
                    "step-failed", instance.status, now, step=step.name, detail=reply.reason
                )
            )
            return self._compensate_from(
                instance, self._here(instance) - 1, reply.reason, now, history
            )
        state = self._state(instance)
        if step.on_success is not None:
            try:
                state = step.on_success(state, reply)
            except (AssertionError, ValueError, TypeError) as exc:
                detail = f"{reply.kind} does not answer {step.name}: {exc}"[:300]
                history.append(
                    HistoryEntry(
                        "reply-rejected", instance.status, now, step=step.name, detail=detail
                    )
                )
                return self._compensate_from(
                    instance, self._here(instance), UNEXPECTED_REPLY, now, history
                )
        instance = instance.evolve(data=state.model_dump(mode="json"), attempt=0)
        history.append(HistoryEntry("step-completed", instance.status, now, step=step.name))
        following = self._next_applicable(state, self._here(instance) + 1)
        if following is None:
            return self._finish(instance, SagaStatus.COMPLETED, None, now, history, state)
        return self._send(instance, following, False, now, history, state=state)

    def _on_compensation_reply(
        self,
        instance: SagaInstance,
        step: Step[Any],
        reply: Reply,
        now: datetime,
        history: list[HistoryEntry],
    ) -> Decision:
        if not isinstance(reply, Compensated):
            detail = reply.reason if isinstance(reply, StepFailed) else f"unexpected {reply.kind}"
            history.append(
                HistoryEntry(
                    "compensation-failed", instance.status, now, step=step.name, detail=detail
                )
            )
            return self._retry_or_fail(instance, step, now, history, instance.reason or FAILED)
        history.append(HistoryEntry("compensated", instance.status, now, step=step.name))
        return self._compensate_from(
            instance.evolve(attempt=0), self._here(instance) - 1, instance.reason, now, history
        )

    def _compensate_from(
        self,
        instance: SagaInstance,
        index: int,
        reason: str | None,
        now: datetime,
        history: list[HistoryEntry],
    ) -> Decision:
        """Compensate the highest step at or below ``index`` that ran and has a compensation."""
        state = self._state(instance)
        for candidate in range(index, -1, -1):
            step = self.definition.steps[candidate]
            if step.compensate is not None and step.applies(state):
                instance = instance.evolve(
                    status=SagaStatus.COMPENSATING, compensating=True, reason=reason, attempt=0
                )
                return self._send(instance, candidate, True, now, history, state=state)
        return self._finish(
            instance.evolve(reason=reason), SagaStatus.ABORTED, reason, now, history, state
        )

    def _retry_or_fail(
        self,
        instance: SagaInstance,
        step: Step[Any],
        now: datetime,
        history: list[HistoryEntry],
        reason: str,
        unanswered: bool = False,
        refused: bool = False,
    ) -> Decision:
        """Schedule the step again, or give up on it. A forward step is never given up on
        while its outcome is unknown (``unanswered``: it timed out) and nothing would undo it:
        it may have run, so it is re-sent until its participant answers, done or refused. A
        retriable step its participant keeps ``refused`` (not for now) past the budget is
        sent again ever less often (``RetryPolicy.slowed``)."""
        attempt = instance.attempt + 1
        forward_budget = step.retries if step.retries is not None else self.policy.budget
        budget = self.policy.budget if instance.compensating else forward_budget
        endless = step.retriable or (unanswered and not step.undoable)
        if attempt <= budget or (endless and not instance.compensating):
            if refused and attempt > budget:
                return self._slowed(instance, step.name, attempt, budget, reason, now, history)
            return self._scheduled(instance, step.name, attempt, now, history)
        if instance.compensating:
            history.append(HistoryEntry("retry-budget-spent", instance.status, now, step=step.name))
            return self._finish(
                instance, SagaStatus.FAILED, instance.reason or reason, now, history
            )
        history.append(
            HistoryEntry("step-failed", instance.status, now, step=step.name, detail=reason)
        )
        return self._compensate_from(
            instance.evolve(attempt=0), self._here(instance), reason, now, history
        )

    def _send(
        self,
        instance: SagaInstance,
        index: int,
        compensating: bool,
        now: datetime,
        history: list[HistoryEntry],
        retry: bool = False,
        state: BaseModel | None = None,
    ) -> Decision:
        """Send the step at place ``index`` in the order (or its compensation); ``state``:
        the instance's data, already read, if the caller has it."""
        step = self.definition.steps[index]
        if state is None:
            state = self._state(instance)
        build = step.compensate if compensating else step.send
        assert build is not None
        command: Command = build(state)
        envelope = self._envelope(
            instance,
            f"{step.participant.name}.{command.kind}.v1",
            now,
            step.name,
            causation_id=instance.pending_command_id,
        )
        command_id = envelope.id
        timeout = step.timeout_s or self.policy.step_timeout_s
        instance = instance.evolve(
            step_index=step.slot,
            compensating=compensating,
            pending_command_id=command_id,
            next_action_at=now + timedelta(seconds=timeout),
            updated_at=now,
        )
        event = "compensation-sent" if compensating else "command-sent"
        history.append(
            HistoryEntry(
                event,
                instance.status,
                now,
                step=step.name,
                message_id=command_id,
                message_type=command.kind,
                topic=step.participant.topic,
                detail=f"attempt {instance.attempt}" if retry else None,
            )
        )
        outgoing = Outgoing(step.participant.topic, str(instance.id), envelope, command)
        return Decision(instance, [outgoing], history)

    def _finish(
        self,
        instance: SagaInstance,
        status: SagaStatus,
        reason: str | None,
        now: datetime,
        history: list[HistoryEntry],
        state: BaseModel | None = None,
    ) -> Decision:
        contract_status = {
            SagaStatus.COMPLETED: self.definition.success_status,
            SagaStatus.ABORTED: self.definition.failure_status,
            SagaStatus.FAILED: FAILED,
        }[status]
        failed_again = status is SagaStatus.FAILED and instance.ended_at is not None
        instance = instance.evolve(
            status=status,
            reason=reason,
            pending_command_id=None,
            next_action_at=None,
            updated_at=now,
            ended_at=now,
        )
        if failed_again:  # an operator's retry of a FAILED saga failed: upstream knows
            detail = f"{reason}; its FAILED record went out before"
            history.append(HistoryEntry("failed-again", status, now, detail=detail))
            return Decision(instance, [], history)
        if state is None:
            state = self._state(instance)
        result = SagaResult(str(instance.id), contract_status, reason)
        outcome = self.definition.outcome(state, result)
        envelope = self._envelope(instance, f"{self.definition.outcome_topic}.v1", now)
        history.append(
            HistoryEntry(
                "ended",
                status,
                now,
                message_id=envelope.id,
                message_type=contract_status,
                topic=self.definition.outcome_topic,
                detail=reason,
            )
        )
        key = self.definition.outcome_key(state)
        outgoing = [Outgoing(self.definition.outcome_topic, key, envelope, outcome)]
        if status is SagaStatus.ABORTED:
            instance, notice = self._notice(instance.evolve(attempt=0), state, now, history)
            outgoing += notice
        return Decision(instance, outgoing, history)

    def _notice(
        self,
        instance: SagaInstance,
        state: BaseModel,
        now: datetime,
        history: list[HistoryEntry],
    ) -> tuple[SagaInstance, list[Outgoing]]:
        """The failure notice the definition names, if any, sent with the outcome (or again,
        after its participant could not deliver it for now): the ended saga awaits its answer
        (``_on_notice_reply``), with no timeout, as nothing else waits for it."""
        notice = self.definition.on_failure
        result = SagaResult(str(instance.id), self.definition.failure_status, instance.reason)
        command = notice.send(state, result) if notice is not None else None
        if notice is None or command is None:
            return instance, []
        envelope = self._envelope(
            instance, f"{notice.participant.name}.{command.kind}.v1", now, NOTICE_STEP
        )
        history.append(
            HistoryEntry(
                "notice-sent",
                instance.status,
                now,
                step=NOTICE_STEP,
                message_id=envelope.id,
                message_type=command.kind,
                topic=notice.participant.topic,
                detail=f"attempt {instance.attempt}" if instance.attempt else None,
            )
        )
        awaiting = instance.evolve(pending_command_id=envelope.id, next_action_at=None)
        return awaiting, [Outgoing(notice.participant.topic, str(instance.id), envelope, command)]

    def _notice_again(self, instance: SagaInstance, now: datetime) -> Decision:
        """An ended saga's notice due again. One its saga's code can no longer build (data
        or definition changed since) is given up on, said in the history, not put off."""
        history: list[HistoryEntry] = []
        try:
            resent, notice = self._notice(instance, self._state(instance), now, history)
        except Exception as exc:
            given_up = HistoryEntry(
                "notice-undelivered",
                instance.status,
                now,
                step=NOTICE_STEP,
                detail=f"its saga's code could not build it again: {error_of(exc)}",
            )
            return Decision(instance.evolve(next_action_at=None), history=[given_up])
        if not notice:  # its definition names no notice for it (any more): nothing is due
            return Decision(instance.evolve(next_action_at=None))
        return Decision(resent, notice, history)

    def _on_notice_reply(
        self, instance: SagaInstance, reply: Reply, now: datetime, received: HistoryEntry
    ) -> Decision:
        """The answer to an ended saga's failure notice. One its participant could not
        deliver for now (its channel down) is sent again with backoff, within the retry
        budget; the saga's outcome stands whatever the notice's fate."""
        history = [received]
        attempt = instance.attempt + 1
        if not (isinstance(reply, StepFailed) and reply.retryable):
            return Decision(instance.evolve(pending_command_id=None), history=history)
        if attempt > self.policy.budget:
            history.append(
                HistoryEntry(
                    "notice-undelivered",
                    instance.status,
                    now,
                    step=NOTICE_STEP,
                    detail=f"{reply.reason} after {instance.attempt + 1} attempts: {reply.detail}",
                )
            )
            return Decision(instance.evolve(pending_command_id=None), history=history)
        return self._scheduled(instance, NOTICE_STEP, attempt, now, history)

    def _slowed(
        self,
        instance: SagaInstance,
        step: str,
        attempt: int,
        budget: int,
        reason: str,
        now: datetime,
        history: list[HistoryEntry],
    ) -> Decision:
        """A step retried until it succeeds, refused past its ``budget``: said, and sent
        again after ``RetryPolicy.slowed``."""
        wait = self.policy.slowed(attempt, budget)
        history.append(
            HistoryEntry(
                "retries-slowed",
                instance.status,
                now,
                step=step,
                detail=f"{reason} at attempt {attempt - 1}: the next in {wait}, ever less often "
                f"(up to every {PUT_OFF_MAX.total_seconds() / 3600:g} h) until it succeeds; "
                "sagas retry sends it at once",
            )
        )
        return self._scheduled(instance, step, attempt, now, history, wait=wait)

    def _scheduled(
        self,
        instance: SagaInstance,
        step: str,
        attempt: int,
        now: datetime,
        history: list[HistoryEntry],
        wait: timedelta | None = None,
    ) -> Decision:
        """``step`` sent again, as ``attempt``, after ``wait`` (the policy's backoff)."""
        due = now + (wait if wait is not None else self.policy.backoff(attempt))
        detail = f"attempt {attempt} at {due.isoformat()}"
        history.append(HistoryEntry("retry-scheduled", instance.status, now, step, detail=detail))
        scheduled = instance.evolve(
            attempt=attempt, pending_command_id=None, next_action_at=due, updated_at=now
        )
        return Decision(scheduled, history=history)

    @staticmethod
    def _envelope(
        instance: SagaInstance,
        type_: str,
        now: datetime,
        step: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        """The envelope of a message the saga sends: a command, a notice or its outcome."""
        return Envelope(
            type=type_,
            time=now,
            correlation_id=instance.correlation_id,
            causation_id=causation_id,
            saga_id=instance.id,
            saga_type=instance.saga_type,
            saga_step=step,
        )

    # -- helpers --------------------------------------------------------------------------

    def _step(self, instance: SagaInstance) -> Step[Any] | None:
        return self.definition.step_at(instance.step_index)

    def _here(self, instance: SagaInstance) -> int:
        """The place in the order of the step the saga is at (recorded by its slot)."""
        place = self.definition.position(instance.step_index)
        if place is None:
            raise DefinitionError(
                f"saga {instance.id} is at step {instance.step_index}, but {instance.saga_type} "
                "has no step there (one removed from its definition?)"
            )
        return place

    def _next_applicable(self, state: BaseModel, start: int) -> int | None:
        for index in range(start, len(self.definition.steps)):
            if self.definition.steps[index].applies(state):
                return index
        return None

    def _state(self, instance: SagaInstance) -> BaseModel:
        state: BaseModel = self.definition.state.model_validate(instance.data)
        return state


def _why_ignored(
    instance: SagaInstance, step: Step[Any] | None, reply: Reply, envelope: Envelope
) -> str:
    """What a reply that moves nothing is, for the saga's history."""
    named = f"{envelope.saga_type}/{envelope.saga_step}"
    if instance.status.terminal:
        return f"the saga has ended ({instance.status}); answers {named} {envelope.causation_id}"
    if step is None:
        return f"the saga is at no step of its definition; answers {named}"
    if named != f"{instance.saga_type}/{step.name}":
        return f"names {named}; the saga is at {instance.saga_type}/{step.name}"
    if isinstance(reply, Compensated) and not instance.compensating:
        return f"compensates {step.name}, which the saga is running forward"
    return (
        f"answers {envelope.causation_id}, neither the command awaited "
        f"({instance.pending_command_id}) nor an earlier attempt of {step.name} it settles"
    )


def _reply_detail(reply: Reply) -> str | None:
    if isinstance(reply, StepFailed):
        return f"{reply.reason}: {reply.detail}" if reply.detail else reply.reason
    return None
