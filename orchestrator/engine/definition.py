"""Declarative saga definitions: an ordered list of steps, each with its action and compensation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from events.base import Command, Outcome, Reply, UpstreamRecord
from orchestrator.errors import DefinitionError


class SagaState(BaseModel):
    """A saga's data, kept in its row. Members it does not know are ignored when it is read,
    so an orchestrator rolled back to an earlier release still reads a saga that a later one,
    whose definition added a member, wrote (and writes it back without that member). The
    releases before 2026-11-28 refused them: a member added for them goes inside a part whose
    model already ignored unknown members (``order_checkout.BookedDelivery``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


S = TypeVar("S", bound=SagaState)
R = TypeVar("R", bound=UpstreamRecord)


@dataclass(frozen=True)
class Participant:
    """A worker service and the topic it takes commands on."""

    name: str
    topic: str


@dataclass(frozen=True)
class SagaResult:
    """How a saga ended, handed to the definition to build its outcome record."""

    saga_id: str
    status: str  # the contract status: e.g. ISSUED, REJECTED, FAILED
    reason: str | None


@dataclass(frozen=True)
class Step(Generic[S]):
    """One step. ``when`` skips it for sagas it does not apply to (it must depend only on
    data fixed at start); a ``retriable`` step comes after the point of no return: it is
    retried until it succeeds and never compensated. A step with neither a compensation nor
    ``reads_only`` (it changes nothing: a check) is not given up on while it may have run.
    ``slot`` is where a saga at this step is recorded (``Saga.step``), not its place in the
    order. A refusal whose reason is ``rechecked`` may not hold for long (a client whose
    registration is still on its way is not known yet): the step asks again with backoff,
    within its retries, and the refusal stands only if it is still the answer then."""

    name: str
    participant: Participant
    send: Callable[[S], Command]
    compensate: Callable[[S], Command] | None = None
    on_success: Callable[[S, Reply], S] | None = None
    timeout_s: float | None = None
    retries: int | None = None
    when: Callable[[S], bool] | None = None
    retriable: bool = False
    reads_only: bool = False
    slot: int = 0
    rechecked: frozenset[str] = frozenset()

    def applies(self, state: S) -> bool:
        return self.when is None or self.when(state)

    @property
    def undoable(self) -> bool:
        """Whether the saga may be rolled back while this step's command is out: its effect,
        if it ran, is undone (or it has none)."""
        return self.compensate is not None or self.reads_only

    @property
    def may_outlive_rollback(self) -> bool:
        """Whether this step may have run in a saga rolled back around it with nothing to
        undo it: neither undoable nor retried until done (an older orchestrator gave it up)."""
        return not (self.undoable or self.retriable)


NAME_CHARS = 64
"""The longest saga type or step name: what ``saga_instances`` and ``saga_history`` hold."""

NOTICE_STEP = "notify-result"
"""The step name of a notice: one per saga, so a worker handles it once."""


@dataclass(frozen=True)
class Notice(Generic[S]):
    """A command sent, without awaiting its answer, when a saga has failed: the client told
    of the result once every compensation ran (seed 003: the payment result, either way).
    ``send`` returns None when there is nobody to tell."""

    participant: Participant
    send: Callable[[S, SagaResult], Command | None]


@dataclass
class Saga(Generic[S, R]):
    """A saga type: what starts it, its steps in order, and how its outcome reads.

    ``state`` is the saga's data (a pydantic model persisted with the instance); each
    step builds its command from it and folds its success reply back into it.

    A saga is recorded at its step's slot, the order the steps were declared in, so a
    definition may change under sagas in flight: a step added later is declared after the
    others (``before=`` places it in the order) and takes a slot of its own, and a saga
    recorded at a step is still at it. A step is never removed nor renamed while sagas may
    be at it (``SagaMachine.on_due`` refuses a saga at a slot its definition lacks).
    """

    name: str
    state: type[S]
    trigger: type[R]
    inbound_topic: str
    outcome_topic: str
    begin: Callable[[R], S]
    outcome: Callable[[S, SagaResult], Outcome]
    outcome_key: Callable[[S], str]
    success_status: str
    failure_status: str
    steps: tuple[Step[S], ...] = field(default_factory=tuple, init=False)
    """Added by ``step``, which checks each and gives it its slot."""
    on_failure: Notice[S] | None = field(default=None, init=False)
    refusal: Callable[[S], str | None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= NAME_CHARS:
            raise DefinitionError(f"saga name {self.name[:80]!r}: 1 to {NAME_CHARS} characters")

    def refuse(self, why: Callable[[S], str | None]) -> Saga[S, R]:
        """Before any step, end the saga failed with the reason ``why`` gives, if it gives
        one: what is known at the start not to succeed runs no step only to undo it."""
        self.refusal = why
        return self

    def notify_failure(
        self, participant: Participant, send: Callable[[S, SagaResult], Command | None]
    ) -> Saga[S, R]:
        """On a failure outcome, also send this command (see ``Notice``)."""
        self.on_failure = Notice(participant, send)
        return self

    def step(
        self,
        name: str,
        participant: Participant,
        *,
        send: Callable[[S], Command],
        compensate: Callable[[S], Command] | None = None,
        on_success: Callable[[S, Reply], S] | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
        when: Callable[[S], bool] | None = None,
        retriable: bool = False,
        reads_only: bool = False,
        recheck: Iterable[str] = (),
        before: str | None = None,
    ) -> Saga[S, R]:
        """Add a step, last in the order or ``before`` the step so named: one added to a
        saga type with sagas in flight goes where it belongs with ``before``, as sagas
        already past its place never run it, those before it do. Its compensation, if any,
        may then be sent for a saga that never ran it, which its participant answers as it
        does a compensation that overtook its action."""
        if any(existing.name == name for existing in self.steps):
            raise DefinitionError(f"saga {self.name!r} already has a step {name!r}")
        if not 0 < len(name) <= NAME_CHARS:
            raise DefinitionError(f"step name {name[:80]!r}: 1 to {NAME_CHARS} characters")
        if name == NOTICE_STEP:
            raise DefinitionError(f"{NOTICE_STEP!r} is the failure notice's step name")
        if retriable and compensate is not None:
            raise DefinitionError(f"step {name!r} is retriable: it cannot have a compensation")
        if reads_only and compensate is not None:
            raise DefinitionError(f"step {name!r} reads only: it has nothing to compensate")
        rechecked = frozenset(recheck)
        if rechecked and not reads_only:
            raise DefinitionError(
                f"step {name!r} rechecks a refusal: only a step that reads only may be asked "
                "again (a participant answers a step that acts by what it recorded the first time)"
            )
        place = self._place(before)
        if not retriable and any(existing.retriable for existing in self.steps[:place]):
            raise DefinitionError(
                f"step {name!r} follows a retriable step: only retriable steps may come "
                "after the point of no return"
            )
        if retriable and not all(later.retriable for later in self.steps[place:]):
            raise DefinitionError(
                f"step {name!r} is retriable: it cannot come before {before!r}, which is not"
            )
        new_step = Step(
            name,
            participant,
            send,
            compensate,
            on_success,
            timeout_s,
            retries,
            when,
            retriable,
            reads_only,
            slot=len(self.steps),
            rechecked=rechecked,
        )
        pivot = next((s.name for s in self.steps[:place] if s.may_outlive_rollback), None)
        if pivot is not None and not retriable:
            raise DefinitionError(
                f"step {name!r} follows {pivot!r}, which nothing undoes: a refusal after it "
                "would roll the saga back past its effect; only retriable steps may follow it"
            )
        if new_step.may_outlive_rollback and not all(s.retriable for s in self.steps[place:]):
            raise DefinitionError(
                f"step {name!r} is undone by nothing: it cannot come before {before!r}, "
                "which is not retriable"
            )
        self.steps = (*self.steps[:place], new_step, *self.steps[place:])
        return self

    def _place(self, before: str | None) -> int:
        """Where a new step goes in the order: last, or at the step named ``before``."""
        if before is None:
            return len(self.steps)
        for place, step in enumerate(self.steps):
            if step.name == before:
                return place
        raise DefinitionError(f"saga {self.name!r} has no step {before!r} to add a step before")

    def position(self, slot: int) -> int | None:
        """The place in the order of the step recorded at ``slot``; None if there is none."""
        for place, step in enumerate(self.steps):
            if step.slot == slot:
                return place
        return None

    def step_at(self, slot: int) -> Step[S] | None:
        """The step recorded at ``slot``, if the definition has one."""
        place = self.position(slot)
        return self.steps[place] if place is not None else None

    @property
    def participants(self) -> frozenset[Participant]:
        notified = {self.on_failure.participant} if self.on_failure is not None else set()
        return frozenset({step.participant for step in self.steps} | notified)
