"""The log of one partition: Kafka's UnifiedLog (local segments only), transactions
included."""

from __future__ import annotations

import bisect
import logging
import random
import shutil
from pathlib import Path

from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    NO_PARTITION_LEADER_EPOCH,
    NO_TIMESTAMP,
    BatchHeader,
    ReadableBuffer,
    WritableBuffer,
    iter_batch_headers,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)
from metamorphostreams.protocol.records import build_end_txn_marker
from metamorphostreams.storage._append_validation import validate_client_records
from metamorphostreams.storage._follower_log import FollowerLog
from metamorphostreams.storage._log_flush import LogFlushing
from metamorphostreams.storage._record_checks import PRODUCER_COMPRESSION, check_records
from metamorphostreams.storage._retention import (
    Predicate,
    below_log_start,
    deletable_segments,
    over_retention_bytes,
    over_retention_ms,
)
from metamorphostreams.storage._segment_swap import SegmentSwapping
from metamorphostreams.storage.leader_epoch import LeaderEpochFileCache
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_files import LEADER_EPOCH_CHECKPOINT_FILE
from metamorphostreams.storage.log_loader import load_log, rebuild_producer_state
from metamorphostreams.storage.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    AppendOrigin,
    ProducerCheck,
    ProducerInfo,
    ProducerStateManager,
)
from metamorphostreams.storage.results import AppendResult, FileRegion, ReadResult, RecordError
from metamorphostreams.storage.segment import AppendedBatch, LogSegment
from metamorphostreams.storage.transaction_index import AbortedTxn, collect_aborted

__all__ = ["DELETE_RECORDS_HIGH_WATERMARK", "PartitionLog"]

logger = logging.getLogger("metamorphostreams.storage")

DELETE_RECORDS_HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK

# Errors Kafka reports without the log start offset (ReplicaManager maps these exceptions to
# LogAppendInfo.UNKNOWN_LOG_APPEND_INFO); the others carry it.
_ERRORS_WITHOUT_LOG_START = frozenset(
    {ErrorCode.CORRUPT_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE}
)


