"""Steps whose participant has not taken their command yet.

A step's timeout judges the participant: how long it takes to answer a command it has.
While the participant is down, or behind (its consumer group short of the command), the
command waits in its topic and the timeout would roll back sagas that nothing went wrong
with (Temporal calls that wait "schedule to start", and does not count it against the
step). So when a step's answer is late, the orchestrator first asks the broker whether
the participant has reached the command; if not, the saga waits on, looking again every
few seconds, and the step's timeout counts from when it has. A participant that never
consumed the topic (never deployed) is not waited for, and no step waits longer than
``ORCHESTRA_STEP_QUEUE_TIMEOUT_S`` in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from orchestrator.engine.instance import SagaInstance

POLL = timedelta(seconds=5)
"""How often a saga waiting for its participant to take the command looks again."""


@dataclass(frozen=True)
class Awaiting:
    """A saga whose step's answer is late: its command, where and when it was sent, and what
    its history says of the wait so far."""

    saga_id: UUID
    command_id: str
    topic: str
    participant: str
    sent_at: datetime
    queued: bool
    """Its history has that the participant had not taken the command (``command-queued``)."""
    taken: bool
    """...and that it has taken it since (``command-taken``)."""
    due_at: datetime | None = None
    """When the step's answer was due."""


class TakenCheck(Protocol):
    async def untaken(self, awaiting: Sequence[Awaiting]) -> set[UUID]:
        """The sagas whose participant has certainly not taken the command yet; none when
        the broker cannot tell (the steps then time out as they would without it)."""
        ...

    async def replies_behind(self, late: Sequence[Awaiting], now: datetime) -> set[UUID]:
        """The late sagas an answer may still be on its way to: the orchestrators have not
        yet handled every reply that was in their topic a little after the step was due (a
        participant that answered in time to an orchestrator paused, or in a rebalance, or
        answered as its step fell due). None when the broker cannot tell."""
        ...


@dataclass(frozen=True)
class Wait:
    """What the timer does with a late step instead of timing it out."""

    command_id: str
    taken: bool
    """The participant took the command after the saga waited for it: the step's timeout
    counts from now. Else it has not yet: look again in ``POLL``."""
    noted: bool
    """The wait is in the saga's history already."""


def waits(awaiting: Sequence[Awaiting], untaken: set[UUID]) -> dict[UUID, Wait]:
    """The late steps to wait for rather than time out."""
    found: dict[UUID, Wait] = {}
    for a in awaiting:
        if a.saga_id in untaken:
            found[a.saga_id] = Wait(a.command_id, taken=False, noted=a.queued)
        elif a.queued and not a.taken:
            found[a.saga_id] = Wait(a.command_id, taken=True, noted=True)
    return found


@dataclass(frozen=True)
class Waiting:
    """What a timer tick learnt before it locked the due sagas: the late steps it looked at
    (as of ``at``) and those of them that wait."""

    at: datetime
    late: set[UUID]
    waits: dict[UUID, Wait]

    def looked_at(self, saga: SagaInstance) -> bool:
        """Whether the tick asked about this due saga, if it is one whose answer is late: one
        late since (or beyond the tick's limit, or locked by another process meanwhile) is
        left for the next tick, which asks about it, rather than timed out unasked."""
        return saga.pending_command_id is None or saga.id in self.late
