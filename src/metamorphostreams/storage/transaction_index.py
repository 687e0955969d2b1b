"""Aborted transactions of one segment: ``<base>.txnindex`` (Kafka's TransactionIndex and
AbortedTxn).

One 34-byte big-endian entry per aborted transaction whose ABORT marker is in the segment,
in marker order: ``version int16 (0), producerId int64, firstOffset int64, lastOffset int64
(the marker's offset), lastStableOffset int64`` (the partition's last stable offset once
the transaction completed). The file is created by the first entry, as Kafka does, so
most segments never have one. read_committed fetches ask for the aborted transactions of
a range: the entries are read from the file once and then kept in memory.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from metamorphostreams.storage._index_file import CorruptIndexError

__all__ = ["ABORTED_TXN_SIZE", "AbortedTxn", "TransactionIndex", "collect_aborted"]

logger = logging.getLogger("metamorphostreams.storage")

ABORTED_TXN_VERSION = 0  # AbortedTxn.CURRENT_VERSION
_ENTRY = struct.Struct(">hqqqq")  # version, producer id, first, last, last stable offset
ABORTED_TXN_SIZE = _ENTRY.size  # 34
assert ABORTED_TXN_SIZE == 34


class AbortedTxn(NamedTuple):
    """One aborted transaction: its producer, its offsets and the LSO at its completion."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return _ENTRY.pack(ABORTED_TXN_VERSION, *self)


class TransactionIndex:
    """The ``.txnindex`` of the segment starting at ``base_offset``.

    Invariants: entries' last offsets strictly increase and are >= ``base_offset``; the file
    holds exactly the cached entries (a torn tail is overwritten by the next append). The
    file is opened per operation, so an index holds no descriptor. Not task-safe.
    """

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._exists = path.exists()
        self._entries: list[AbortedTxn] | None = None if self._exists else []

    def __repr__(self) -> str:
        return f"TransactionIndex({self.path.name})"

    @property
    def exists(self) -> bool:
        return self._exists

    @property
    def entries(self) -> list[AbortedTxn]:
        """Every entry, oldest first (read from the file at the first call). Do not mutate."""
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> list[AbortedTxn]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._exists = False
            return []
        out: list[AbortedTxn] = []
        # A torn last entry (its write was cut by a crash) is ignored, as Kafka's iterator does.
        for pos in range(0, len(data) - ABORTED_TXN_SIZE + 1, ABORTED_TXN_SIZE):
            version, *fields = _ENTRY.unpack_from(data, pos)
            if version > ABORTED_TXN_VERSION:
                raise CorruptIndexError(
                    f"transaction index {self.path}: unknown entry version {version} at {pos}"
                )
            out.append(AbortedTxn(*fields))
        return out

    def sanity_check(self) -> None:
        """Raise CorruptIndexError for a torn file, an unknown version or an entry ending
        before the segment (Kafka checks the last one only)."""
        if not self._exists:
            return
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            self._exists = False
            self._entries = []
            return
        if size % ABORTED_TXN_SIZE:
            raise CorruptIndexError(
                f"transaction index {self.path} has a torn entry ({size} bytes)"
            )
        self._entries = None
        entries = self.entries
        last = -1
        for txn in entries:
            if txn.last_offset < self.base_offset or txn.last_offset <= last:
                raise CorruptIndexError(
                    f"transaction index {self.path}: entry {txn} is out of order or before "
                    f"the segment's base offset {self.base_offset}"
                )
            last = txn.last_offset

    def append(self, txn: AbortedTxn) -> None:
        """Write one entry at the end (creating the file). On an I/O error nothing changes."""
        entries = self.entries
        if entries and txn.last_offset <= entries[-1].last_offset:
            raise ValueError(
                f"aborted transaction {txn} does not end after {entries[-1]} in {self.path}"
            )
        position = len(entries) * ABORTED_TXN_SIZE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._exists = True
            try:
                data = txn.encode()
                done = 0
                while done < len(data):
                    done += os.pwrite(fd, data[done:], position + done)
                os.ftruncate(fd, position + ABORTED_TXN_SIZE)  # drop a torn tail past it
            except OSError:
                try:
                    os.ftruncate(fd, position)
                except OSError as e:
                    logger.error("%s: cannot cut a failed append back: %s", self.path, e)
                raise
        finally:
            os.close(fd)
        entries.append(txn)

    def truncate_to(self, offset: int) -> None:
        """Remove the entries whose last offset is >= ``offset``."""
        entries = self.entries
        keep = len(entries)
        while keep > 0 and entries[keep - 1].last_offset >= offset:
            keep -= 1
        if keep == len(entries):
            return
        os.truncate(self.path, keep * ABORTED_TXN_SIZE)
        del entries[keep:]

    def reset(self) -> None:
        """Remove every entry (the segment is being recovered)."""
        if self._exists:
            try:
                os.truncate(self.path, 0)
            except FileNotFoundError:
                self._exists = False
        self._entries = []

    def collect(self, fetch_offset: int, upper_bound_offset: int) -> tuple[list[AbortedTxn], bool]:
        """The entries overlapping [fetch_offset, upper_bound_offset), and whether the search
        is complete (an entry's LSO reached the upper bound, so later segments cannot add
        any): Kafka's collectAbortedTxns."""
        out: list[AbortedTxn] = []
        for txn in self.entries:
            if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound_offset:
                out.append(txn)
            if txn.last_stable_offset >= upper_bound_offset:
                return out, True
        return out, False

    # -- files --------------------------------------------------------------------------

    def sync_handle(self) -> int | None:
        """A new read-only descriptor for an fsync elsewhere, or None without a file."""
        if not self._exists:
            return None
        try:
            return os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def flush(self) -> None:
        fd = self.sync_handle()
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def rename(self, path: Path) -> None:
        if self._exists:
            try:
                os.replace(self.path, path)
            except FileNotFoundError:
                self._exists = False
        self.path = path

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self._exists = False
        self._entries = []


def collect_aborted(
    indexes: Iterable[TransactionIndex], fetch_offset: int, upper_bound_offset: int
) -> list[tuple[int, int]]:
    """``(producer id, first offset)`` of the aborted transactions overlapping
    [fetch_offset, upper_bound_offset) in the indexes of consecutive segments, the first
    holding ``fetch_offset``, until the search is complete (Kafka's UnifiedLog
    collectAbortedTransactions)."""
    out: list[tuple[int, int]] = []
    for index in indexes:
        if not index.exists:
            continue
        found, complete = index.collect(fetch_offset, upper_bound_offset)
        out.extend((txn.producer_id, txn.first_offset) for txn in found)
        if complete:
            break
    return out
