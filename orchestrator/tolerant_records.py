"""Records whose header names are not UTF-8 are read, not fatal to their consumer.

Kafka's protocol makes a header name a UTF-8 string, but the broker does not check it, so a
producer can write any bytes there. aiokafka decodes header names strictly while it unpacks a
fetch: one such record raised out of every ``getmany`` of its consumer, for good, and the
records unpacked before it in that fetch were lost with the exception (the position had moved
past them). With ``install()``, a record batch that cannot be read so is read again with its
header names decoded leniently (an undecodable byte becomes U+FFFD); its records then go the
way of every other record, to their handler or, if their value is bad, to the dead letters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords

_BATCH_FRAME = 12
"""A batch starts with its base offset (8 bytes) and the length of the rest (4 bytes)."""
_MAGIC_AT = 16
"""The batch format's version (2: the format with headers) sits at this byte."""


class _LenientBytes(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "replace")


class _LenientBuffer(bytearray):
    """A batch's bytes whose slices decode leniently: the header names ``_read_msg`` cuts."""

    def __getitem__(self, index: Any) -> Any:
        found = super().__getitem__(index)
        return _LenientBytes(found) if isinstance(index, slice) else found


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's pure-Python batch reader, reading from a ``_LenientBuffer``."""

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        buffer: bytearray = self.__dict__["_buffer"]
        if not isinstance(buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(buffer)


def _undecodable(exc: BaseException) -> bool:
    return isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, CorruptRecordException) and isinstance(exc.__cause__, UnicodeDecodeError)
    )


class _TolerantBatch:
    """aiokafka's batch, read by its C reader; if that fails on a header name, the records
    from the failing one on are read by the lenient reader."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        last = -1
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except (UnicodeDecodeError, CorruptRecordException) as exc:
            if not _undecodable(exc):
                raise
            for record in _LenientBatch(self._raw):
                if record.offset > last:
                    yield record


class TolerantRecords:
    """aiokafka's ``MemoryRecords`` whose batches of the format with headers are
    ``_TolerantBatch``es."""

    def __init__(self, raw: bytes | bytearray | memoryview) -> None:
        self._records = MemoryRecords(raw)
        self._raw = memoryview(raw)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        length = int.from_bytes(self._raw[start + 8 : start + _BATCH_FRAME], "big")
        self._pos = start + _BATCH_FRAME + length
        if self._raw[start + _MAGIC_AT] != 2:
            return batch
        return _TolerantBatch(batch, self._raw[start : self._pos])


def install() -> None:
    """Every consumer of this process unpacks its fetches with ``TolerantRecords``."""
    fetcher.MemoryRecords = TolerantRecords
