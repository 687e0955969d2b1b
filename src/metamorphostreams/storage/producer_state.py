"""Idempotent and transactional producer state of a partition and its ``<offset>.snapshot``
files.

Follows Kafka's ProducerStateManager / ProducerAppendInfo / ProducerStateEntry: per producer
id, the epoch and the metadata of its last five batches (first and last sequence, first and
last offset, max timestamp), the coordinator epoch of its last transaction marker and the
first offset of its ongoing transaction. Incoming batches are checked against it (duplicate,
epoch, sequence, transaction state), the survivors are applied after the append. The
ongoing transactions (by first offset) and the completed ones whose marker is not yet below
the high watermark give the first unstable offset, which bounds the last stable offset.
State survives restarts through snapshot files taken at each roll and at close, plus a
replay of the batches written after the newest snapshot.

Snapshot files use Kafka's layout (version 1): ``version int16, crc uint32 (CRC-32C of
everything after it), count int32`` then per entry ``producer_id int64, epoch int16,
last_sequence int32, last_offset int64, offset_delta int32, timestamp int64,
coordinator_epoch int32, current_txn_first_offset int64``. Kafka writes one entry per
producer (its last batch); we write one per retained batch, oldest first, so all five
survive a restart. Kafka's loader keeps the last entry it reads for a producer id, which is
exactly the entry it would have written itself, so the files stay readable by Kafka.
"""

from __future__ import annotations

import enum
import logging
import os
import struct
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import (
    NO_PRODUCER_EPOCH,
    NO_SEQUENCE,
    BatchHeader,
)
from metamorphostreams.storage.checkpoints import write_atomically
from metamorphostreams.storage.log_files import (
    PRODUCER_SNAPSHOT_FILE_SUFFIX,
    offset_from_file_name,
    producer_snapshot_file,
)
from metamorphostreams.storage.transaction_index import AbortedTxn

__all__ = [
    "DEFAULT_PRODUCER_ID_EXPIRATION_MS",
    "NUM_BATCHES_TO_RETAIN",
    "AppendOrigin",
    "BatchMetadata",
    "CompletedTxn",
    "ProducerCheck",
    "ProducerInfo",
    "ProducerSavepoint",
    "ProducerStateEntry",
    "ProducerStateManager",
    "SnapshotError",
    "read_snapshot",
    "write_snapshot",
]

logger = logging.getLogger("metamorphostreams.storage")

NUM_BATCHES_TO_RETAIN = 5  # the producer's max.in.flight.requests.per.connection cap
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms (1 day)
SNAPSHOT_VERSION = 1

_INT32_MAX = 0x7FFFFFFF
_PREFIX = struct.Struct(">hIi")  # version, crc, entry count
_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_START = 6  # the CRC covers everything after version and crc


class SnapshotError(ValueError):
    """A snapshot file that is truncated, has a bad CRC or an unknown version."""


class AppendOrigin(enum.Enum):
    """Who appends (Kafka's AppendOrigin); it decides what is checked."""

    CLIENT = "client"  # Produce: duplicates, epochs, sequences, transaction state
    COORDINATOR = "coordinator"  # a coordinator's own writes: no sequences (base sequence -1)


class CompletedTxn(NamedTuple):
    """A transaction ended by a marker at ``last_offset``; ``last_stable_offset`` is the
    partition's LSO once it is complete (Kafka's ``lastStableOffset(completedTxn)``)."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool
    last_stable_offset: int

    def aborted_txn(self) -> AbortedTxn:
        return AbortedTxn(
            self.producer_id, self.first_offset, self.last_offset, self.last_stable_offset
        )


class ProducerInfo(NamedTuple):
    """One active producer as DescribeProducers reports it."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int  # -1 without an ongoing transaction


def decrement_sequence(sequence: int, decrement: int) -> int:
    """Inverse of the int32-wrapping sequence increment (DefaultRecordBatch)."""
    if sequence < decrement:
        return _INT32_MAX - (decrement - sequence) + 1
    return sequence - decrement


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """What is remembered of one appended batch of a producer."""

    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int  # the batch's maxTimestamp


