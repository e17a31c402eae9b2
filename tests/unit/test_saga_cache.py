"""The orchestrator's cache of the sagas it wrote: bounded, and without ended sagas."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from orchestrator.engine.instance import SagaInstance, SagaStatus
from orchestrator.engine.saga_cache import SagaCache

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def saga(status: SagaStatus = SagaStatus.RUNNING, version: int = 0) -> SagaInstance:
    return SagaInstance(
        id=uuid4(),
        saga_type="t",
        business_key=str(uuid4()),
        status=status,
        step_index=0,
        compensating=False,
        pending_command_id=None,
        attempt=0,
        next_action_at=None,
        data={},
        reason=None,
        correlation_id=None,
        version=version,
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_written_saga_is_served_with_its_latest_version_until_it_ends() -> None:
    cache = SagaCache()
    first = saga()
    cache.written([first])
    moved = first.evolve(version=1, step_index=1)
    cache.written([moved])
    assert cache.get([first.id]) == {first.id: moved}
    cache.written([moved.evolve(version=2, status=SagaStatus.COMPLETED)])
    assert cache.get([first.id]) == {}


def test_the_least_recently_written_leave_past_the_capacity() -> None:
    cache = SagaCache(capacity=2)
    a, b, c = saga(), saga(), saga()
    cache.written([a, b])
    cache.written([a.evolve(version=1)])
    cache.written([c])
    assert len(cache) == 2
    assert set(cache.get([a.id, b.id, c.id])) == {a.id, c.id}


def test_forgotten_sagas_are_read_again() -> None:
    cache = SagaCache()
    a = saga()
    cache.written([a])
    cache.forget([a.id, uuid4()])
    assert cache.get([a.id]) == {}
