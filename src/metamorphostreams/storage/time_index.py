"""The time index of a segment: ``<base offset>.timeindex``."""

from __future__ import annotations

import struct

from metamorphostreams.protocol.record_batch import NO_TIMESTAMP
from metamorphostreams.storage._index_file import CorruptIndexError, IndexFile
from metamorphostreams.storage.offset_index import InvalidOffsetError

__all__ = ["TIME_INDEX_ENTRY_SIZE", "TimeIndex"]

TIME_INDEX_ENTRY_SIZE = 12  # timestamp int64 + relative offset int32
_ENTRY = struct.Struct(">qi")
_INT32_MAX = 0x7FFFFFFF


class TimeIndex(IndexFile):
    """Time index: 12-byte entries (8B timestamp, 4B offset relative to the base offset),
    big-endian, both strictly increasing.

    An entry ``(ts, o)`` says "the largest timestamp among offsets up to ``o`` is ``ts``";
    ``o`` is the last offset of the batch that holds it (Kafka's "shallow" offset). Entries
    are only appended when the timestamp grows, so ``lookup(t)`` (the greatest entry with
    timestamp <= t) bounds where a search for the first record at or after ``t`` can start.
    Not task-safe.
    """

    entry_size = TIME_INDEX_ENTRY_SIZE

    def entry(self, n: int) -> tuple[int, int]:
        """The n-th entry as ``(timestamp, absolute offset)``."""
        timestamp, relative = _ENTRY.unpack_from(self.data, n * TIME_INDEX_ENTRY_SIZE)
        return timestamp, self.base_offset + relative

    @property
    def last_entry(self) -> tuple[int, int]:
        """The last entry, or ``(-1, base offset)`` when empty (Kafka's convention)."""
        n = self.entries
        return self.entry(n - 1) if n else (NO_TIMESTAMP, self.base_offset)

    def maybe_append(self, timestamp: int, offset: int, *, skip_full_check: bool = False) -> None:
        """Append ``(timestamp, offset)`` if ``timestamp`` is above the last entry's.

        Re-appending the last entry is a no-op (it happens when a segment is closed or
        rolled, which always records the segment's max timestamp).
        """
        n = self.entries
        if not skip_full_check and n >= self.max_entries:
            raise InvalidOffsetError(f"time index {self.path} is full ({n} entries)")
        last_ts, last_offset = self.last_entry
        if n and offset < last_offset:
            raise InvalidOffsetError(
                f"offset {offset} is below the last time-indexed offset {last_offset}"
            )
        if timestamp <= last_ts:
            return
        relative = offset - self.base_offset
        if not 0 <= relative <= _INT32_MAX:
            raise InvalidOffsetError(
                f"offset {offset} cannot be stored relative to base {self.base_offset}"
            )
        self._append_raw(_ENTRY.pack(timestamp, relative))

    def lookup(self, target_timestamp: int) -> tuple[int, int]:
        """Greatest ``(timestamp, offset)`` with timestamp <= target, else ``(-1, base)``."""
        data = self.data
        lo, hi = 0, len(data) // TIME_INDEX_ENTRY_SIZE - 1
        found = -1
        while lo <= hi:
            mid = (lo + hi) // 2
            if _ENTRY.unpack_from(data, mid * TIME_INDEX_ENTRY_SIZE)[0] <= target_timestamp:
                found = mid
                lo = mid + 1
            else:
                hi = mid - 1
        if found < 0:
            return NO_TIMESTAMP, self.base_offset
        return self.entry(found)

    def truncate_to(self, offset: int) -> None:
        """Remove every entry for an offset >= ``offset``."""
        keep = 0
        for n in range(self.entries - 1, -1, -1):
            if self.entry(n)[1] < offset:
                keep = n + 1
                break
        self._truncate_entries(keep)

    def sanity_check(self) -> None:
        """Kafka's TimeIndex.sanityCheck: whole entries, last timestamp not below the first,
        last offset not below the base."""
        self.check_length()
        n = self.entries
        if not n:
            return
        first_ts = self.entry(0)[0]
        last_ts, last_offset = self.entry(n - 1)
        if last_ts < first_ts:
            raise CorruptIndexError(
                f"time index {self.path}: last timestamp {last_ts} is below the first {first_ts}"
            )
        if last_offset < self.base_offset:
            raise CorruptIndexError(
                f"time index {self.path}: last offset {last_offset} is below the base offset"
            )
