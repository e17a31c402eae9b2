"""Message ids: random version-4 UUIDs, distinct across calls, threads and forked children."""

from __future__ import annotations

import os
import threading
import uuid

from events.envelope import new_id


def test_ids_are_random_version_4_uuids_never_repeated() -> None:
    ids = [new_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2_000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_threads_draw_different_ids() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(ids,)) for ids in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for ids in drawn for i in ids]
    assert len(set(every)) == len(every)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent holds a pool of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(10)]
    assert len(child) == 10
    assert not set(child) & set(parent)