class ProducerStateEntry:
    """A producer's epoch and up to five most recent batches (oldest first). Not task-safe."""

    __slots__ = (
        "batches",
        "coordinator_epoch",
        "current_txn_first_offset",
        "last_timestamp",
        "producer_epoch",
        "producer_id",
    )

    def __init__(
        self,
        producer_id: int,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        batches: Iterable[BatchMetadata] = (),
        *,
        coordinator_epoch: int = -1,
        current_txn_first_offset: int = -1,
        last_timestamp: int = -1,
    ) -> None:
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.batches: deque[BatchMetadata] = deque(batches, maxlen=NUM_BATCHES_TO_RETAIN)
        self.coordinator_epoch = coordinator_epoch
        self.current_txn_first_offset = current_txn_first_offset
        self.last_timestamp = last_timestamp

    def __repr__(self) -> str:
        return (
            f"ProducerStateEntry(id={self.producer_id}, epoch={self.producer_epoch}, "
            f"batches={list(self.batches)})"
        )

    @property
    def is_empty(self) -> bool:
        return not self.batches

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def pending(self) -> ProducerStateEntry:
        """Kafka's ``withProducerId``: same epoch and timestamps, no batches yet."""
        return ProducerStateEntry(
            self.producer_id,
            self.producer_epoch,
            coordinator_epoch=self.coordinator_epoch,
            current_txn_first_offset=self.current_txn_first_offset,
            last_timestamp=self.last_timestamp,
        )

    def copy(self) -> ProducerStateEntry:
        """An independent copy (for a ``ProducerSavepoint``)."""
        entry = self.pending()
        entry.batches.extend(self.batches)
        return entry

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.producer_epoch:
            return None
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        if epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = epoch

    def add_batch(self, epoch: int, batch: BatchMetadata) -> None:
        self.maybe_update_epoch(epoch)
        self.batches.append(batch)
        self.last_timestamp = batch.timestamp

    def end_txn(self, epoch: int, coordinator_epoch: int, timestamp: int) -> None:
        """A COMMIT/ABORT marker was written (Kafka's ``update(epoch, coordEpoch, ts)``)."""
        self.maybe_update_epoch(epoch)
        self.current_txn_first_offset = -1
        self.coordinator_epoch = coordinator_epoch
        self.last_timestamp = timestamp

    def merge(self, newer: ProducerStateEntry) -> None:
        """Fold a pending entry in after its batches were appended (Kafka's ``update``)."""
        self.maybe_update_epoch(newer.producer_epoch)
        self.batches.extend(newer.batches)
        self.coordinator_epoch = newer.coordinator_epoch
        self.current_txn_first_offset = newer.current_txn_first_offset
        self.last_timestamp = newer.last_timestamp


@dataclass(slots=True)
class ProducerCheck:
    """Outcome of checking the batches of one append: an error, a duplicate (answer with
    the original batch's offsets, append nothing), or the pending per-producer updates and
    the transaction a marker completes."""

    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    duplicate: BatchMetadata | None = None
    updates: dict[int, ProducerStateEntry] = field(default_factory=dict)
    completed: CompletedTxn | None = None


@dataclass(frozen=True, slots=True)
class ProducerSavepoint:
    """What ``replay`` of some producers' batches may change, taken before a replica append
    so that a failed write can put it back (``ProducerStateManager.restore``)."""

    entries: dict[int, ProducerStateEntry | None]  # None: the producer was unknown
    ongoing: dict[int, int]
    unreplicated: dict[int, tuple[int, int]]
    first_unstable_offset: int | None
    map_end_offset: int


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == _INT32_MAX)


