"""The cleaning of one log (Kafka's Cleaner, OffsetMap, CleanedTransactionMetadata), run by a
cleaner thread on a ``CleanTask`` the loop thread prepared.

A task holds its own duplicated descriptors of the segments below the first uncleanable
offset, so the thread never touches the live ``PartitionLog`` or its segments. It builds an
offset map (key -> latest offset) over the dirty segments, then rewrites every segment from
the start of the log up to the map's end, in groups that fit one segment, into
``<base>.log.cleaned`` (with ``.index``/``.timeindex``/``.txnindex`` ``.cleaned``), fsynced.
The loop swaps them in afterwards (``LogCleaner.complete``).

What is kept, as Kafka keeps it: a record when its offset is the latest for its key (or
beyond the map); a tombstone until its batch's delete horizon (set to
``now + delete.retention.ms`` by the first cleaning that keeps it, stored as baseTimestamp
with attribute bit 6, Kafka 3.x's format); an aborted transaction's data never; its ABORT
marker while any of its batches remained in this cleaning, else until the marker's own delete
horizon; a COMMIT marker while its transaction has data, then until its horizon; the last
batch of every active producer (emptied when its records go) so producer state survives.
Batches keep their base and last offsets, producer fields and leader epoch; a batch is copied
byte for byte when nothing in it changes, else rebuilt with its own codec.
"""

from __future__ import annotations

import heapq
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metamorphostreams.protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    DELETE_HORIZON_MASK,
    NO_TIMESTAMP,
    BatchHeader,
    ReadableBuffer,
    update_crc,
)
from metamorphostreams.protocol.records import (
    ControlRecordType,
    Record,
    build_batch,
    decode_batch,
    parse_control_key,
)
from metamorphostreams.storage._segment_swap import CLEANED_FILE_SUFFIX
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_files import (
    index_file,
    log_file,
    time_index_file,
    txn_index_file,
)
from metamorphostreams.storage.segment import AppendedBatch, LogSegment
from metamorphostreams.storage.transaction_index import AbortedTxn

__all__ = [
    "CLEANED_FILE_SUFFIX",
    "CleanAbortedError",
    "CleanTask",
    "CleanedGroup",
    "OffsetMap",
    "SourceSegment",
    "Throttler",
]

logger = logging.getLogger("metamorphostreams.storage")

INT32_MAX = 0x7FFFFFFF
INDEX_ENTRY_BYTES = 8  # offset index entry: relative offset + position
TIME_INDEX_ENTRY_BYTES = 12  # time index entry: timestamp + relative offset
_INT16 = struct.Struct(">h")


class CleanAbortedError(Exception):
    """The loop asked the task to stop (log deleted, truncated, broker stopping)."""


