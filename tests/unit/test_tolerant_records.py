"""A record batch with a header name that is not UTF-8 is read whole, with that name decoded
leniently, where aiokafka's own reader raised (and its consumer stalled on it for good)."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords

from orchestrator.tolerant_records import TolerantRecords


class _BadName(str):
    """A header name whose bytes are not UTF-8, as another client may write one."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfebad"


def _batch(base_offset: int, compression: int, bad_at: int | None) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for n in range(3):
        name = _BadName("x") if n == bad_at else "ce_id"
        builder.append(
            n,
            timestamp=1_700_000_000_000 + n,
            key=b"k",
            value=f"{n}".encode(),
            headers=[(name, b"v")],
        )
    raw = builder.build()
    raw[0:8] = base_offset.to_bytes(8, "big")
    return bytes(raw)


def _read(records: TolerantRecords | MemoryRecords) -> list[tuple[int, bytes, str]]:
    read = []
    while records.has_next():
        batch = records.next_batch()
        read += [(r.offset, r.value, r.headers[0][0]) for r in batch]
    return read


@pytest.mark.parametrize(
    "compression",
    [_DefaultRecordBatchBuilderPy.CODEC_NONE, _DefaultRecordBatchBuilderPy.CODEC_GZIP],
)
def test_a_header_name_that_is_not_utf8_is_read_leniently(compression: int) -> None:
    raw = (
        _batch(0, compression, bad_at=None) + _batch(3, compression, bad_at=1) + _batch(6, 0, None)
    )
    with pytest.raises((UnicodeDecodeError, ValueError)):
        _read(MemoryRecords(raw))

    read = _read(TolerantRecords(raw))

    assert [(offset, value) for offset, value, _ in read] == [
        (offset, f"{offset % 3}".encode()) for offset in range(9)
    ]
    assert [name for _, _, name in read] == ["ce_id"] * 4 + ["\ufffd\ufffdbad"] + ["ce_id"] * 4


def test_batches_without_the_fault_are_aiokafkas_own() -> None:
    raw = _batch(0, _DefaultRecordBatchBuilderPy.CODEC_NONE, None) + _batch(3, 0, None)
    assert _read(TolerantRecords(raw)) == _read(MemoryRecords(raw))
