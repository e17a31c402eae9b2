"""The counters an alert watches exist at 0 from the start, for every series they count: an
alert on ``increase(...) > 0`` would miss the first increase of a series born at 1."""

from __future__ import annotations

from orchestrator import metrics
from orchestrator.sagas import ALL_SAGAS


def test_every_watched_series_starts_at_zero() -> None:
    metrics.declare(ALL_SAGAS)

    def value(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, labels)

    for saga in ALL_SAGAS:
        assert value("orchestra_saga_timer_failures_total", saga_type=saga.name) is not None
        for step in saga.steps:
            queued = value("orchestra_steps_queued_total", saga_type=saga.name, step=step.name)
            assert queued is not None, (saga.name, step.name)
    late = {
        (saga.name, step.name)
        for saga in ALL_SAGAS
        for step in saga.steps
        if value("orchestra_late_effects_total", saga_type=saga.name, step=step.name) is not None
    }
    assert ("wallet-topup", "credit-wallet") in late
    assert ("order-checkout", "charge-bank") not in late  # undone by its refund
    assert value("orchestra_notices_undelivered_total", saga_type="wallet-topup") is not None