class Throttler:
    """log.cleaner.io.max.bytes.per.second: sleep when the thread reads or writes faster
    (Kafka's Throttler, checked every 300 ms of work). Used by one thread."""

    CHECK_INTERVAL_S = 0.3

    def __init__(
        self,
        bytes_per_second: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._rate = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._bytes = 0

    def maybe_throttle(self, count: int) -> None:
        if self._rate >= 1e300:
            return
        self._bytes += count
        elapsed = self._clock() - self._start
        if elapsed < self.CHECK_INTERVAL_S:
            return
        wanted = self._bytes / self._rate
        if wanted > elapsed:
            self._sleep(wanted - elapsed)
        self._start = self._clock()
        self._bytes = 0


class OffsetMap:
    """Key -> latest offset of the dirty section (Kafka's SkimpyOffsetMap, exact keys
    instead of MD5 digests). ``latest_offset`` is where the map's knowledge ends: records
    past it are kept whatever their key. Used by one thread."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._map: dict[bytes, int] = {}
        self.latest_offset = -1

    def __len__(self) -> int:
        return len(self._map)

    def put(self, key: bytes, offset: int) -> None:
        self._map[key] = offset
        self.latest_offset = offset

    def get(self, key: bytes) -> int:
        return self._map.get(key, -1)


@dataclass(slots=True)
class _AbortedTxnState:
    txn: AbortedTxn
    last_observed_batch_offset: int | None = None


class CleanedTransactionMetadata:
    """Which transactional batches are aborted and which markers may go, met in offset
    order (Kafka's CleanedTransactionMetadata). ``cleaned_index`` receives the aborted
    transactions whose ABORT marker is kept. Used by one thread."""

    def __init__(self, aborted: list[AbortedTxn]) -> None:
        self._aborted = [(t.first_offset, i, t) for i, t in enumerate(aborted)]
        heapq.heapify(self._aborted)
        self._ongoing_aborted: dict[int, _AbortedTxnState] = {}
        self._ongoing_committed: set[int] = set()
        self.cleaned_index: LogSegment | None = None

    def _consume_aborted_up_to(self, offset: int) -> None:
        while self._aborted and self._aborted[0][0] <= offset:
            _, _, txn = heapq.heappop(self._aborted)
            self._ongoing_aborted.setdefault(txn.producer_id, _AbortedTxnState(txn))

    def on_control_batch(self, header: BatchHeader, records: list[Record]) -> bool:
        """Whether the marker may be discarded (once its delete horizon has passed)."""
        self._consume_aborted_up_to(header.last_offset)
        if not records:
            return False
        kind = parse_control_key(records[0].key)
        pid = header.producer_id
        if kind == ControlRecordType.ABORT:
            state = self._ongoing_aborted.pop(pid, None)
            if state is not None and state.last_observed_batch_offset is not None:
                if self.cleaned_index is not None:
                    self.cleaned_index.txn_index.append(state.txn)
                return False
            return True
        if kind == ControlRecordType.COMMIT:
            if pid in self._ongoing_committed:
                self._ongoing_committed.discard(pid)
                return False
            return True
        return False

    def on_batch(self, header: BatchHeader) -> bool:
        """Whether a data batch belongs to an aborted transaction."""
        self._consume_aborted_up_to(header.last_offset)
        if not header.is_transactional:
            return False
        state = self._ongoing_aborted.get(header.producer_id)
        if state is not None:
            state.last_observed_batch_offset = header.last_offset
            return True
        self._ongoing_committed.add(header.producer_id)
        return False


@dataclass(slots=True)
class SourceSegment:
    """A live segment as the task sees it: a descriptor of its own (closed by the task)."""

    segment: LogSegment  # identity only: the thread never calls it
    base_offset: int
    next_base: int  # base of the next segment in the log (the log end for the last)
    size: int
    fd: int
    index_bytes: int
    time_index_bytes: int
    mtime_ns: int


@dataclass(slots=True)
class CleanedGroup:
    """Old segments and the ``.cleaned`` segment that replaces them."""

    old: list[SourceSegment]
    cleaned: LogSegment


@dataclass(slots=True)
class CleanStats:
    bytes_read: int = 0
    bytes_written: int = 0
    messages_read: int = 0
    messages_kept: int = 0


def _pread_fully(fd: int, size: int, position: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = os.pread(fd, size - got, position + got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


@dataclass
class CleanTask:
    """One cleaning of one log, prepared on the loop thread (``LogCleaner.grab``), run on a
    cleaner thread (``run``), completed on the loop thread (``LogCleaner.complete``).
    ``abort`` may be called from any thread."""

    topic: str
    partition: int
    directory: Path
    config: LogConfig
    first_dirty_offset: int
    first_uncleanable_offset: int
    now_ms: int
    segments: list[SourceSegment]  # every segment below the first uncleanable offset
    aborted: list[AbortedTxn]
    # producer id -> (offset of its last data batch or None, its epoch)
    last_records: dict[int, tuple[int | None, int]]
    map_entries: int
    io_buffer_size: int
    throttler: Throttler
    fsync: bool
    log: object = None  # the PartitionLog, compared by identity at completion
    end_offset: int = -1
    groups: list[CleanedGroup] = field(default_factory=list)
    stats: CleanStats = field(default_factory=CleanStats)
    _abort: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    def abort(self) -> None:
        self._abort.set()

    @property
    def aborted_requested(self) -> bool:
        return self._abort.is_set()

    def _check_done(self) -> None:
        if self._abort.is_set():
            raise CleanAbortedError(self.name)

    def close_sources(self) -> None:
        for source in self.segments:
            if source.fd >= 0:
                os.close(source.fd)
                source.fd = -1

    def discard(self) -> None:
        """Delete the cleaned files not swapped in (any thread; files only)."""
        for group in self.groups:
            group.cleaned.delete()
        self.groups = []

    # -- the work -----------------------------------------------------------------------

    def run(self) -> None:
        """Build the offset map, then write the cleaned segments. On any error (an abort
        included) the cleaned files are removed and the error is raised."""
        try:
            offset_map = OffsetMap(self.map_entries)
            self._build_offset_map(offset_map)
            self.end_offset = offset_map.latest_offset + 1
            txns = CleanedTransactionMetadata(self.aborted)
            for group in self._group_segments(self.end_offset):
                self._check_done()
                self.groups.append(CleanedGroup(group, self._new_cleaned(group[0].base_offset)))
                self._clean_group(self.groups[-1], offset_map, txns)
        except BaseException:
            self.discard()
            raise
        finally:
            self.close_sources()

    def _batches(self, source: SourceSegment) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Every batch of a source segment, read ``io_buffer_size`` bytes at a time."""
        buf = b""
        start = 0
        pos = 0
        while pos < source.size:
            self._check_done()
            off = pos - start
            if off + BATCH_HEADER_SIZE > len(buf):
                buf = _pread_fully(source.fd, min(self.io_buffer_size, source.size - pos), pos)
                start, off = pos, 0
                if len(buf) < BATCH_HEADER_SIZE:
                    raise OSError(f"{self.name}: torn batch at {pos} of {source.base_offset}")
            header = BatchHeader.parse(buf, off)
            if off + header.size > len(buf):
                wanted = max(self.io_buffer_size, header.size)
                buf = _pread_fully(source.fd, min(wanted, source.size - pos), pos)
                start, off = pos, 0
                if len(buf) < header.size:
                    raise OSError(f"{self.name}: torn batch at {pos} of {source.base_offset}")
            self.throttler.maybe_throttle(header.size)
            self.stats.bytes_read += header.size
            yield header, memoryview(buf)[off : off + header.size]
            pos += header.size

    def _build_offset_map(self, offset_map: OffsetMap) -> None:
        start, end = self.first_dirty_offset, self.first_uncleanable_offset
        dirty = [s for s in self.segments if s.next_base > start and s.base_offset < end]
        # Kafka's collectAbortedTransactions(start, end): those ending before the dirty
        # section are over, and must not be taken for ongoing ones
        txns = CleanedTransactionMetadata([t for t in self.aborted if t.last_offset >= start])
        for i, source in enumerate(dirty):
            next_start = dirty[i + 1].base_offset if i + 1 < len(dirty) else end
            if self._map_segment(source, offset_map, start, txns):
                logger.debug("%s: offset map full in segment %d", self.name, source.base_offset)
                return
            offset_map.latest_offset = next_start - 1  # offsets gap: fast forward

    def _map_segment(
        self,
        source: SourceSegment,
        offset_map: OffsetMap,
        start: int,
        txns: CleanedTransactionMetadata,
    ) -> bool:
        """Put the segment's keys in the map; True when the map filled up."""
        for header, data in self._batches(source):
            if header.last_offset < start:
                continue
            if header.is_control:
                txns.on_control_batch(header, decode_batch(data)[1])
            elif not txns.on_batch(header):
                for record in decode_batch(data)[1]:
                    if record.key is not None and record.offset >= start:
                        if len(offset_map) >= offset_map.max_entries:
                            return True
                        offset_map.put(record.key, record.offset)
            offset_map.latest_offset = max(offset_map.latest_offset, header.last_offset)
        return False

    def _group_segments(self, end_offset: int) -> list[list[SourceSegment]]:
        """Consecutive segments below ``end_offset`` whose sum fits one segment (bytes,
        both indexes, offsets relative to the group's base): Kafka's groupSegmentsBySize."""
        segments = [s for s in self.segments if s.base_offset < end_offset]
        max_size = self.config.segment_bytes
        max_index = self.config.segment_index_bytes
        groups: list[list[SourceSegment]] = []
        i = 0
        while i < len(segments):
            group = [segments[i]]
            size, index, time_index = group[0].size, group[0].index_bytes, group[0].time_index_bytes
            i += 1
            while i < len(segments):
                nxt = segments[i]
                last = min(nxt.next_base, self.first_uncleanable_offset) - 1
                if (
                    size + nxt.size > max_size
                    or index + nxt.index_bytes > max_index
                    or time_index + nxt.time_index_bytes > max_index
                    or (nxt.size > 0 and last - group[0].base_offset > INT32_MAX)
                ):
                    break
                group.append(nxt)
                size += nxt.size
                index += nxt.index_bytes
                time_index += nxt.time_index_bytes
                i += 1
            groups.append(group)
        return groups

    def _new_cleaned(self, base_offset: int) -> LogSegment:
        suffix = CLEANED_FILE_SUFFIX
        for path_of in (log_file, index_file, time_index_file, txn_index_file):
            path_of(self.directory, base_offset, suffix).unlink(missing_ok=True)
        segment = LogSegment(
            self.directory,
            base_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_size=self.config.segment_index_bytes,
            created_ms=self.now_ms,
            suffix=suffix,
        )
        segment.offset_index.create_empty()
        segment.time_index.create_empty()
        return segment

    def _clean_group(
        self, group: CleanedGroup, offset_map: OffsetMap, txns: CleanedTransactionMetadata
    ) -> None:
        cleaned = group.cleaned
        txns.cleaned_index = cleaned
        for source in group.old:
            self._clean_into(source, cleaned, offset_map, txns)
        cleaned.on_become_inactive()
        if self.fsync:
            cleaned.flush()
        last_mtime = group.old[-1].mtime_ns
        os.utime(cleaned.log_path, ns=(last_mtime, last_mtime))

    def _clean_into(
        self,
        source: SourceSegment,
        dest: LogSegment,
        offset_map: OffsetMap,
        txns: CleanedTransactionMetadata,
    ) -> None:
        out = bytearray()
        appended: list[AppendedBatch] = []
        for header, data in self._batches(source):
            kept = self._filter_batch(header, data, offset_map, txns)
            if kept is None:
                continue
            kept_header = BatchHeader.parse(kept, 0)
            appended.append(
                (len(out), kept_header.size, kept_header.last_offset, kept_header.max_timestamp)
            )
            out += kept
            if len(out) >= self.io_buffer_size:
                self._write(dest, out, appended)
                out = bytearray()
                appended = []
        self._write(dest, out, appended)

    def _write(self, dest: LogSegment, out: bytearray, appended: list[AppendedBatch]) -> None:
        if appended:
            dest.append(out, appended)
            self.throttler.maybe_throttle(len(out))
            self.stats.bytes_written += len(out)

    def _filter_batch(
        self,
        header: BatchHeader,
        data: memoryview,
        offset_map: OffsetMap,
        txns: CleanedTransactionMetadata,
    ) -> ReadableBuffer | None:
        """The batch as it is to be written (the same bytes, rebuilt, or emptied), or None
        to drop it (Kafka's checkBatchRetention / shouldRetainRecord / filterTo)."""
        now = self.now_ms
        _, records = decode_batch(data)
        self.stats.messages_read += len(records)
        horizon = header.base_timestamp if header.has_delete_horizon else NO_TIMESTAMP
        if header.is_control:
            can_discard = txns.on_control_batch(header, records)
            discard_records = can_discard and horizon != NO_TIMESTAMP and horizon <= now
        else:
            can_discard = txns.on_batch(header)
            discard_records = can_discard
        last_of_producer = False
        if header.has_producer_id:
            last = self.last_records.get(header.producer_id)
            if last is not None:
                last_data_offset, epoch = last
                if last_data_offset is not None:
                    last_of_producer = header.last_offset == last_data_offset
                else:
                    last_of_producer = header.is_control and header.producer_epoch == epoch
        if discard_records and not last_of_producer:
            return None
        marker_for_empty_txn = can_discard and header.is_control
        retained: list[Record] = []
        tombstones = False
        if not discard_records:
            for record in records:
                if header.is_control or self._retain_record(record, horizon, offset_map, now):
                    retained.append(record)
                    tombstones = tombstones or record.value is None
        self.stats.messages_kept += len(retained)
        if not retained:
            if last_of_producer:
                return _empty_batch(header)
            return None
        set_horizon = (tombstones or marker_for_empty_txn) and horizon == NO_TIMESTAMP
        if len(retained) == len(records) and not set_horizon:
            return data
        if set_horizon:
            horizon = now + self.config.delete_retention_ms
        return _rebuild(header, retained, horizon)

    @staticmethod
    def _retain_record(record: Record, horizon: int, offset_map: OffsetMap, now: int) -> bool:
        if record.offset > offset_map.latest_offset:
            return True
        if record.key is None:
            return False  # Kafka counts it invalid: a compacted log only keeps keyed records
        if record.offset < offset_map.get(record.key):
            return False
        return record.value is not None or horizon == NO_TIMESTAMP or now < horizon


def _empty_batch(header: BatchHeader) -> bytes:
    """Kafka's writeEmptyHeader: no records, the offsets, producer fields and maxTimestamp
    of the original, uncompressed."""
    return build_batch(
        [],
        base_offset=header.base_offset,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        timestamp_type=header.timestamp_type,
        partition_leader_epoch=header.partition_leader_epoch,
        base_timestamp=header.max_timestamp,
        last_offset_delta=header.last_offset_delta,
    )


def _rebuild(header: BatchHeader, records: list[Record], delete_horizon: int) -> bytes:
    """The kept records re-batched as Kafka's buildRetainedRecordsInto does: same base and
    last offset, producer fields, leader epoch, codec; a delete horizon becomes the base
    timestamp and sets attribute bit 6."""
    built = build_batch(
        records,
        base_offset=header.base_offset,
        compression=header.compression,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        timestamp_type=header.timestamp_type,
        partition_leader_epoch=header.partition_leader_epoch,
        base_timestamp=delete_horizon if delete_horizon != NO_TIMESTAMP else None,
        last_offset_delta=header.last_offset_delta,
    )
    if delete_horizon == NO_TIMESTAMP:
        return built
    buf = bytearray(built)
    (attributes,) = _INT16.unpack_from(buf, ATTRIBUTES_OFFSET)
    _INT16.pack_into(buf, ATTRIBUTES_OFFSET, attributes | DELETE_HORIZON_MASK)
    update_crc(buf, 0)
    return bytes(buf)
