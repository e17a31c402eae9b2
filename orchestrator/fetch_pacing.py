"""Fetch pacing: a consumer's fetch wait follows its traffic (for brokers that answer late).

Apache Kafka answers a waiting fetch as soon as a record arrives, so a long wait costs
nothing there and pacing is off. The embedded broker (Tansu) answers only when it next
looks, a fraction of the wait later, on every hop of every saga. A short wait makes a
lone saga fast but has every idle consumer poll the broker hundreds of times a second,
and under load it cuts batches small. So: short while batches are small (a few sagas in
flight, where latency is what shows), long when batches are large (under load a batch is
waiting at every fetch anyway) and long again when the consumer is idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FetchPacing:
    quick_ms: int
    """Wait while batches are small."""
    steady_ms: int
    """Wait under load and when idle."""
    small_batch: int = 1
    """Batches of at most this many records count as small."""

    def after_batch(self, consumer: Any, records: int) -> None:
        self._set(consumer, self.quick_ms if records <= self.small_batch else self.steady_ms)

    def after_idle(self, consumer: Any) -> None:
        self._set(consumer, self.steady_ms)

    @staticmethod
    def _set(consumer: Any, wait_ms: int) -> None:
        # aiokafka reads the wait each time it builds a fetch request; it has no setter
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
            fetcher._fetch_max_wait_ms = wait_ms
