"""A log segment: ``<base>.log`` plus its ``.index``, ``.timeindex`` and ``.txnindex``
(Kafka's LogSegment)."""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    BATCH_LENGTH_OFFSET,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MAGIC_V2,
    MIN_BATCH_LENGTH,
    NO_PARTITION_LEADER_EPOCH,
    NO_TIMESTAMP,
    BatchHeader,
    ReadableBuffer,
    TimestampType,
    verify_crc,
)
from metamorphostreams.protocol.records import decode_batch
from metamorphostreams.storage._index_file import CorruptIndexError
from metamorphostreams.storage.log_files import (
    DELETED_FILE_SUFFIX,
    index_file,
    log_file,
    time_index_file,
    txn_index_file,
)
from metamorphostreams.storage.offset_index import OffsetIndex
from metamorphostreams.storage.time_index import TimeIndex
from metamorphostreams.storage.transaction_index import TransactionIndex

__all__ = ["AppendedBatch", "LogSegment", "SegmentMark", "write_fully"]

logger = logging.getLogger("metamorphostreams.storage")

HEADER_SCAN_CHUNK = 16 * 1024  # one pread covers many small batches' headers
RECOVERY_CHUNK = 1024 * 1024  # recovery reads whole batches to check their CRCs
INT32_MAX = 0x7FFFFFFF
_INT32 = struct.Struct(">i")

# (position inside the appended bytes, size, last offset, max timestamp) of one batch
AppendedBatch = tuple[int, int, int, int]


def write_fully(fd: int, data: ReadableBuffer, position: int) -> None:
    """pwrite all of ``data`` at ``position`` (pwrite may write less than asked)."""
    with memoryview(data) as view:
        done = 0
        total = len(view)
        while done < total:
            done += os.pwrite(fd, view[done:], position + done)


def _read_fully(fd: int, size: int, position: int) -> bytes:
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class SegmentMark:
    """Where a segment stood before an append: ``LogSegment.rollback`` returns it there."""

    size: int
    index_entries: int
    time_index_entries: int
    max_timestamp: tuple[int, int] | None
    bytes_since_last_index_entry: int
    rolling_based_timestamp: int | None


