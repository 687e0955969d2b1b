"""The log of one partition: Kafka's UnifiedLog (local segments only)."""

from __future__ import annotations

import bisect
import logging
import os
import random
import shutil
from pathlib import Path

from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    NO_PARTITION_LEADER_EPOCH,
    NO_TIMESTAMP,
    WritableBuffer,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)
from metamorphostreams.storage._append_validation import validate_client_records
from metamorphostreams.storage._retention import (
    Predicate,
    below_log_start,
    deletable_segments,
    over_retention_bytes,
    over_retention_ms,
)
from metamorphostreams.storage.flush_job import FlushJob
from metamorphostreams.storage.leader_epoch import LeaderEpochFileCache
from metamorphostreams.storage.log_config import LONG_MAX, LogConfig
from metamorphostreams.storage.log_files import LEADER_EPOCH_CHECKPOINT_FILE
from metamorphostreams.storage.log_loader import load_log, rebuild_producer_state
from metamorphostreams.storage.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ProducerStateManager,
)
from metamorphostreams.storage.results import AppendResult, FileRegion, ReadResult, RecordError
from metamorphostreams.storage.segment import LogSegment

__all__ = ["DELETE_RECORDS_HIGH_WATERMARK", "PartitionLog"]

logger = logging.getLogger("metamorphostreams.storage")

DELETE_RECORDS_HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK

# Errors Kafka reports without the log start offset (ReplicaManager maps these exceptions to
# LogAppendInfo.UNKNOWN_LOG_APPEND_INFO); the others carry it.
_ERRORS_WITHOUT_LOG_START = frozenset(
    {ErrorCode.CORRUPT_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE}
)


