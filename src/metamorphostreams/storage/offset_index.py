"""The sparse offset index of a segment: ``<base offset>.index``."""

from __future__ import annotations

import struct

from metamorphostreams.storage._index_file import CorruptIndexError, IndexFile

__all__ = ["OFFSET_INDEX_ENTRY_SIZE", "InvalidOffsetError", "OffsetIndex"]

OFFSET_INDEX_ENTRY_SIZE = 8  # relative offset int32 + file position int32
_ENTRY = struct.Struct(">ii")
_INT32_MAX = 0x7FFFFFFF


class InvalidOffsetError(ValueError):
    """An append that would break the index's ordering, or an offset too far from the base
    to be stored relative to it (Kafka's InvalidOffsetException / IndexOffsetOverflow)."""


class OffsetIndex(IndexFile):
    """Sparse offset index: 8-byte entries (4B offset relative to the segment's base offset,
    4B byte position in the ``.log`` file), both big-endian, strictly increasing.

    An entry maps the *last* offset of a batch to the position where that batch starts;
    one is added once more than ``index.interval.bytes`` were appended since the previous
    entry. ``lookup(t)`` gives the greatest entry at or below ``t`` (or ``(base, 0)``), from
    which a forward scan of batch headers finds the batch holding ``t``. Not task-safe.
    """

    entry_size = OFFSET_INDEX_ENTRY_SIZE

    def entry(self, n: int) -> tuple[int, int]:
        """The n-th entry as ``(absolute offset, position)``."""
        relative, position = _ENTRY.unpack_from(self.data, n * OFFSET_INDEX_ENTRY_SIZE)
        return self.base_offset + relative, position

    @property
    def last_offset(self) -> int:
        """Offset of the last entry, or the base offset when empty."""
        n = self.entries
        return self.entry(n - 1)[0] if n else self.base_offset

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if not 0 <= relative <= _INT32_MAX:
            raise InvalidOffsetError(
                f"offset {offset} cannot be stored relative to base {self.base_offset}"
            )
        n = self.entries
        if n >= self.max_entries:
            raise InvalidOffsetError(f"offset index {self.path} is full ({n} entries)")
        if n and offset <= self.last_offset:
            raise InvalidOffsetError(
                f"offset {offset} is not above the last indexed offset {self.last_offset}"
            )
        self._append_raw(_ENTRY.pack(relative, position))

    def _floor_slot(self, target: int, field: int) -> int:
        """Index of the greatest entry whose ``field`` (0 offset, 1 position) is <= target,
        or -1. ``target`` is relative for field 0."""
        data = self.data
        lo, hi = 0, len(data) // OFFSET_INDEX_ENTRY_SIZE - 1
        found = -1
        unpack = _ENTRY.unpack_from
        while lo <= hi:
            mid = (lo + hi) // 2
            if unpack(data, mid * OFFSET_INDEX_ENTRY_SIZE)[field] <= target:
                found = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return found

    def lookup(self, target_offset: int) -> tuple[int, int]:
        """Greatest ``(offset, position)`` with offset <= target, else ``(base, 0)``."""
        return self.floor_entry(target_offset) or (self.base_offset, 0)

    def floor_entry(self, target_offset: int) -> tuple[int, int] | None:
        """The greatest entry with offset <= target, or None when there is none."""
        slot = self._floor_slot(target_offset - self.base_offset, 0)
        return self.entry(slot) if slot >= 0 else None

    def floor_by_position(self, position: int) -> tuple[int, int]:
        """Greatest entry whose position is <= ``position``, else ``(base, 0)``."""
        return self.floor_entry_by_position(position) or (self.base_offset, 0)

    def floor_entry_by_position(self, position: int) -> tuple[int, int] | None:
        """The greatest entry whose position is <= ``position``, or None."""
        slot = self._floor_slot(position, 1)
        return self.entry(slot) if slot >= 0 else None

    def truncate_to(self, offset: int) -> None:
        """Remove every entry for an offset >= ``offset``."""
        slot = self._floor_slot(offset - self.base_offset - 1, 0)
        self._truncate_entries(slot + 1)

    def sanity_check(self, log_size: int) -> None:
        """Kafka's checks plus two cheap ones that catch a zero-filled (preallocated,
        untrimmed) tail and entries pointing past a shortened log."""
        self.check_length()
        n = self.entries
        if not n:
            return
        last_offset, last_position = self.entry(n - 1)
        if last_offset < self.base_offset:
            raise CorruptIndexError(
                f"index {self.path}: last offset {last_offset} is below base {self.base_offset}"
            )
        if last_position >= max(log_size, 1):
            raise CorruptIndexError(
                f"index {self.path}: last position {last_position} is beyond the log "
                f"({log_size} bytes)"
            )
        if n > 1:
            prev_offset, prev_position = self.entry(n - 2)
            if prev_offset >= last_offset or prev_position >= last_position:
                raise CorruptIndexError(f"index {self.path}: last entries are not increasing")
