"""Fetch pacing: a consumer's fetch wait follows its traffic (for brokers that answer late).

Apache Kafka answers a waiting fetch as soon as a record arrives, so a long wait costs
nothing there and pacing is off. The embedded broker (Tansu) answers only when it next
looks: when the fetch arrives, then after half the wait, three quarters, and so on. A record
that lands just after the first look waits half the wait, on every hop of every saga, while
a short wait has every idle consumer poll the broker hundreds of times a second. So the
wait follows what the consumer last saw:

- after a one-record batch (a lone saga: its next record comes within milliseconds), the
  quick wait;
- after a larger batch (under load: sagas move in convoys, and the next ones are close
  behind), the busy wait, short enough that a record landing after the first look is not
  left for half the long wait, long enough not to poll between convoys;
- after an empty fetch (idle), the long steady wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.settings import Settings


@dataclass(frozen=True)
class FetchPacing:
    quick_ms: int
    """Wait after a batch of at most ``small_batch`` records."""
    busy_ms: int
    """Wait after a larger batch."""
    steady_ms: int
    """Wait after an empty fetch."""
    small_batch: int = 1

    @classmethod
    def configured(cls, settings: Settings) -> FetchPacing | None:
        """The pacing the settings ask for; None (always the full wait) without a quick wait."""
        if not settings.consumer_fetch_quick_wait_ms:
            return None
        return cls(
            quick_ms=settings.consumer_fetch_quick_wait_ms,
            busy_ms=settings.consumer_fetch_busy_wait_ms or settings.consumer_fetch_max_wait_ms,
            steady_ms=settings.consumer_fetch_max_wait_ms,
        )

    def after(self, consumer: Any, records: int) -> None:
        """Set the next fetch's wait after a poll that returned ``records`` records (0: it
        found none)."""
        if not records:
            wait_ms = self.steady_ms
        elif records <= self.small_batch:
            wait_ms = self.quick_ms
        else:
            wait_ms = self.busy_ms
        # aiokafka reads the wait each time it builds a fetch request; it has no setter
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
            fetcher._fetch_max_wait_ms = wait_ms