class _ChunkReader:
    """Reads a file through one cached chunk so a scan does few syscalls."""

    def __init__(self, fd: int, limit: int, chunk: int) -> None:
        self._fd = fd
        self._limit = limit
        self._chunk = chunk
        self._buf = b""
        self._start = 0

    def get(self, position: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``position`` (fewer only at the end of the file)."""
        size = min(size, self._limit - position)
        if size <= 0:
            return b""
        off = position - self._start
        if off < 0 or off + size > len(self._buf):
            want = min(max(self._chunk, size), self._limit - position)
            self._buf = _read_fully(self._fd, want, position)
            self._start = position
            off = 0
        return memoryview(self._buf)[off : off + size]


class LogSegment:
    """One segment: batches appended back to back in ``<base>.log`` (a file of Kafka's
    record batches, byte for byte), a sparse ``OffsetIndex``, a ``TimeIndex`` and the
    ``TransactionIndex`` of the aborted transactions whose markers it holds (the partition
    log writes it; ``recover`` leaves it to the producer-state replay to rebuild).

    Invariants: batch offsets strictly increase and are >= ``base_offset``, every last
    offset fits in an int32 relative to it; ``size`` is the file length. Index entries are
    added once more than ``index_interval_bytes`` were written since the previous one.
    ``file`` is handed out in FileRegions for sendfile, so it stays open until ``close``
    or ``delete``. A failed append is undone (file and indexes cut back), so a full disk
    never leaves a partial batch behind. Index entries are checked against the batch they
    point at when a lookup uses them; a wrong one makes the segment rebuild its indexes.
    Not task-safe.
    """

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        created_ms: int,
        suffix: str = "",
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.suffix = suffix
        self.index_interval_bytes = index_interval_bytes
        self.offset_index = OffsetIndex(
            index_file(directory, base_offset, suffix), base_offset, max_index_size
        )
        self.time_index = TimeIndex(
            time_index_file(directory, base_offset, suffix), base_offset, max_index_size
        )
        self.txn_index = TransactionIndex(
            txn_index_file(directory, base_offset, suffix), base_offset
        )
        fd = os.open(log_file(directory, base_offset, suffix), os.O_RDWR | os.O_CREAT, 0o644)
        self.file = io.FileIO(fd, "r+", closefd=True)
        self._size = os.fstat(fd).st_size
        self.created_ms = created_ms
        self._bytes_since_last_index_entry = 0
        self._rolling_based_timestamp: int | None = None
        self._max_timestamp: tuple[int, int] | None = None  # (timestamp, shallow offset)
        self._tail_dirty = False  # a rollback could not cut the file back to ``_size``
        self._checked_positions: set[int] = set()  # index positions known to start a batch

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self._size})"

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        now_ms: int,
    ) -> LogSegment:
        """A new empty segment; its three files exist afterwards. When one cannot be
        made, none of them is left behind: an empty ``.log`` named after the log end offset
        would hide the batches appended to the previous segment at the next start."""
        paths = [
            log_file(directory, base_offset),
            index_file(directory, base_offset),
            time_index_file(directory, base_offset),
        ]
        new = [p for p in paths if not p.exists()]
        segment: LogSegment | None = None
        try:
            segment = cls(
                directory,
                base_offset,
                index_interval_bytes=index_interval_bytes,
                max_index_size=max_index_size,
                created_ms=now_ms,
            )
            segment.offset_index.create_empty()
            segment.time_index.create_empty()
        except BaseException:
            if segment is not None:
                segment.close_handlers()
            for path in new:
                path.unlink(missing_ok=True)
            raise
        return segment

    # -- basic properties ---------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return log_file(self.directory, self.base_offset, self.suffix)

    @property
    def size(self) -> int:
        return self._size

    @property
    def fd(self) -> int:
        return self.file.fileno()

    @property
    def max_timestamp_and_offset(self) -> tuple[int, int]:
        """Largest batch maxTimestamp in the segment and the last offset of its batch;
        loaded from the time index's last entry after a clean open, like Kafka."""
        if self._max_timestamp is None:
            self._max_timestamp = self.time_index.last_entry
        return self._max_timestamp

    @property
    def max_timestamp_so_far(self) -> int:
        return self.max_timestamp_and_offset[0]

    @property
    def largest_timestamp(self) -> int:
        """What retention.ms is measured against: the max timestamp, or the file's
        modification time when no batch has a timestamp."""
        ts = self.max_timestamp_so_far
        if ts >= 0:
            return ts
        return os.fstat(self.fd).st_mtime_ns // 1_000_000

    def can_convert_to_relative_offset(self, offset: int) -> bool:
        return 0 <= offset - self.base_offset <= INT32_MAX

    # -- scanning -----------------------------------------------------------------------

    def iter_headers(
        self, position: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, BatchHeader]]:
        """``(position, header)`` of each whole batch from ``position`` (a batch start) up
        to ``end``. Raises DecodeError on bytes that are not a batch."""
        limit = self._size if end is None else min(end, self._size)
        reader = _ChunkReader(self.fd, limit, HEADER_SCAN_CHUNK)
        pos = position
        while limit - pos >= BATCH_HEADER_SIZE:
            header = BatchHeader.parse(reader.get(pos, BATCH_HEADER_SIZE), 0)
            if pos + header.size > limit:
                return
            yield pos, header
            pos += header.size

    def read_batch(self, position: int, header: BatchHeader) -> bytes:
        return _read_fully(self.fd, header.size, position)

    def translate_offset(
        self, offset: int, start_position: int = 0
    ) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= ``offset``, as ``(position, header)``."""
        position = self._index_position(offset)
        for pos, header in self.iter_headers(max(position, start_position)):
            if header.last_offset >= offset:
                return pos, header
        return None

    def read_next_offset(self) -> int:
        """One past the last offset in the segment (the base offset when empty)."""
        position = self._index_position(2**63 - 1)
        last: BatchHeader | None = None
        for _, header in self.iter_headers(position):
            last = header
        return last.next_offset if last is not None else self.base_offset

    def _entry_is_batch(self, offset: int, position: int) -> bool:
        """Whether a whole batch ending at ``offset`` starts at ``position`` (entries found
        right once, or written by this process, are not read again)."""
        if position in self._checked_positions:
            return True
        if position < 0 or position + BATCH_HEADER_SIZE > self._size:
            return False
        try:
            header = BatchHeader.parse(_read_fully(self.fd, BATCH_HEADER_SIZE, position), 0)
        except DecodeError:
            return False
        if header.last_offset != offset or position + header.size > self._size:
            return False
        self._checked_positions.add(position)
        return True

    def _index_position(self, target_offset: int) -> int:
        """Where a forward scan for ``target_offset`` can start: the position of the
        greatest index entry at or below it, once the batch there confirms the entry."""
        entry = self.offset_index.floor_entry(target_offset)
        if entry is None:
            return 0
        if not self._entry_is_batch(*entry):
            self.rebuild_indexes(f"index entry {entry} does not point at the batch it names")
            entry = self.offset_index.floor_entry(target_offset)
            if entry is None:
                return 0
        return entry[1]

    def _index_position_below(self, position: int) -> int:
        """The greatest confirmed index position at or below ``position`` (else 0)."""
        entry = self.offset_index.floor_entry_by_position(position)
        if entry is None:
            return 0
        if not self._entry_is_batch(*entry):
            self.rebuild_indexes(f"index entry {entry} does not point at the batch it names")
            entry = self.offset_index.floor_entry_by_position(position)
            if entry is None:
                return 0
        return entry[1]

    def read(
        self,
        start_offset: int,
        max_size: int,
        *,
        max_position: int | None = None,
        min_one_message: bool = False,
    ) -> tuple[int, int] | None:
        """``(position, size)`` of whole batches from the one holding ``start_offset``, at
        most ``max_size`` bytes (but the first batch when ``min_one_message``), never past
        ``max_position``. None when the segment has nothing at or after ``start_offset``.
        """
        found = self.translate_offset(start_offset)
        if found is None:
            return None
        start, first = found
        limit = self._size if max_position is None else min(max_position, self._size)
        if start >= limit:
            return start, 0
        budget_end = start + max_size
        if budget_end >= limit:
            return start, limit - start
        indexed = self._index_position_below(budget_end)
        end = max(indexed, start)  # a checked index position is always a batch boundary
        for pos, header in self.iter_headers(end, limit):
            if pos + header.size > budget_end:
                break
            end = pos + header.size
        if end == start and min_one_message:
            end = start + first.size
        return start, end - start

    # -- appending ----------------------------------------------------------------------

    def _index_batch(self, position: int, size: int, last_offset: int, max_timestamp: int) -> None:
        if max_timestamp > self.max_timestamp_so_far:
            self._max_timestamp = (max_timestamp, last_offset)
        if self._bytes_since_last_index_entry > self.index_interval_bytes:
            if not self.offset_index.is_full:
                self.offset_index.append(last_offset, position)
                self._checked_positions.add(position)
            if not self.time_index.is_full:
                ts, offset = self.max_timestamp_and_offset
                self.time_index.maybe_append(ts, offset)
            self._bytes_since_last_index_entry = 0
        self._bytes_since_last_index_entry += size

    def append(self, data: ReadableBuffer, batches: Sequence[AppendedBatch]) -> None:
        """Write ``data`` (whole batches with offsets assigned) at the end of the file with
        one write; ``batches`` describe them in order as ``(position inside data, size,
        last offset, max timestamp)``."""
        if not batches:
            return
        last = batches[-1][2]
        if not self.can_convert_to_relative_offset(last):
            raise ValueError(f"offset {last} does not fit segment {self.base_offset}")
        if self._tail_dirty:
            # an earlier rollback left bytes past ``_size``: never write after them
            os.ftruncate(self.fd, self._size)
            self._tail_dirty = False
        mark = self.mark()
        position = self._size
        try:
            write_fully(self.fd, data, position)
            if self._rolling_based_timestamp is None and position == 0:
                self._rolling_based_timestamp = batches[0][3]
            for pos, size, last_offset, max_timestamp in batches:
                self._index_batch(position + pos, size, last_offset, max_timestamp)
        except BaseException:
            self.rollback(mark)
            raise
        self._size += len(data)

    def mark(self) -> SegmentMark:
        """The segment's state now, for ``rollback``."""
        return SegmentMark(
            self._size,
            self.offset_index.entries,
            self.time_index.entries,
            self._max_timestamp,
            self._bytes_since_last_index_entry,
            self._rolling_based_timestamp,
        )

    def rollback(self, mark: SegmentMark) -> None:
        """Undo the appends made since ``mark`` (a write or an fsync failed): cut the file
        and both indexes back and forget what the appends taught us. Never raises; a file
        that cannot be cut is cut before the next append instead."""
        self._size = mark.size
        self._checked_positions.clear()
        self._max_timestamp = mark.max_timestamp
        self._bytes_since_last_index_entry = mark.bytes_since_last_index_entry
        self._rolling_based_timestamp = mark.rolling_based_timestamp
        try:
            os.ftruncate(self.fd, mark.size)
            self._tail_dirty = False
        except OSError as e:
            self._tail_dirty = True
            logger.error("%s: cannot cut a failed append back: %s", self.log_path, e)
        for index, entries in (
            (self.offset_index, mark.index_entries),
            (self.time_index, mark.time_index_entries),
        ):
            try:
                index.truncate_entries(entries)
            except OSError as e:
                logger.error("%s: cannot cut %s back: %s", self.log_path, index.path.name, e)

    # -- rolling ------------------------------------------------------------------------

    def _first_batch_timestamp(self) -> int:
        if self._rolling_based_timestamp is None and self._size > 0:
            for _, header in self.iter_headers(0):
                self._rolling_based_timestamp = header.max_timestamp
                break
        return (
            NO_TIMESTAMP if self._rolling_based_timestamp is None else self._rolling_based_timestamp
        )

    @property
    def first_batch_timestamp(self) -> int:
        """The first batch's maxTimestamp (-1 when empty): max.compaction.lag.ms uses it."""
        return self._first_batch_timestamp()

    def time_waited_for_roll(self, now_ms: int, max_timestamp_in_messages: int) -> int:
        first = self._first_batch_timestamp()
        if first >= 0:
            return max_timestamp_in_messages - first
        return max(now_ms - self.created_ms, 0)

    def should_roll(
        self,
        *,
        max_segment_bytes: int,
        max_segment_ms: int,
        messages_size: int,
        max_timestamp_in_messages: int,
        max_offset_in_messages: int,
        now_ms: int,
        roll_jitter_ms: int = 0,
    ) -> bool:
        """Kafka's LogSegment.shouldRoll: full (bytes or either index), old enough by the
        first batch's timestamp (or creation time), or offsets too far from the base."""
        reached_roll_ms = (
            self.time_waited_for_roll(now_ms, max_timestamp_in_messages)
            > max_segment_ms - roll_jitter_ms
        )
        return (
            self._size > max_segment_bytes - messages_size
            or (self._size > 0 and reached_roll_ms)
            or self.offset_index.is_full
            or self.time_index.is_full
            or not self.can_convert_to_relative_offset(max_offset_in_messages)
        )

    def on_become_inactive(self) -> None:
        """Called when a newer segment becomes active: record the max timestamp for good,
        and let go of the index writers (reads use the in-memory entries)."""
        ts, offset = self.max_timestamp_and_offset
        self.time_index.maybe_append(ts, offset, skip_full_check=True)
        self.release_index_handles()

    def release_index_handles(self) -> None:
        """Close the index files' write descriptors; a later write reopens them."""
        self.offset_index.close()
        self.time_index.close()

    # -- recovery and truncation --------------------------------------------------------

    def sanity_check(self) -> None:
        """Raise FileNotFoundError for a missing index file, CorruptIndexError for a bad
        one (the caller then rebuilds both with ``recover``)."""
        for path in (self.offset_index.path, self.time_index.path):
            if not path.exists():
                raise FileNotFoundError(f"missing index file {path}")
        self.offset_index.sanity_check(self._size)
        self.time_index.sanity_check()
        self.txn_index.sanity_check()
        # Kafka stops here. Two reads more catch indexes that are well formed but wrong
        # (stale, or damaged in place): the last entry of each must match its batch.
        if self.offset_index.entries:
            offset, position = self.offset_index.entry(self.offset_index.entries - 1)
            if not self._entry_is_batch(offset, position):
                raise CorruptIndexError(
                    f"index {self.offset_index.path}: last entry ({offset}, {position}) "
                    "does not point at a batch ending at that offset"
                )
        if self.time_index.entries:
            timestamp, offset = self.time_index.last_entry
            try:
                found = self.translate_offset(offset)
            except DecodeError:
                found = None
            if found is None or (found[1].last_offset, found[1].max_timestamp) != (
                offset,
                timestamp,
            ):
                raise CorruptIndexError(
                    f"time index {self.time_index.path}: last entry ({timestamp}, {offset}) "
                    "does not match the batch holding that offset"
                )

    def check_tail(self) -> str | None:
        """After a clean shutdown, cheaply confirm the end of the (active) segment: the
        batches from the last index entry on must be whole, valid (CRC included) and end
        exactly at the end of the file. Returns what is wrong, or None."""
        file_size = os.fstat(self.fd).st_size
        position = self._index_position(2**63 - 1)
        reader = _ChunkReader(self.fd, file_size, RECOVERY_CHUNK)
        prev_last_offset = self.base_offset - 1
        pos = position
        while pos < file_size:
            problem = self._check_batch_at(reader, pos, file_size, prev_last_offset)
            if problem is not None:
                return f"{problem} at byte {pos}"
            header = BatchHeader.parse(reader.get(pos, BATCH_HEADER_SIZE), 0)
            prev_last_offset = header.last_offset
            pos += header.size
        return None

    def rebuild_indexes(self, reason: str) -> None:
        """Rebuild both indexes from the batch headers, without judging or cutting the
        log (``recover`` does that); used when an index entry turns out to be wrong."""
        logger.warning("%s: %s; rebuilding the indexes of %s", self.log_path, reason, self)
        self._checked_positions.clear()
        self.offset_index.reset()
        self.time_index.reset()
        self._max_timestamp = (NO_TIMESTAMP, self.base_offset)
        self._bytes_since_last_index_entry = 0
        try:
            for pos, header in self.iter_headers(0):
                self._index_batch(pos, header.size, header.last_offset, header.max_timestamp)
        except DecodeError as e:
            logger.error("%s: unreadable batch while rebuilding indexes: %s", self.log_path, e)
        ts, offset = self.max_timestamp_and_offset
        self.time_index.maybe_append(ts, offset, skip_full_check=True)

    def recover(self, on_batch: Callable[[BatchHeader], None] | None = None) -> int:
        """Rebuild both indexes by scanning every batch; stop at the first torn, corrupt
        (CRC, magic, length) or out-of-order batch and truncate the file there. Returns
        the number of bytes truncated. ``on_batch`` sees each valid batch in order. The
        transaction index is left as it is: rebuilding it needs the producer state, so the
        loader has ``rebuild_producer_state`` do it."""
        self._checked_positions.clear()
        self.offset_index.reset()
        self.time_index.reset()
        self._max_timestamp = (NO_TIMESTAMP, self.base_offset)
        self._bytes_since_last_index_entry = 0
        self._rolling_based_timestamp = None
        file_size = os.fstat(self.fd).st_size
        reader = _ChunkReader(self.fd, file_size, RECOVERY_CHUNK)
        pos = 0
        prev_last_offset = self.base_offset - 1
        problem: str | None = None
        while pos < file_size:
            problem = self._check_batch_at(reader, pos, file_size, prev_last_offset)
            if problem is not None:
                break
            header = BatchHeader.parse(reader.get(pos, BATCH_HEADER_SIZE), 0)
            if pos == 0:
                self._rolling_based_timestamp = header.max_timestamp
            self._index_batch(pos, header.size, header.last_offset, header.max_timestamp)
            if on_batch is not None:
                on_batch(header)
            prev_last_offset = header.last_offset
            pos += header.size
        ts, offset = self.max_timestamp_and_offset
        self.time_index.maybe_append(ts, offset, skip_full_check=True)
        truncated = file_size - pos
        if truncated > 0:
            logger.warning(
                "%s: %s at byte %d; truncating %d bytes", self.log_path, problem, pos, truncated
            )
            os.ftruncate(self.fd, pos)
        self._size = pos
        self._tail_dirty = False
        return truncated

    def _check_batch_at(
        self, reader: _ChunkReader, pos: int, file_size: int, prev_last_offset: int
    ) -> str | None:
        head = reader.get(pos, BATCH_HEADER_SIZE)
        if len(head) < LOG_OVERHEAD:
            return "torn batch header"
        (batch_length,) = _INT32.unpack_from(head, BATCH_LENGTH_OFFSET)
        if batch_length < MIN_BATCH_LENGTH:
            return f"invalid batch length {batch_length}"
        if len(head) < BATCH_HEADER_SIZE or pos + LOG_OVERHEAD + batch_length > file_size:
            return "torn batch"
        magic = head[MAGIC_OFFSET]
        if magic != MAGIC_V2:
            return f"invalid magic {magic}"
        header = BatchHeader.parse(head, 0)
        if not verify_crc(reader.get(pos, header.size), 0, header):
            return "CRC mismatch"
        if (
            header.base_offset <= prev_last_offset
            or header.last_offset_delta < 0
            or not self.can_convert_to_relative_offset(header.last_offset)
        ):
            return f"out-of-order offsets {header.base_offset}..{header.last_offset}"
        return None

    def truncate_to(self, offset: int) -> int:
        """Remove the batch holding ``offset`` and everything after; returns bytes removed."""
        found = self.translate_offset(offset)
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset if found is None else found[1].base_offset)
        removed = 0
        if found is not None:
            position = found[0]
            removed = self._size - position
            os.ftruncate(self.fd, position)
            self._size = position
            self._checked_positions = {p for p in self._checked_positions if p < position}
            if position == 0:
                self._rolling_based_timestamp = None
            self._reload_max_timestamp()
        # Kafka restarts the count at 0; counting from the last entry instead puts the
        # next entries where they were before the truncation (where a leader that never
        # had the truncated batches has them).
        entries = self.offset_index.entries
        last_indexed = self.offset_index.entry(entries - 1)[1] if entries else 0
        self._bytes_since_last_index_entry = self._size - last_indexed
        return removed

    def _reload_max_timestamp(self) -> None:
        best = self.time_index.last_entry
        position = self._index_position(best[1])
        for _, header in self.iter_headers(position):
            if header.max_timestamp > best[0]:
                best = (header.max_timestamp, header.last_offset)
        self._max_timestamp = best

    # -- timestamps lookups -------------------------------------------------------------

    def find_offset_by_timestamp(
        self, timestamp: int, starting_offset: int
    ) -> tuple[int, int, int] | None:
        """``(offset, timestamp, leader epoch)`` of the first record at or after
        ``starting_offset`` whose timestamp is >= ``timestamp`` (Kafka's
        LogSegment.findOffsetByTimestamp); leader epoch -1 when the batch has none."""
        _, ts_offset = self.time_index.lookup(timestamp)
        position = self._index_position(max(ts_offset, starting_offset))
        for pos, header in self.iter_headers(position):
            if header.max_timestamp < timestamp or header.last_offset < starting_offset:
                continue
            epoch = max(header.partition_leader_epoch, NO_PARTITION_LEADER_EPOCH)
            if header.timestamp_type is TimestampType.LOG_APPEND_TIME:
                # every record of the batch carries the batch's maxTimestamp
                return max(header.base_offset, starting_offset), header.max_timestamp, epoch
            for record in self._decode(pos, header):
                if record[1] >= timestamp and record[0] >= starting_offset:
                    return record[0], record[1], epoch
        return None

    def offset_of_max_timestamp(self) -> tuple[int, int, int] | None:
        """``(offset, timestamp, leader epoch)`` of the first record with the segment's
        largest timestamp (ListOffsets MAX_TIMESTAMP)."""
        ts, shallow_offset = self.max_timestamp_and_offset
        if ts < 0:
            return None
        position = self._index_position(shallow_offset)
        for pos, header in self.iter_headers(position):
            if header.max_timestamp != ts:
                continue
            epoch = max(header.partition_leader_epoch, NO_PARTITION_LEADER_EPOCH)
            if header.timestamp_type is TimestampType.LOG_APPEND_TIME:
                return header.base_offset, ts, epoch
            for offset, record_ts in self._decode(pos, header):
                if record_ts == ts:
                    return offset, ts, epoch
            return None
        return None

    def _decode(self, position: int, header: BatchHeader) -> list[tuple[int, int]]:
        try:
            _, records = decode_batch(self.read_batch(position, header), 0)
        except DecodeError as e:
            logger.warning("%s: undecodable batch at %d: %s", self.log_path, position, e)
            return []
        return [(r.offset, r.timestamp) for r in records]

    # -- durability and lifecycle -------------------------------------------------------

    def sync_handles(self) -> list[int]:
        """New descriptors of the segment's files, for an fsync off the loop thread."""
        fds = [os.dup(self.fd)]
        try:
            for path in (self.offset_index.path, self.time_index.path):
                try:
                    fds.append(os.open(path, os.O_RDONLY))
                except FileNotFoundError:
                    pass
            txn_fd = self.txn_index.sync_handle()
            if txn_fd is not None:
                fds.append(txn_fd)
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def flush(self) -> None:
        os.fsync(self.fd)
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    def close(self) -> None:
        """Record the max timestamp in the time index (as Kafka does) and close files."""
        try:
            if not self.file.closed:
                ts, offset = self.max_timestamp_and_offset
                if ts >= 0:
                    self.time_index.maybe_append(ts, offset, skip_full_check=True)
        finally:
            self.close_handlers()

    def close_quietly(self) -> bool:
        """``close``; a failed write is logged, not raised. Returns whether all went well."""
        try:
            self.close()
        except OSError as e:
            logger.error("%s: error while closing: %s", self.log_path, e)
            return False
        return True

    def close_handlers(self) -> None:
        self.offset_index.close()
        self.time_index.close()
        if not self.file.closed:
            self.file.close()

    def set_directory(self, directory: Path) -> None:
        """Follow a rename of the partition directory (open handles stay valid)."""
        self.directory = directory
        self.offset_index.path = index_file(directory, self.base_offset, self.suffix)
        self.time_index.path = time_index_file(directory, self.base_offset, self.suffix)
        self.txn_index.path = txn_index_file(directory, self.base_offset, self.suffix)

    def mark_deleted(self) -> None:
        """Rename the files with the ``.deleted`` suffix; the handles stay open so reads
        already handed out keep working until ``delete``."""
        self.change_suffix(DELETED_FILE_SUFFIX)

    def change_suffix(self, suffix: str) -> None:
        """Rename the segment's files to carry ``suffix`` (``.cleaned`` -> ``.swap`` -> none
        when the cleaner swaps a segment in; Kafka's changeFileSuffixes)."""
        old = self.log_path
        self.suffix = suffix
        if old.exists():
            os.replace(old, self.log_path)
        self.offset_index.rename(index_file(self.directory, self.base_offset, suffix))
        self.time_index.rename(time_index_file(self.directory, self.base_offset, suffix))
        self.txn_index.rename(txn_index_file(self.directory, self.base_offset, suffix))

    def delete(self) -> None:
        """Close and remove the segment's files."""
        self.close_handlers()
        self.log_path.unlink(missing_ok=True)
        self.offset_index.delete()
        self.time_index.delete()
        self.txn_index.delete()
