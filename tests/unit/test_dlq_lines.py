"""Which dead letters ``dlq redrive --all`` sends: one per record, however often the record
was re-driven before and dead-lettered again."""

from __future__ import annotations

from events.envelope import H_DLQ_OFFSET, H_DLQ_PARTITION, H_DLQ_TOPIC
from orchestrator.ops.records import Record
from orchestrator.ops.topics_cli import REDRIVEN_FROM, REPLAYED_FROM, superseded

DLQ = "orders.submitted.dlq"


def letter(offset: int, redrive_of: int | None = None, refused_at: int | None = None) -> Record:
    """A dead letter of the record at ``refused_at`` (by default one of its own)."""
    headers = {
        H_DLQ_TOPIC: "orders.submitted",
        H_DLQ_PARTITION: "0",
        H_DLQ_OFFSET: str(offset * 100 if refused_at is None else refused_at),
    }
    if redrive_of is not None:
        headers[REDRIVEN_FROM] = f"{DLQ}/0/{redrive_of}"
    raw = tuple((name, value.encode()) for name, value in headers.items())
    return Record(DLQ, 0, offset, 1_000 + offset, b"o-1", b"{}", raw)


def sent(letters: list[Record]) -> list[int]:
    skipped = superseded(letters)
    return [r.offset for r in letters if f"{r.topic}/{r.partition}/{r.offset}" not in skipped]


def test_a_letter_re_driven_and_dead_lettered_again_is_sent_as_its_newest() -> None:
    assert sent([letter(1), letter(2), letter(5, redrive_of=1), letter(7, redrive_of=5)]) == [2, 7]


def test_a_letter_re_driven_twice_by_offset_is_still_one_record() -> None:
    """Two re-drives of one letter, each dead-lettered again: siblings, one record."""
    assert sent([letter(1), letter(6, redrive_of=1), letter(7, redrive_of=1)]) == [7]
    branched = [letter(1), letter(6, redrive_of=1), letter(7, redrive_of=1), letter(9, 6)]
    assert sent(branched) == [9]


def test_a_line_whose_first_letter_is_gone_is_still_one_record() -> None:
    """The first letter past the topic's retention, or left out of the selection."""
    assert sent([letter(6, redrive_of=1), letter(7, redrive_of=1), letter(8)]) == [7, 8]


def test_a_record_dead_lettered_twice_is_one_record() -> None:
    """Its batch handled again after a fault wrote its dead letter a second time."""
    assert sent([letter(1, refused_at=40), letter(2, refused_at=40), letter(3)]) == [2, 3]


def test_a_replayed_copy_of_a_refused_record_is_one_record_with_it() -> None:
    """A replay re-published the record (``replayed_from`` its place) and the copy was
    refused again: two letters of one record."""
    copy = letter(2, refused_at=57)
    copy.headers[REPLAYED_FROM] = "orders.submitted/0/40"
    assert sent([letter(1, refused_at=40), copy, letter(3)]) == [2, 3]
