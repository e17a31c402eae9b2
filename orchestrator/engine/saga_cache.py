"""The sagas this orchestrator wrote last, so a reply needs no read before its write.

Only what a write of this process committed goes in, with the version it wrote. An entry
may go stale (a timer, an operator or another orchestrator moved the saga); the batch
write's version check then refuses the change and the runtime reads the saga again. A
reply that a cached saga would ignore (it awaits another command) is decided again on a
fresh read, since ignoring writes nothing a version check could refuse. Ended sagas leave;
the oldest entries leave past ``capacity``, so memory stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from orchestrator.engine.instance import SagaInstance


class SagaCache:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[UUID, SagaInstance] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, saga_ids: Iterable[UUID]) -> dict[UUID, SagaInstance]:
        entries = self._entries
        return {i: entries[i] for i in saga_ids if i in entries}

    def written(self, instances: Iterable[SagaInstance]) -> None:
        """Sagas as a committed write left them (their new version)."""
        entries = self._entries
        for instance in instances:
            if instance.status.terminal:
                entries.pop(instance.id, None)
                continue
            entries[instance.id] = instance
            entries.move_to_end(instance.id)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def forget(self, saga_ids: Iterable[UUID]) -> None:
        for saga_id in saga_ids:
            self._entries.pop(saga_id, None)