def _check_batch(
    pending: ProducerStateEntry,
    current: ProducerStateEntry,
    header: BatchHeader,
    first_offset: int,
    check_sequence: bool,
) -> tuple[ErrorCode, str] | None:
    """ProducerAppendInfo.checkProducerEpoch + checkSequence (client appends only) +
    the transaction state check of appendDataBatch."""
    epoch = header.producer_epoch
    pid = header.producer_id
    if epoch < pending.producer_epoch:
        return ErrorCode.INVALID_PRODUCER_EPOCH, (
            f"Epoch of producer {pid} at offset {first_offset} is {epoch}, which is smaller "
            f"than the last seen epoch {pending.producer_epoch}"
        )
    if check_sequence:
        problem = _check_sequence(pending, current, header, first_offset)
        if problem is not None:
            return problem
    if pending.current_txn_first_offset >= 0 and not header.is_transactional:
        return ErrorCode.INVALID_TXN_STATE, (
            f"Expected transactional write from producer {pid} at offset {first_offset}"
        )
    return None


def _check_sequence(
    pending: ProducerStateEntry,
    current: ProducerStateEntry,
    header: BatchHeader,
    first_offset: int,
) -> tuple[ErrorCode, str] | None:
    epoch = header.producer_epoch
    pid = header.producer_id
    first_seq = header.base_sequence
    if epoch != pending.producer_epoch:
        if first_seq != 0 and pending.producer_epoch != NO_PRODUCER_EPOCH:
            return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, (
                f"Invalid sequence number for new epoch of producer {pid} at offset "
                f"{first_offset}: {epoch} (request epoch), {first_seq} (seq. number), "
                f"{pending.producer_epoch} (current producer epoch)"
            )
        return None
    if not pending.is_empty:
        current_last_seq = pending.last_seq
    elif epoch == current.producer_epoch:
        current_last_seq = current.last_seq
    else:
        current_last_seq = NO_SEQUENCE
    # a producer whose epoch is unknown (all its data gone) may start at any sequence
    if current.producer_epoch != NO_PRODUCER_EPOCH and not _in_sequence(
        current_last_seq, first_seq
    ):
        return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, (
            f"Out of order sequence number for producer {pid} at offset {first_offset}: "
            f"{first_seq} (incoming seq. number), {current_last_seq} (current end sequence "
            "number)"
        )
    return None


def _metadata(header: BatchHeader, first_offset: int) -> BatchMetadata:
    last_offset = first_offset + header.last_offset_delta
    return BatchMetadata(
        header.base_sequence,
        header.last_sequence,
        first_offset,
        last_offset,
        header.max_timestamp,
    )


