"""Shared machinery of the fixed-size-entry index files (``.index``, ``.timeindex``).

Kafka memory-maps a preallocated file and trims it on roll/close. We do not preallocate: the
file always holds exactly the valid entries, so a reader (ours or Kafka's) can open it at any
time. Entries are mirrored in a ``bytearray`` loaded lazily on first use; appends go to both
the mirror and the file (one small ``pwrite``), so the file is current in the page cache and
``flush`` only needs an fsync. The writer's descriptor is opened on the first write and
released by ``close`` (segments do when they stop being active): a broker keeps one open file
per partition for its active index files, not one per segment. Not task-safe.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CorruptIndexError", "IndexFile"]


class CorruptIndexError(Exception):
    """An index file failed its sanity check; the segment must rebuild it (Kafka's
    CorruptIndexException)."""


class IndexFile:
    """A file of ``entry_size``-byte big-endian entries, relative to ``base_offset``.

    ``max_index_size`` is ``segment.index.bytes``: the index is full (and the segment must
    roll) once it holds ``max_index_size // entry_size`` entries.
    """

    entry_size: int = 0  # set by subclasses

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_index_size // self.entry_size
        self._data: bytearray | None = None
        self._raw_length = 0
        self._fd: int | None = None

    # -- loading -------------------------------------------------------------------------

    @property
    def data(self) -> bytearray:
        """The raw entries; loads the file on first access (a missing file is empty)."""
        if self._data is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                raw = b""
            whole = len(raw) - len(raw) % self.entry_size
            self._data = bytearray(raw[:whole])
            self._raw_length = len(raw)
        return self._data

    @property
    def file_length(self) -> int:
        """Length of the file as found on disk when it was loaded."""
        self.data  # noqa: B018 - loads _raw_length
        return self._raw_length

    @property
    def entries(self) -> int:
        return len(self.data) // self.entry_size

    @property
    def is_full(self) -> bool:
        return self.entries >= self.max_entries

    def check_length(self) -> None:
        if self.file_length % self.entry_size != 0:
            raise CorruptIndexError(
                f"index file {self.path} is corrupt: {self.file_length} bytes is not a "
                f"multiple of {self.entry_size}"
            )

    # -- writing -------------------------------------------------------------------------

    def _writer(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            # the file may hold a torn partial entry or stale bytes: make it match the mirror
            os.ftruncate(self._fd, len(self.data))
        return self._fd

    def _append_raw(self, entry: bytes) -> None:
        data = self.data
        fd = self._writer()
        os.pwrite(fd, entry, len(data))
        data += entry

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries (undoing appends after a failed write)."""
        self._truncate_entries(count)

    def _truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries."""
        data = self.data
        new_length = count * self.entry_size
        if new_length >= len(data):
            return
        del data[new_length:]
        os.ftruncate(self._writer(), new_length)

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        self._data = bytearray()
        self._raw_length = 0
        os.ftruncate(self._writer(), 0)

    def create_empty(self) -> None:
        """Make sure the file exists, even with no entries (Kafka always has all three).
        No descriptor is kept: the writer opens on the first append."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, len(self.data))
        finally:
            os.close(fd)

    def flush(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the file handle; the mirror stays usable for lookups."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def unload(self) -> None:
        """Forget the in-memory mirror (it is reloaded on the next lookup)."""
        self.close()
        self._data = None

    def rename(self, path: Path) -> None:
        if self.path.exists():
            os.replace(self.path, path)
        self.path = path

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self._data = bytearray()
        self._raw_length = 0
