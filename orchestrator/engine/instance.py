"""A saga instance as the engine sees it: one row of ``saga_instances``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.ABORTED, SagaStatus.FAILED)


@dataclass(frozen=True)
class SagaInstance:
    id: UUID
    saga_type: str
    business_key: str
    status: SagaStatus
    step_index: int
    compensating: bool
    pending_command_id: str | None
    attempt: int
    next_action_at: datetime | None
    data: dict[str, Any]
    reason: str | None
    correlation_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    """When the saga last ended; kept while an operator's retry revives a FAILED saga, whose
    terminal record went out (failing again publishes no second one)."""
    request_digest: str | None = None
    """The ``content_digest`` of the record that started the saga (None: a saga an earlier
    release started), to tell a repeat of it from another request under its key."""

    def evolve(self, **changes: Any) -> SagaInstance:
        """A copy with ``changes``; dataclasses.replace, without its per-call introspection
        (a saga's reply evolves its instance several times)."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"SagaInstance has no field {sorted(unknown)}")
        copy = object.__new__(SagaInstance)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


_FIELDS = frozenset(f.name for f in fields(SagaInstance))


@dataclass(frozen=True)
class SentCommand:
    """A command a saga sent, as its history has it: of which step, and whether it was that
    step's compensation."""

    step: str | None
    compensation: bool