class ProducerStateManager:
    """Producer id -> ProducerStateEntry for one partition, plus its snapshot files.

    ``map_end_offset`` is the log offset the in-memory state is current up to; a snapshot
    named ``<map_end_offset>.snapshot`` captures it. Not task-safe.
    """

    def __init__(
        self,
        directory: Path,
        *,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        sync: bool = True,
    ) -> None:
        self.directory = directory
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._sync = sync
        self._producers: dict[int, ProducerStateEntry] = {}
        self.map_end_offset = 0
        self._last_snap_offset = 0
        # Ongoing transactions, first offset -> producer id, inserted in offset order (each
        # begins at the log end), so the first key is the smallest.
        self._ongoing: dict[int, int] = {}
        # Completed transactions whose marker is not below the high watermark yet:
        # first offset -> (producer id, marker offset). Empty on a single replica.
        self._unreplicated: dict[int, tuple[int, int]] = {}
        # Smallest first offset of both (Kafka's firstUnstableOffset), None without any:
        # kept up to date on every change, as each fetch reads it.
        self.first_unstable_offset: int | None = None

    # -- queries ------------------------------------------------------------------------

    @property
    def producers(self) -> Mapping[int, ProducerStateEntry]:
        return self._producers

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self._producers.get(producer_id)

    @property
    def ongoing_txns(self) -> Mapping[int, int]:
        """First offset -> producer id of the ongoing transactions, oldest first."""
        return self._ongoing

    def active_producers(self) -> list[ProducerInfo]:
        """Every producer this partition remembers (DescribeProducers)."""
        return [
            ProducerInfo(
                e.producer_id,
                e.producer_epoch,
                e.last_seq,
                e.last_timestamp,
                e.coordinator_epoch,
                e.current_txn_first_offset,
            )
            for e in self._producers.values()
        ]

    # -- transactions -------------------------------------------------------------------

    def _start_txn(self, first_offset: int, producer_id: int) -> None:
        self._ongoing[first_offset] = producer_id
        if self.first_unstable_offset is None:  # later starts are never smaller
            self.first_unstable_offset = first_offset

    def _complete_txn(self, txn: CompletedTxn) -> None:
        # Same first offset, other map: the first unstable offset does not move.
        if self._ongoing.pop(txn.first_offset, None) is None:
            logger.warning("completed transaction %s was not ongoing", txn)
        self._unreplicated[txn.first_offset] = (txn.producer_id, txn.last_offset)

    def _refresh_first_unstable(self) -> None:
        first = next(iter(self._ongoing), None)
        if self._unreplicated:
            low = min(self._unreplicated)
            first = low if first is None else min(first, low)
        self.first_unstable_offset = first

    def _last_stable_offset_after(self, producer_id: int, marker_offset: int) -> int:
        """Kafka's lastStableOffset(completedTxn): the first offset of the oldest ongoing
        transaction of another producer, else just past the marker."""
        for first_offset, owner in self._ongoing.items():
            if owner != producer_id:
                return first_offset
        return marker_offset + 1

    def _remove_unreplicated_below(self, offset: int) -> None:
        if not self._unreplicated:
            return
        done = [f for f, (_, last) in self._unreplicated.items() if last < offset]
        if done:
            for first_offset in done:
                del self._unreplicated[first_offset]
            self._refresh_first_unstable()

    def on_high_watermark_updated(self, high_watermark: int) -> None:
        """Forget completed transactions whose marker is below the high watermark."""
        if self._unreplicated:
            self._remove_unreplicated_below(high_watermark)

    def _clear_txns(self) -> None:
        self._ongoing.clear()
        self._unreplicated.clear()
        self.first_unstable_offset = None

    # -- the append path ----------------------------------------------------------------

    def check_append(
        self,
        batches: Sequence[tuple[BatchHeader, int]],
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> ProducerCheck:
        """Check ``(header, assigned base offset)`` pairs of one data append, in order.

        For a client, a batch equal (epoch, first and last sequence) to one of the
        producer's last five is a duplicate: the whole append is answered with that batch's
        offsets (Kafka's analyzeAndValidateProducerState returns at the first duplicate).
        A transactional batch of a producer without an ongoing transaction starts one at
        its first offset; a non-transactional one during a transaction is INVALID_TXN_STATE.
        """
        client = origin is AppendOrigin.CLIENT
        updates: dict[int, ProducerStateEntry] = {}
        for header, first_offset in batches:
            pid = header.producer_id
            if not header.has_producer_id:
                continue
            current = self._producers.get(pid)
            if current is not None:
                if client:
                    duplicate = current.find_duplicate(
                        header.producer_epoch, header.base_sequence, header.last_sequence
                    )
                    if duplicate is not None:
                        return ProducerCheck(duplicate=duplicate)
            else:
                current = ProducerStateEntry(pid)
            pending = updates.get(pid)
            if pending is None:
                pending = current.pending()
            problem = _check_batch(pending, current, header, first_offset, client)
            if problem is not None:
                return ProducerCheck(error=problem[0], message=problem[1])
            pending.add_batch(header.producer_epoch, _metadata(header, first_offset))
            if header.is_transactional and pending.current_txn_first_offset < 0:
                pending.current_txn_first_offset = first_offset
            updates[pid] = pending
        return ProducerCheck(updates=updates)

    def check_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        *,
        commit: bool,
        coordinator_epoch: int,
        offset: int,
        timestamp: int,
        transaction_version: int = 0,
    ) -> ProducerCheck:
        """Check a COMMIT/ABORT marker to be written at ``offset`` (Kafka's
        appendEndTxnMarker): an epoch below the producer's (with transaction version 2, not
        above it, unless it retries a marker already written) is INVALID_PRODUCER_EPOCH, a
        coordinator epoch below the last marker's is TRANSACTION_COORDINATOR_FENCED. The
        marker completes the ongoing transaction if there is one."""
        current = self._producers.get(producer_id)
        pending = (current if current is not None else ProducerStateEntry(producer_id)).pending()
        known = pending.producer_epoch
        tv2 = transaction_version >= 2
        stale = producer_epoch <= known if tv2 else producer_epoch < known
        if stale and not (tv2 and producer_epoch == known and pending.current_txn_first_offset < 0):
            return ProducerCheck(
                error=ErrorCode.INVALID_PRODUCER_EPOCH,
                message=f"Epoch of producer {producer_id} at offset {offset} is "
                f"{producer_epoch}, which is {'<=' if tv2 else '<'} the last seen epoch {known}",
            )
        if pending.coordinator_epoch > coordinator_epoch:
            return ProducerCheck(
                error=ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                message=f"Invalid coordinator epoch for producerId {producer_id} at offset "
                f"{offset}: {coordinator_epoch} (zombie), {pending.coordinator_epoch} (current)",
            )
        completed = None
        if pending.current_txn_first_offset >= 0:
            completed = CompletedTxn(
                producer_id,
                pending.current_txn_first_offset,
                offset,
                not commit,
                self._last_stable_offset_after(producer_id, offset),
            )
        pending.end_txn(producer_epoch, coordinator_epoch, timestamp)
        return ProducerCheck(updates={producer_id: pending}, completed=completed)

    def apply(self, check: ProducerCheck, end_offset: int) -> None:
        """Commit the pending updates of a successful append ending at ``end_offset``."""
        for pid, pending in check.updates.items():
            current = self._producers.get(pid)
            if current is None:
                self._producers[pid] = pending
                if pending.current_txn_first_offset >= 0:
                    self._start_txn(pending.current_txn_first_offset, pid)
            else:
                if pending.current_txn_first_offset >= 0 > current.current_txn_first_offset:
                    self._start_txn(pending.current_txn_first_offset, pid)
                current.merge(pending)
        if check.completed is not None:
            self._complete_txn(check.completed)
        self.map_end_offset = end_offset

    def replay(
        self, header: BatchHeader, marker: tuple[bool, int] | None = None
    ) -> CompletedTxn | None:
        """Rebuild state from a batch already in the log (load, follower): no checks.
        ``marker`` is ``(commit, coordinator epoch)`` of a control batch's COMMIT/ABORT
        record (None for an empty or other control batch). Returns the transaction a marker
        completes."""
        completed = None
        if header.has_producer_id:
            pid = header.producer_id
            entry = self._producers.get(pid)
            if entry is None:
                entry = self._producers[pid] = ProducerStateEntry(pid)
            if not header.is_control:
                entry.add_batch(header.producer_epoch, _metadata(header, header.base_offset))
                if header.is_transactional and entry.current_txn_first_offset < 0:
                    entry.current_txn_first_offset = header.base_offset
                    self._start_txn(header.base_offset, pid)
            elif marker is not None:
                if entry.current_txn_first_offset >= 0:
                    completed = CompletedTxn(
                        pid,
                        entry.current_txn_first_offset,
                        header.base_offset,
                        not marker[0],
                        self._last_stable_offset_after(pid, header.base_offset),
                    )
                    self._complete_txn(completed)
                entry.end_txn(header.producer_epoch, marker[1], header.max_timestamp)
        self.map_end_offset = header.next_offset
        return completed

    def savepoint(self, producer_ids: Iterable[int]) -> ProducerSavepoint:
        """Capture the state ``replay`` of these producers' batches may change."""
        entries = {}
        for pid in producer_ids:
            entry = self._producers.get(pid)
            entries[pid] = entry.copy() if entry is not None else None
        return ProducerSavepoint(
            entries,
            dict(self._ongoing),
            dict(self._unreplicated),
            self.first_unstable_offset,
            self.map_end_offset,
        )

    def restore(self, savepoint: ProducerSavepoint) -> None:
        """Undo the replays made since ``savepoint`` was taken."""
        for pid, entry in savepoint.entries.items():
            if entry is None:
                self._producers.pop(pid, None)
            else:
                self._producers[pid] = entry
        self._ongoing = dict(savepoint.ongoing)
        self._unreplicated = dict(savepoint.unreplicated)
        self.first_unstable_offset = savepoint.first_unstable_offset
        self.map_end_offset = savepoint.map_end_offset

    def remove_expired_producers(self, now_ms: int) -> int:
        expired = [pid for pid, e in self._producers.items() if self._is_expired(e, now_ms)]
        for pid in expired:
            del self._producers[pid]
        return len(expired)

    def _is_expired(self, entry: ProducerStateEntry, now_ms: int) -> bool:
        return (
            entry.current_txn_first_offset < 0
            and now_ms - entry.last_timestamp >= self.producer_id_expiration_ms
        )

    # -- snapshots ----------------------------------------------------------------------

    def snapshot_offsets(self) -> list[int]:
        offsets = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(PRODUCER_SNAPSHOT_FILE_SUFFIX):
                offset = offset_from_file_name(name)
                if offset is not None:
                    offsets.append(offset)
        return sorted(offsets)

    def take_snapshot(self) -> Path | None:
        """Write ``<map_end_offset>.snapshot`` unless one at that offset already exists.

        Unlike Kafka, which skips the snapshot when the log start offset moved up to the
        end offset (so a restart forgets the producers), a missing file is always written.
        """
        path = producer_snapshot_file(self.directory, self.map_end_offset)
        if self.map_end_offset <= self._last_snap_offset and path.exists():
            return None
        write_atomically(path, write_snapshot(self._producers.values()), sync=self._sync)
        self._last_snap_offset = self.map_end_offset
        return path

    def _delete_snapshot(self, offset: int) -> None:
        producer_snapshot_file(self.directory, offset).unlink(missing_ok=True)

    def delete_snapshots_before(self, offset: int) -> None:
        for snap in self.snapshot_offsets():
            if snap < offset:
                self._delete_snapshot(snap)

    def remove_stray_snapshots(self, segment_base_offsets: Iterable[int]) -> None:
        """Keep snapshots at segment base offsets, plus the newest one if it is above every
        segment base (the one written at clean shutdown)."""
        bases = set(segment_base_offsets)
        top = max(bases, default=-1)
        snaps = self.snapshot_offsets()
        for i, snap in enumerate(snaps):
            newest = i == len(snaps) - 1
            if snap not in bases and not (newest and snap > top):
                self._delete_snapshot(snap)

    def load(
        self,
        log_start_offset: int,
        log_end_offset: int,
        now_ms: int,
        *,
        max_offset: int | None = None,
    ) -> int:
        """Reset the state to the newest readable snapshot at or below ``log_end_offset``
        (deleting newer and corrupt ones) and return the offset the log must be replayed
        from; with no snapshot that is ``log_start_offset``. ``max_offset`` picks a snapshot
        at or below it (keeping the newer ones): a replay that must see those batches."""
        self._producers.clear()
        self._clear_txns()
        for snap in self.snapshot_offsets():
            if snap > log_end_offset:
                self._delete_snapshot(snap)
        limit = log_end_offset if max_offset is None else min(max_offset, log_end_offset)
        for snap in reversed(self.snapshot_offsets()):
            path = producer_snapshot_file(self.directory, snap)
            try:
                entries = read_snapshot(path.read_bytes())
            except (SnapshotError, OSError) as e:
                logger.warning("deleting unreadable producer snapshot %s: %s", path, e)
                self._delete_snapshot(snap)
                continue
            if snap > limit:
                continue  # readable, kept for later loads, too new for this one
            for entry in entries:
                if not self._is_expired(entry, now_ms):
                    self._producers[entry.producer_id] = entry
            ongoing = [e for e in self._producers.values() if e.current_txn_first_offset >= 0]
            for entry in sorted(ongoing, key=lambda e: e.current_txn_first_offset):
                self._start_txn(entry.current_txn_first_offset, entry.producer_id)
            self.map_end_offset = self._last_snap_offset = snap
            logger.info("loaded %d producers from snapshot %s", len(self._producers), path)
            return snap
        self.map_end_offset = self._last_snap_offset = log_start_offset
        return log_start_offset

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self._producers.clear()
        self._clear_txns()
        for snap in self.snapshot_offsets():
            self._delete_snapshot(snap)
        self._last_snap_offset = 0
        self.map_end_offset = offset

    def on_log_start_offset_incremented(self, log_start_offset: int) -> None:
        # Producer ids outlive their data (KAFKA-7190): only bookkeeping moves forward.
        if self.map_end_offset < log_start_offset:
            self.map_end_offset = log_start_offset
        self._remove_unreplicated_below(log_start_offset)
        snaps = self.snapshot_offsets()
        self._last_snap_offset = snaps[-1] if snaps else log_start_offset