class PartitionLog:
    """Segments of one partition with the offsets Kafka tracks for it.

    Invariants: ``log_start_offset <= high_watermark <= log_end_offset``; segments are
    ordered by base offset, only the last (active) one is appended to; the recovery point
    is the offset below which everything is fsynced. Appends assign offsets by patching the
    request's batches in place and write them with one ``pwrite``. Not task-safe: the
    broker calls it from one thread (the event loop).
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
        return self._high_watermark  # no transactions yet

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
        return self._high_watermark

    def become_leader(self, leader_epoch: int) -> None:
        """Start ``leader_epoch`` at the log end offset, as Kafka does when a replica becomes
        leader, so that even an empty log answers for its epoch."""
        if leader_epoch > self.latest_epoch:
            self.leader_epochs.assign(leader_epoch, self._log_end_offset)

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def _tick(self, now_ms: int) -> None:
        self._clock_ms = max(self._clock_ms, now_ms)

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
        self, records: WritableBuffer, *, leader_epoch: int, now_ms: int
    ) -> AppendResult:
        """Validate, assign offsets to and append the batches of one Produce partition.

        Header-level validation only (magic, sizes, CRC, counts, baseOffset 0, timestamps
        against message.timestamp.{before,after}.max.ms using each batch's base and max
        timestamp), then idempotence checks. A duplicate of one of a producer's last five
        batches is answered with the original offsets and nothing is written; Kafka then
        reports the original batch's maxTimestamp as ``log_append_time``. Nothing is
        written when any batch fails. ``records`` is patched in place (baseOffset,
        partitionLeaderEpoch, LogAppendTime).
        """
        self._tick(now_ms)
        config = self.config
        valid = validate_client_records(
            records, config, now_ms=now_ms, partition_name=f"{self.topic}-{self.partition}"
        )
        if valid.error is not ErrorCode.NONE:
            return self._failure(valid.error, valid.message, valid.record_errors)
        headers = valid.headers

        first_offset = self._log_end_offset
        offsets: list[int] = []
        next_offset = first_offset
        for _, header in headers:
            offsets.append(next_offset)
            next_offset += header.last_offset_delta + 1
        last_offset = next_offset - 1

        producer_check = self.producer_state.check_append(
            [(header, offset) for (_, header), offset in zip(headers, offsets, strict=True)]
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
        max_timestamp = max(batch[3] for batch in appended)
        flush = next_offset - self._recovery_point >= config.flush_messages
        try:
            segment = self._maybe_roll(len(records), max_timestamp, last_offset, now_ms)
        except OSError as e:  # disk full, I/O error: Kafka's KafkaStorageException
            logger.error("%s-%d: cannot roll a new segment: %s", self.topic, self.partition, e)
            return self._failure(ErrorCode.KAFKA_STORAGE_ERROR, str(e))
        mark = segment.mark()
        try:
            segment.append(records, appended)  # undoes itself when the write fails
            if flush:
                self._sync(next_offset)
        except OSError as e:
            logger.error("%s-%d: append failed: %s", self.topic, self.partition, e)
            segment.rollback(mark)  # a failed fsync too: nothing is acknowledged
            return self._failure(ErrorCode.KAFKA_STORAGE_ERROR, str(e))
        # From here on the append is done; nothing below may fail it.
        self._log_end_offset = next_offset
        if flush:
            self._recovery_point = next_offset
        if leader_epoch >= 0:
            self._assign_epoch(leader_epoch, first_offset)
        self.producer_state.apply(producer_check, next_offset)
        if self.hw_follows_leo:
            self._high_watermark = next_offset
        return AppendResult(
            ErrorCode.NONE,
            first_offset,
            last_offset,
            now_ms if config.log_append_time else NO_TIMESTAMP,
            self._log_start_offset,
        )

    def _assign_epoch(self, epoch: int, start_offset: int) -> None:
        try:
            self.leader_epochs.assign(epoch, start_offset)
        except OSError as e:
            # the cache holds the entry; its file is written again at the next change/close
            logger.error(
                "%s-%d: cannot write the leader epoch checkpoint: %s", self.topic, self.partition, e
            )

    def _sync(self, end_offset: int) -> None:
        """fsync, here and now, every segment holding offsets between the recovery point
        and ``end_offset`` (which may be beyond the log end offset during an append)."""
        if self._fsync:
            FlushJob(self._sync_handles(self._recovery_point, end_offset), end_offset).run()

    # -- rolling and flushing -----------------------------------------------------------

    def _maybe_roll(
        self, messages_size: int, max_timestamp: int, max_offset: int, now_ms: int
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
            return self.roll(now_ms)
        return segment

    def roll(self, now_ms: int | None = None) -> LogSegment:
        """Start a new active segment at the log end offset (no-op if the active segment is
        empty and already there); snapshot producer state and fsync the old segments."""
        now = self._clock_ms if now_ms is None else now_ms
        self._tick(now)
        new_base = self._log_end_offset
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

    def begin_flush(self, up_to: int | None = None) -> FlushJob | None:
        """Prepare an fsync of everything below ``up_to`` (default: the log end offset)
        that is above the recovery point; None when there is nothing to do. Run the job
        anywhere, then hand it to ``complete_flush`` on the loop thread."""
        offset = self._log_end_offset if up_to is None else min(up_to, self._log_end_offset)
        if offset <= self._recovery_point:
            return None
        self._retry_epoch_checkpoint()
        fds = self._sync_handles(self._recovery_point, offset) if self._fsync else []
        return FlushJob(fds, offset)

    def _sync_handles(self, start: int, end: int) -> list[int]:
        """Descriptors (owned by the caller) of the segments holding [start, end)."""
        fds: list[int] = []
        try:
            for i, segment in enumerate(self._segments):
                last = i + 1 == len(self._segments)
                seg_end = end if last else self._bases[i + 1]
                if seg_end > start and segment.base_offset < end:
                    fds.extend(segment.sync_handles())
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def _retry_epoch_checkpoint(self) -> None:
        if self.leader_epochs.dirty:
            try:
                self.leader_epochs.write()
            except OSError as e:
                logger.error(
                    "%s-%d: cannot write the leader epoch checkpoint: %s",
                    self.topic,
                    self.partition,
                    e,
                )

    def complete_flush(self, job: FlushJob) -> None:
        """Advance the recovery point for a job that ran (a failed job changes nothing)."""
        job.close()
        if job.done:
            self._recovery_point = max(self._recovery_point, min(job.offset, self._log_end_offset))

    def _flush_up_to(self, offset: int) -> None:
        job = self.begin_flush(offset)
        if job is not None:
            job.run()
            self.complete_flush(job)

    def flush(self) -> None:
        """fsync everything up to the log end offset, here and now; the recovery point
        follows."""
        self._flush_up_to(self._log_end_offset)

    @property
    def rolled_unflushed(self) -> bool:
        """Segments were rolled since the last flush (Kafka flushes them in the
        background, moving the recovery point to the new segment's base)."""
        return self._roll_flush_offset > self._recovery_point

    def begin_scheduled_flush(self, now_ms: int) -> FlushJob | None:
        """The flush due now: everything when flush.ms has passed since the last flush,
        else the segments rolled since the last flush; None when nothing is due."""
        self._tick(now_ms)
        flush_ms = self.config.flush_ms
        if flush_ms != LONG_MAX and now_ms - self._last_flush_ms >= flush_ms:
            self._last_flush_ms = now_ms
            return self.begin_flush()
        if self.rolled_unflushed:
            return self.begin_flush(self._roll_flush_offset)
        return None

    def maybe_flush(self, now_ms: int) -> bool:
        """Run ``begin_scheduled_flush``'s job inline; True if something was flushed."""
        job = self.begin_scheduled_flush(now_ms)
        if job is None:
            return False
        job.run()
        self.complete_flush(job)
        return True

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

    def _schedule_delete(self, segments: list[LogSegment]) -> None:
        due = self._clock_ms + self.config.file_delete_delay_ms
        for segment in segments:
            segment.mark_deleted()
            self._pending_deletes.append((due, segment))

    def delete_expired_files(self, now_ms: int) -> int:
        """Close and unlink segment files whose file.delete.delay.ms has passed."""
        self._tick(now_ms)
        keep: list[tuple[int, LogSegment]] = []
        deleted = 0
        for due, segment in self._pending_deletes:
            if due <= now_ms:
                segment.delete()
                deleted += 1
            else:
                keep.append((due, segment))
        self._pending_deletes = keep
        return deleted

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

    # -- truncation (followers) ---------------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Remove everything from the batch holding ``offset`` on; returns False if the
        log ends at or before ``offset``. The new log end offset is where the remaining
        data really ends (Kafka assumes a batch boundary and uses ``offset``)."""
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        if offset >= self._log_end_offset:
            return False
        if offset < self._bases[0]:
            self.truncate_fully_and_start_at(offset)
            return True
        keep = bisect.bisect_right(self._bases, offset)
        dropped = self._segments[keep:]
        del self._segments[keep:]
        del self._bases[keep:]
        self._schedule_delete(dropped)
        self._segments[-1].truncate_to(offset)
        self._log_end_offset = self._segments[-1].read_next_offset()
        self._after_truncation()
        return True

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop every segment and restart the log empty at ``offset``."""
        self._schedule_delete(self._segments)
        segment = LogSegment.create(
            self.dir,
            offset,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_size=self.config.segment_index_bytes,
            now_ms=self._clock_ms,
        )
        self._segments = [segment]
        self._bases = [offset]
        self._log_start_offset = offset
        self._log_end_offset = offset
        self.leader_epochs.clear()
        self.producer_state.truncate_fully_and_start_at(offset)
        self._after_truncation()

    def _after_truncation(self) -> None:
        leo = self._log_end_offset
        self._log_start_offset = min(self._log_start_offset, leo)
        self._high_watermark = min(self._high_watermark, leo)
        self._recovery_point = min(self._recovery_point, leo)
        self.leader_epochs.truncate_from_end(leo)
        rebuild_producer_state(
            self.producer_state,
            self._segments,
            log_start_offset=self._log_start_offset,
            log_end_offset=leo,
            now_ms=self._clock_ms,
        )

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