class PartitionLog(LogFlushing, SegmentSwapping, FollowerLog):
    """Segments of one partition with the offsets Kafka tracks for it.

    Invariants: ``log_start_offset <= last_stable_offset <= high_watermark <=
    log_end_offset``; segments are ordered by base offset, only the last (active) one is
    appended to; the recovery point is the offset below which everything is fsynced; each
    ABORT marker of a transaction with data has an entry in its segment's ``.txnindex``.
    Appends assign offsets by patching the request's batches in place and write them with
    one ``pwrite``; a follower's appends (``FollowerLog``) write the leader's bytes as
    they are. Not task-safe: the broker calls it from one thread (the event loop).
    """

    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        segments: list[LogSegment],
        log_start_offset: int,
        log_end_offset: int,
        recovery_point: int,
        leader_epochs: LeaderEpochFileCache,
        producer_state: ProducerStateManager,
        now_ms: int,
        fsync: bool,
    ) -> None:
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._log_start_offset = log_start_offset
        self._log_end_offset = log_end_offset
        self._high_watermark = log_end_offset
        self._recovery_point = recovery_point
        self.leader_epochs = leader_epochs
        self.producer_state = producer_state
        self._fsync = fsync
        self._clock_ms = now_ms
        self._last_flush_ms = now_ms
        self._pending_deletes: list[tuple[int, LogSegment]] = []
        self._roll_flush_offset = recovery_point
        self._roll_jitter_ms = self._new_jitter()
        # Single replica: the high watermark follows the log end offset. Replication
        # turns this off and drives ``update_high_watermark`` instead.
        self.hw_follows_leo = True
        producer_state.on_high_watermark_updated(self._high_watermark)

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        now_ms: int,
        recovery_point: int,
        log_start_offset: int | None,
        clean_shutdown: bool,
        high_watermark: int | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        fsync: bool = True,
    ) -> PartitionLog:
        """Open (creating if needed) the partition directory, recover it after an unclean
        shutdown, rebuild producer state. ``fsync=False`` skips every fsync (tests, dev)."""
        directory.mkdir(parents=True, exist_ok=True)
        epoch_path = directory / LEADER_EPOCH_CHECKPOINT_FILE
        leader_epochs = LeaderEpochFileCache(epoch_path, sync=fsync)
        loaded = load_log(
            directory,
            config,
            now_ms=now_ms,
            recovery_point=recovery_point,
            log_start_offset=log_start_offset,
            clean_shutdown=clean_shutdown,
            leader_epochs=leader_epochs,
        )
        if not epoch_path.exists():
            leader_epochs.clear()  # writes the (empty) checkpoint, as Kafka always has one
        producer_state = ProducerStateManager(
            directory, producer_id_expiration_ms=producer_id_expiration_ms, sync=fsync
        )
        rebuild_producer_state(
            producer_state,
            loaded.segments,
            log_start_offset=loaded.log_start_offset,
            log_end_offset=loaded.log_end_offset,
            now_ms=now_ms,
            rebuild_txn_indexes=loaded.recovered,
        )
        log = cls(
            directory,
            topic,
            partition,
            config,
            segments=loaded.segments,
            log_start_offset=loaded.log_start_offset,
            log_end_offset=loaded.log_end_offset,
            recovery_point=loaded.recovery_point,
            leader_epochs=leader_epochs,
            producer_state=producer_state,
            now_ms=now_ms,
            fsync=fsync,
        )
        if high_watermark is not None:
            log.update_high_watermark(high_watermark)
        logger.info(
            "%s-%d: loaded %d segments, log start %d, log end %d, recovery point %d",
            topic,
            partition,
            len(loaded.segments),
            loaded.log_start_offset,
            loaded.log_end_offset,
            loaded.recovery_point,
        )
        return log

    # -- offsets ------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def last_stable_offset(self) -> int:
        """The first offset of the oldest transaction not yet decided and replicated
        (Kafka's firstUnstableOffset, at least the log start offset), capped at the high
        watermark: read_committed consumers read below it."""
        first = self.producer_state.first_unstable_offset
        if first is None or first >= self._high_watermark:
            return self._high_watermark
        return max(first, self._log_start_offset)

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def latest_epoch(self) -> int:
        """The newest leader epoch in the cache, or -1 (NO_PARTITION_LEADER_EPOCH)."""
        latest = self.leader_epochs.latest_epoch
        return NO_PARTITION_LEADER_EPOCH if latest is None else latest

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segments(self) -> list[LogSegment]:
        """The live segments, oldest first (read-only view for tests and tools)."""
        return list(self._segments)

    def update_high_watermark(self, offset: int) -> int:
        """Set the high watermark, clamped to [log start, log end]; returns it."""
        self._high_watermark = min(max(offset, self._log_start_offset), self._log_end_offset)
        self.producer_state.on_high_watermark_updated(self._high_watermark)
        return self._high_watermark

    def become_leader(self, leader_epoch: int) -> None:
        """Start ``leader_epoch`` at the log end offset, as Kafka does when a replica becomes
        leader, so that even an empty log answers for its epoch."""
        if leader_epoch > self.latest_epoch:
            self.leader_epochs.assign(leader_epoch, self._log_end_offset)

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def _new_jitter(self) -> int:
        jitter = self.config.segment_jitter_ms
        return random.randrange(min(jitter, self.config.segment_ms)) if jitter > 0 else 0

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    # -- append -------------------------------------------------------------------------

    def _failure(
        self,
        error: ErrorCode,
        message: str | None,
        record_errors: list[RecordError] | None = None,
    ) -> AppendResult:
        start = -1 if error in _ERRORS_WITHOUT_LOG_START else self._log_start_offset
        return AppendResult(
            error,
            log_start_offset=start,
            record_errors=record_errors or [],
            error_message=message,
        )

    def append_as_leader(
        self,
        records: WritableBuffer,
        *,
        leader_epoch: int,
        now_ms: int,
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> AppendResult:
        """Validate, assign offsets to and append the batches of one Produce partition.

        Header-level validation only (magic, sizes, CRC, counts, baseOffset 0, timestamps
        against message.timestamp.{before,after}.max.ms using each batch's base and max
        timestamp), then producer checks (epoch, sequence, transaction state). A duplicate
        of one of a producer's last five batches is answered with the original offsets and
        nothing is written; Kafka then reports the original batch's maxTimestamp as
        ``log_append_time``. A transactional batch starts its producer's transaction when
        none is ongoing. Nothing is written when any batch fails. ``records`` is patched in
        place (baseOffset, partitionLeaderEpoch, LogAppendTime).

        ``AppendOrigin.COORDINATOR``: a coordinator's own records (transactional offset
        commits, base sequence -1): no duplicate, sequence or client-only batch checks, as
        in Kafka. Control batches are INVALID_RECORD from any origin (see
        ``append_control_marker``)."""
        self._tick(now_ms)
        config = self.config
        valid = validate_client_records(
            records,
            config,
            now_ms=now_ms,
            partition_name=f"{self.topic}-{self.partition}",
            from_client=origin is AppendOrigin.CLIENT,
        )
        if valid.error is not ErrorCode.NONE:
            return self._failure(valid.error, valid.message, valid.record_errors)
        headers = valid.headers
        if config.compact_enabled or config.compression_type != PRODUCER_COMPRESSION:
            checked = check_records(
                records, headers, config, partition_name=f"{self.topic}-{self.partition}"
            )
            if checked.error is not ErrorCode.NONE:
                return self._failure(checked.error, checked.message, checked.record_errors)
            if checked.records is not None:  # rebuilt in the topic's codec
                records = checked.records
                headers = list(iter_batch_headers(records))

        offsets: list[int] = []
        next_offset = self._log_end_offset
        for _, header in headers:
            offsets.append(next_offset)
            next_offset += header.last_offset_delta + 1

        producer_check = self.producer_state.check_append(
            [(header, offset) for (_, header), offset in zip(headers, offsets, strict=True)],
            origin,
        )
        if producer_check.duplicate is not None:
            dup = producer_check.duplicate
            return AppendResult(
                ErrorCode.NONE,
                dup.first_offset,
                dup.last_offset,
                dup.timestamp,
                self._log_start_offset,
            )
        if producer_check.error is not ErrorCode.NONE:
            return self._failure(producer_check.error, producer_check.message)
        return self._append(records, headers, offsets, producer_check, leader_epoch, now_ms)

    def append_control_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        *,
        commit: bool,
        coordinator_epoch: int,
        leader_epoch: int,
        now_ms: int,
        transaction_version: int = 0,
    ) -> AppendResult:
        """Write a COMMIT or ABORT marker for ``producer_id`` (WriteTxnMarkers; Kafka
        appends it as leader with the coordinator origin).

        A marker epoch below the producer's is INVALID_PRODUCER_EPOCH (with
        ``transaction_version`` 2, an epoch not above it, unless the marker is a retry of
        one already written); a coordinator epoch below the last marker's is
        TRANSACTION_COORDINATOR_FENCED. The marker ends the producer's ongoing transaction;
        an ABORT of one gets its ``.txnindex`` entry in the segment holding the marker. A
        marker without an ongoing transaction is written all the same.
        """
        self._tick(now_ms)
        offset = self._log_end_offset
        check = self.producer_state.check_marker(
            producer_id,
            producer_epoch,
            commit=commit,
            coordinator_epoch=coordinator_epoch,
            offset=offset,
            timestamp=now_ms,
            transaction_version=transaction_version,
        )
        if check.error is not ErrorCode.NONE:
            return self._failure(check.error, check.message)
        records = bytearray(
            build_end_txn_marker(
                commit=commit,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                coordinator_epoch=coordinator_epoch,
                timestamp=now_ms,
            )
        )
        header = BatchHeader.parse(records, 0)
        return self._append(records, [(0, header)], [offset], check, leader_epoch, now_ms)

    def _append(
        self,
        records: WritableBuffer,
        headers: list[tuple[int, BatchHeader]],
        offsets: list[int],
        producer_check: ProducerCheck,
        leader_epoch: int,
        now_ms: int,
    ) -> AppendResult:
        """Patch, write and account for validated batches starting at the log end."""
        config = self.config
        first_offset = offsets[0]
        last_offset = offsets[-1] + headers[-1][1].last_offset_delta
        next_offset = last_offset + 1
        completed = producer_check.completed
        aborted = [completed.aborted_txn()] if completed and completed.is_aborted else []
        log_append = config.log_append_time
        for (pos, _), offset in zip(headers, offsets, strict=True):
            set_base_offset(records, pos, offset)
            set_partition_leader_epoch(records, pos, leader_epoch)
            if log_append:
                set_log_append_time(records, pos, now_ms)
        appended = [
            (pos, h.size, offset + h.last_offset_delta, now_ms if log_append else h.max_timestamp)
            for (pos, h), offset in zip(headers, offsets, strict=True)
        ]
        segment = self._segment_for_append(records, appended, first_offset, now_ms)
        if isinstance(segment, AppendResult):
            return segment
        failure = self._write(segment, records, appended, aborted, next_offset)
        if failure is not None:
            return failure
        if leader_epoch >= 0:
            self._assign_epoch(leader_epoch, first_offset)
        self.producer_state.apply(producer_check, next_offset)
        if self.hw_follows_leo:
            self._high_watermark = next_offset
            self.producer_state.on_high_watermark_updated(next_offset)
        return AppendResult(
            ErrorCode.NONE,
            first_offset,
            last_offset,
            now_ms if config.log_append_time else NO_TIMESTAMP,
            self._log_start_offset,
        )

    def _segment_for_append(
        self,
        records: ReadableBuffer,
        appended: list[AppendedBatch],
        first_offset: int,
        now_ms: int,
    ) -> LogSegment | AppendResult:
        """The segment ``records`` go to, rolled first if they do not fit the active one;
        KAFKA_STORAGE_ERROR when a new segment cannot be made."""
        max_timestamp = max(batch[3] for batch in appended)
        try:
            return self._maybe_roll(
                len(records), max_timestamp, first_offset, appended[-1][2], now_ms
            )
        except OSError as e:  # disk full, I/O error: Kafka's KafkaStorageException
            logger.error("%s-%d: cannot roll a new segment: %s", self.topic, self.partition, e)
            return self._failure(ErrorCode.KAFKA_STORAGE_ERROR, str(e))

    def _write(
        self,
        segment: LogSegment,
        records: ReadableBuffer,
        appended: list[AppendedBatch],
        aborted: list[AbortedTxn],
        next_offset: int,
    ) -> AppendResult | None:
        """Write ``records`` and the ``.txnindex`` entries of ``aborted`` at the end of
        ``segment``, fsynced when flush.messages says so, and move the log end offset (and
        the recovery point when flushed) to ``next_offset``. On failure everything written
        is undone and KAFKA_STORAGE_ERROR returned."""
        flush = next_offset - self._recovery_point >= self.config.flush_messages
        mark = segment.mark()
        try:
            segment.append(records, appended)  # undoes itself when the write fails
            for txn in aborted:
                segment.txn_index.append(txn)  # likewise
            if flush:
                self._sync(next_offset)
        except OSError as e:
            logger.error("%s-%d: append failed: %s", self.topic, self.partition, e)
            segment.rollback(mark)  # a failed fsync too: nothing is acknowledged
            if aborted:
                self._drop_txn_entry(segment, aborted[0].last_offset)
            return self._failure(ErrorCode.KAFKA_STORAGE_ERROR, str(e))
        # From here on the append is done; nothing below may fail it.
        self._log_end_offset = next_offset
        if flush:
            self._recovery_point = next_offset
        return None

    def _drop_txn_entry(self, segment: LogSegment, marker_offset: int) -> None:
        try:
            segment.txn_index.truncate_to(marker_offset)
        except OSError as e:
            logger.error("%s-%d: cannot cut %s back: %s", self.topic, self.partition, segment, e)

    def _assign_epoch(self, epoch: int, start_offset: int) -> None:
        try:
            self.leader_epochs.assign(epoch, start_offset)
        except OSError as e:
            # the cache holds the entry; its file is written again at the next change/close
            logger.error(
                "%s-%d: cannot write the leader epoch checkpoint: %s", self.topic, self.partition, e
            )

    # -- rolling and flushing -----------------------------------------------------------

    def _maybe_roll(
        self,
        messages_size: int,
        max_timestamp: int,
        first_offset: int,
        max_offset: int,
        now_ms: int,
    ) -> LogSegment:
        segment = self._segments[-1]
        if segment.should_roll(
            max_segment_bytes=self.config.segment_bytes,
            max_segment_ms=self.config.max_segment_ms,
            messages_size=messages_size,
            max_timestamp_in_messages=max_timestamp,
            max_offset_in_messages=max_offset,
            now_ms=now_ms,
            roll_jitter_ms=self._roll_jitter_ms,
        ):
            return self.roll(now_ms, expected_next_offset=first_offset)
        return segment

    def roll(self, now_ms: int | None = None, *, expected_next_offset: int = 0) -> LogSegment:
        """Start a new active segment at the log end offset, or at
        ``expected_next_offset`` when a replica append starts above it (the leader's
        cleaner removed the batches between); no-op if the active segment is empty and
        already there. Snapshot producer state and fsync the old segments."""
        now = self._clock_ms if now_ms is None else now_ms
        self._tick(now)
        new_base = max(self._log_end_offset, expected_next_offset)
        active = self._segments[-1]
        if active.base_offset == new_base:
            return active
        active.on_become_inactive()
        segment = LogSegment.create(
            self.dir,
            new_base,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_size=self.config.segment_index_bytes,
            now_ms=now,
        )
        self._segments.append(segment)
        self._bases.append(new_base)
        self._roll_jitter_ms = self._new_jitter()
        self.producer_state.map_end_offset = new_base
        try:
            self.producer_state.take_snapshot()
        except OSError as e:
            # Only an optimisation: a restart replays from an older snapshot instead.
            logger.warning(
                "%s-%d: no producer snapshot at %d: %s", self.topic, self.partition, new_base, e
            )
        logger.info("%s-%d: rolled new segment at %d", self.topic, self.partition, new_base)
        self._roll_flush_offset = new_base  # fsynced later, off the append path
        return segment

    # -- read ---------------------------------------------------------------------------

    def _result(self, error: ErrorCode, regions: list[FileRegion], size: int) -> ReadResult:
        return ReadResult(
            error,
            regions,
            size,
            self._high_watermark,
            self._log_start_offset,
            self._log_end_offset,
            self.last_stable_offset,
        )

    def _segment_index_for(self, offset: int) -> int:
        return max(bisect.bisect_right(self._bases, offset) - 1, 0)

    def read(
        self, fetch_offset: int, max_bytes: int, *, max_offset: int, min_one_message: bool
    ) -> ReadResult:
        """Whole batches from the one holding ``fetch_offset``, ending before
        ``max_offset`` (the high watermark for consumers), within ``max_bytes`` unless
        ``min_one_message`` lets the first batch through (KIP-74). Reads one segment, like
        Kafka. OFFSET_OUT_OF_RANGE outside [log start offset, log end offset]."""
        if fetch_offset < self._log_start_offset or fetch_offset > self._log_end_offset:
            return self._result(ErrorCode.OFFSET_OUT_OF_RANGE, [], 0)
        max_offset = min(max_offset, self._log_end_offset)
        if fetch_offset >= max_offset:
            return self._result(ErrorCode.NONE, [], 0)
        try:
            for i in range(self._segment_index_for(fetch_offset), len(self._segments)):
                segment = self._segments[i]
                if segment.base_offset >= max_offset:
                    break
                next_base = self._bases[i + 1] if i + 1 < len(self._bases) else self._log_end_offset
                max_position: int | None = None
                if max_offset < next_base:
                    found = segment.translate_offset(max_offset)
                    max_position = found[0] if found is not None else None
                region = segment.read(
                    fetch_offset,
                    max_bytes,
                    max_position=max_position,
                    min_one_message=min_one_message,
                )
                if region is None:
                    continue
                position, size = region
                if size == 0:
                    break
                return self._result(
                    ErrorCode.NONE, [FileRegion(segment.file, position, size)], size
                )
        except (OSError, DecodeError) as e:
            logger.error("%s-%d: read failed: %s", self.topic, self.partition, e)
            return self._result(ErrorCode.KAFKA_STORAGE_ERROR, [], 0)
        return self._result(ErrorCode.NONE, [], 0)

    def collect_aborted_transactions(
        self, start_offset: int, upper_bound_offset: int
    ) -> list[tuple[int, int]]:
        """``(producer id, first offset)`` of the aborted transactions overlapping
        [start_offset, upper_bound_offset), for a read_committed fetch (Kafka's
        collectAbortedTransactions): the transaction indexes of the segment holding
        ``start_offset`` and the later ones, until an entry's LSO reaches the upper bound.
        Entries are cached in memory; segments without a ``.txnindex`` cost no I/O."""
        first = self._segment_index_for(start_offset)
        indexes = (segment.txn_index for segment in self._segments[first:])
        return collect_aborted(indexes, start_offset, upper_bound_offset)

    def active_producers(self) -> list[ProducerInfo]:
        """The producers this partition remembers, for DescribeProducers."""
        return self.producer_state.active_producers()

    # -- offsets by time / epoch --------------------------------------------------------

    def fetch_offset_by_timestamp(self, timestamp: int) -> tuple[int, int, int] | None:
        """``(offset, timestamp, leader epoch)`` of the first record whose timestamp is
        >= ``timestamp`` (ListOffsets); None if there is none. Epoch -1 when unknown."""
        for segment in self._segments:
            if segment.largest_timestamp >= timestamp:
                return segment.find_offset_by_timestamp(timestamp, self._log_start_offset)
        return None

    def earliest(self) -> tuple[int, int, int]:
        """ListOffsets EARLIEST: ``(log start offset, -1, epoch)``."""
        entry = self.leader_epochs.earliest_entry()
        epoch = entry[0] if entry is not None and entry[1] <= self._log_start_offset else -1
        return self._log_start_offset, NO_TIMESTAMP, epoch

    def latest(self) -> tuple[int, int, int]:
        """ListOffsets LATEST: ``(log end offset, -1, latest epoch)``."""
        return self._log_end_offset, NO_TIMESTAMP, self.latest_epoch

    def max_timestamp_offset(self) -> tuple[int, int, int] | None:
        """ListOffsets MAX_TIMESTAMP: ``(offset, timestamp, epoch)`` of the first record
        carrying the log's largest timestamp; None for an empty log."""
        best: LogSegment | None = None
        for segment in self._segments:
            if best is None or segment.max_timestamp_so_far > best.max_timestamp_so_far:
                best = segment
        return best.offset_of_max_timestamp() if best is not None else None

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: ``(leader epoch, end offset)``, ``(-1, -1)`` if unknown."""
        return self.leader_epochs.end_offset_for(epoch, self._log_end_offset)

    # -- deletion -----------------------------------------------------------------------

    def _increment_log_start_offset(self, offset: int, reason: str) -> None:
        if offset <= self._log_start_offset:
            return
        self._log_start_offset = offset
        logger.info(
            "%s-%d: log start offset -> %d (%s)", self.topic, self.partition, offset, reason
        )
        self.leader_epochs.truncate_from_start(offset)
        self.producer_state.on_log_start_offset_incremented(offset)

    def delete_records_before(self, offset: int) -> ErrorCode:
        """DeleteRecords: raise the log start offset to ``offset`` (-1 = the high
        watermark) and delete the segments wholly below it."""
        if offset == DELETE_RECORDS_HIGH_WATERMARK:
            offset = self._high_watermark
        if offset < 0 or offset > self._high_watermark:
            return ErrorCode.OFFSET_OUT_OF_RANGE
        self._increment_log_start_offset(offset, "client record deletion")
        self._delete_old_segments(below_log_start(self._log_start_offset), "log start offset")
        return ErrorCode.NONE

    def _delete_old_segments(self, predicate: Predicate, reason: str) -> int:
        deletable = deletable_segments(
            self._segments,
            high_watermark=self._high_watermark,
            log_end_offset=self._log_end_offset,
            predicate=predicate,
        )
        if not deletable:
            return 0
        if len(deletable) == len(self._segments):
            self.roll()  # a log always keeps one segment: start a fresh one first
        count = len(deletable)
        del self._segments[:count]
        del self._bases[:count]
        for segment in deletable:
            logger.info("%s-%d: deleting %s (%s)", self.topic, self.partition, segment, reason)
        self._schedule_delete(deletable)
        self._increment_log_start_offset(self._bases[0], reason)
        self.producer_state.delete_snapshots_before(self._bases[0])
        return count

    def enforce_retention(self, now_ms: int) -> int:
        """Delete segments below the log start offset and, for cleanup.policy=delete,
        those past retention.bytes / retention.ms (measured on each segment's largest
        timestamp); returns how many segments went."""
        self.delete_expired_files(now_ms)
        config = self.config
        deleted = self._delete_old_segments(
            below_log_start(self._log_start_offset), "log start offset"
        )
        if not config.delete_enabled:
            return deleted
        if config.retention_bytes >= 0 and self.size_in_bytes >= config.retention_bytes:
            deleted += self._delete_old_segments(
                over_retention_bytes(self.size_in_bytes, config.retention_bytes),
                f"retention.bytes {config.retention_bytes}",
            )
        if config.retention_ms >= 0:
            deleted += self._delete_old_segments(
                over_retention_ms(now_ms, config.retention_ms),
                f"retention.ms {config.retention_ms}",
            )
        return deleted

    def remove_expired_producers(self, now_ms: int) -> int:
        self._tick(now_ms)
        return self.producer_state.remove_expired_producers(now_ms)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Flush, snapshot producer state at the log end offset and close every file.
        Files are closed even when a write fails; the error is raised afterwards (the
        caller then must not claim a clean shutdown)."""
        error: OSError | None = None
        try:
            self._segments[-1].on_become_inactive()  # the time index gets the max timestamp
            self.flush()
            if self.leader_epochs.dirty:
                self.leader_epochs.write()
            self.producer_state.map_end_offset = self._log_end_offset
            self.producer_state.take_snapshot()
        except OSError as e:
            error = e
        finally:
            for segment in self._segments:
                if not segment.close_quietly() and error is None:
                    error = OSError(f"cannot close {segment} of {self.topic}-{self.partition}")
            for _, segment in self._pending_deletes:
                segment.delete()
            self._pending_deletes = []
        if error is not None:
            raise error

    def close_handlers(self) -> None:
        """Close every file without writing anything (log dir failure, deletion)."""
        for segment in self._segments:
            segment.close_handlers()
        for _, segment in self._pending_deletes:
            segment.close_handlers()

    def rename_dir(self, directory: Path) -> None:
        """Move the partition directory (deletion renames it ``...-delete``)."""
        self.dir.rename(directory)
        self.dir = directory
        for segment in self._segments:
            segment.set_directory(directory)
        for _, segment in self._pending_deletes:
            segment.set_directory(directory)
        self.leader_epochs.set_path(directory / LEADER_EPOCH_CHECKPOINT_FILE)
        self.producer_state.directory = directory

    def delete(self) -> None:
        """Close everything and remove the directory with all its files."""
        self.close_handlers()
        self._pending_deletes = []
        shutil.rmtree(self.dir, ignore_errors=True)