def write_snapshot(entries: Iterable[ProducerStateEntry]) -> bytes:
    """Encode producer entries as a Kafka v1 snapshot (one entry per retained batch)."""
    body = bytearray()
    count = 0
    for entry in entries:
        batches = list(entry.batches)
        if not batches:
            body += _ENTRY.pack(
                entry.producer_id,
                entry.producer_epoch,
                NO_SEQUENCE,
                -1,
                0,
                entry.last_timestamp,
                entry.coordinator_epoch,
                entry.current_txn_first_offset,
            )
            count += 1
            continue
        for batch in batches:
            body += _ENTRY.pack(
                entry.producer_id,
                entry.producer_epoch,
                batch.last_seq,
                batch.last_offset,
                batch.last_offset - batch.first_offset,
                batch.timestamp,
                entry.coordinator_epoch,
                entry.current_txn_first_offset,
            )
            count += 1
    tail = struct.pack(">i", count) + bytes(body)
    return struct.pack(">hI", SNAPSHOT_VERSION, crc32c(tail)) + tail


def read_snapshot(data: bytes) -> list[ProducerStateEntry]:
    """Decode a snapshot written by us or by Kafka. Raises SnapshotError."""
    if len(data) < _PREFIX.size:
        raise SnapshotError(f"snapshot of {len(data)} bytes is truncated")
    version, crc, count = _PREFIX.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(f"snapshot has unknown version {version}")
    if crc32c(data[_CRC_START:]) != crc:
        raise SnapshotError("snapshot CRC mismatch")
    if count < 0 or len(data) != _PREFIX.size + count * _ENTRY.size:
        raise SnapshotError(f"snapshot length {len(data)} does not fit {count} entries")
    producers: dict[int, ProducerStateEntry] = {}
    for i in range(count):
        pid, epoch, last_seq, last_offset, delta, ts, coord_epoch, txn_first = _ENTRY.unpack_from(
            data, _PREFIX.size + i * _ENTRY.size
        )
        entry = producers.get(pid)
        if entry is None or entry.producer_epoch != epoch:
            entry = producers[pid] = ProducerStateEntry(pid, epoch)
        if last_offset >= 0:
            entry.batches.append(
                BatchMetadata(
                    decrement_sequence(last_seq, delta),
                    last_seq,
                    last_offset - delta,
                    last_offset,
                    ts,
                )
            )
        entry.coordinator_epoch = coord_epoch
        entry.current_txn_first_offset = txn_first
        entry.last_timestamp = ts
    return list(producers.values())
