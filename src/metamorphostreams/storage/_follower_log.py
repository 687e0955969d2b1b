"""The follower side of a partition log, as a mixin of ``PartitionLog``: appends of the
batches a leader returned, kept as they are (Kafka's UnifiedLog.appendAsFollower), and
truncation (truncateTo, truncateFullyAndStartAt)."""

from __future__ import annotations

import bisect
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import NO_TIMESTAMP, BatchHeader, ReadableBuffer
from metamorphostreams.storage._append_validation import validate_replica_records
from metamorphostreams.storage.leader_epoch import LeaderEpochFileCache
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_loader import rebuild_producer_state, replay_batch
from metamorphostreams.storage.producer_state import ProducerStateManager
from metamorphostreams.storage.results import AppendResult
from metamorphostreams.storage.segment import LogSegment

if TYPE_CHECKING:
    from metamorphostreams.storage.segment import AppendedBatch
    from metamorphostreams.storage.transaction_index import AbortedTxn

__all__ = ["FollowerLog"]

logger = logging.getLogger("metamorphostreams.storage")


def _batch_in(records: memoryview, position: int, header: BatchHeader) -> memoryview:
    return records[position : position + header.size]


class FollowerLog:
    """Replica appends and truncation of ``PartitionLog``. Not task-safe."""

    # provided by PartitionLog
    topic: str
    partition: int
    dir: Path
    config: LogConfig
    leader_epochs: LeaderEpochFileCache
    producer_state: ProducerStateManager
    _segments: list[LogSegment]
    _bases: list[int]
    _log_start_offset: int
    _log_end_offset: int
    _high_watermark: int
    _recovery_point: int
    _clock_ms: int

    if TYPE_CHECKING:

        @property
        def latest_epoch(self) -> int: ...

        def _tick(self, now_ms: int) -> None: ...

        def _failure(self, error: ErrorCode, message: str | None) -> AppendResult: ...

        def _segment_for_append(
            self,
            records: ReadableBuffer,
            appended: list[AppendedBatch],
            first_offset: int,
            now_ms: int,
        ) -> LogSegment | AppendResult: ...

        def _write(
            self,
            segment: LogSegment,
            records: ReadableBuffer,
            appended: list[AppendedBatch],
            aborted: list[AbortedTxn],
            next_offset: int,
        ) -> AppendResult | None: ...

        def _assign_epoch(self, epoch: int, start_offset: int) -> None: ...

        def _schedule_delete(self, segments: list[LogSegment]) -> None: ...

    # -- appends ------------------------------------------------------------------------

    def append_as_follower(self, records: ReadableBuffer, *, now_ms: int) -> AppendResult:
        """Append what a leader's Fetch response returned, as it is (Kafka's
        appendAsFollower): the batches keep the leader's offsets, leader epochs and bytes.

        A trailing partial batch (a fetch cut at its size limit) is left out; without any
        whole batch nothing happens and the result has offsets -1. Corrupt batches
        (``validate_replica_records``) fail the whole append. The first batch must start at
        the log end offset, else OFFSET_OUT_OF_RANGE (Kafka's UnexpectedAppendOffset),
        except that a compacted log takes a batch starting above it (the leader's cleaner
        removed the batches between) and an empty log (log end offset at the log start
        offset) restarts at the first batch (``truncate_fully_and_start_at``). Each batch's
        epoch above the latest known one starts that epoch; producer state is replayed
        from the batches without checks, and a transaction an ABORT completes gets its
        ``.txnindex`` entry. The high watermark does not move: the leader sets it."""
        self._tick(now_ms)
        name = f"{self.topic}-{self.partition}"
        valid = validate_replica_records(records, self.config, partition_name=name)
        if valid.error is not ErrorCode.NONE:
            return self._failure(valid.error, valid.message)
        headers = valid.headers
        if not headers:
            return AppendResult(ErrorCode.NONE, log_start_offset=self._log_start_offset)
        problem = self._align_replica_start(headers[0][1])
        if problem is not None:
            return self._failure(ErrorCode.OFFSET_OUT_OF_RANGE, problem)
        end = headers[-1][0] + headers[-1][1].size
        return self._append_replica(memoryview(records)[:end], headers, now_ms)

    def _align_replica_start(self, first: BatchHeader) -> str | None:
        """Check where a replica append starts against the log end offset (restarting an
        empty log there); returns what is wrong, or None."""
        end = self._log_end_offset
        base = first.base_offset
        if base == end:
            return None
        if end == self._log_start_offset and (base > end or first.last_offset >= end):
            logger.info(
                "%s-%d: first append to an empty log starts at %d, not %d; restarting there",
                self.topic,
                self.partition,
                base,
                end,
            )
            self.truncate_fully_and_start_at(base)
            return None
        if base > end and self.config.compact_enabled:
            return None
        where = "less than" if base < end else "beyond"
        return (
            f"Unexpected offset in append to {self.topic}-{self.partition}. First offset "
            f"{base} is {where} the next offset {end}. Log start offset = "
            f"{self._log_start_offset}"
        )

    def _append_replica(
        self, records: memoryview, headers: list[tuple[int, BatchHeader]], now_ms: int
    ) -> AppendResult:
        """Write checked replica batches as they are and replay them into producer state."""
        appended = [(pos, h.size, h.last_offset, h.max_timestamp) for pos, h in headers]
        first_offset = headers[0][1].base_offset
        last_offset = appended[-1][2]
        segment = self._segment_for_append(records, appended, first_offset, now_ms)
        if isinstance(segment, AppendResult):
            return segment
        state = self.producer_state
        savepoint = state.savepoint({h.producer_id for _, h in headers if h.has_producer_id})
        read_batch = partial(_batch_in, records)
        aborted = [
            txn
            for pos, header in headers
            if (txn := replay_batch(state, pos, header, read_batch, self.dir)) is not None
        ]
        failure = self._write(segment, records, appended, aborted, last_offset + 1)
        if failure is not None:
            state.restore(savepoint)
            return failure
        for _, header in headers:
            if header.partition_leader_epoch > self.latest_epoch:
                self._assign_epoch(header.partition_leader_epoch, header.base_offset)
        return AppendResult(
            ErrorCode.NONE, first_offset, last_offset, NO_TIMESTAMP, self._log_start_offset
        )

    # -- truncation --------------------------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Remove everything from the batch holding ``offset`` on; returns False if the
        log ends at or before ``offset``. The new log end offset is where the remaining
        data really ends (Kafka assumes a batch boundary and uses ``offset``)."""
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        if offset >= self._log_end_offset:
            # an epoch this replica started as leader without appending anything may
            # conflict with the new leader's (Kafka truncates the cache all the same)
            self.leader_epochs.truncate_from_end(self._log_end_offset)
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
        # never below the log start offset (a full truncation may move it up)
        self._high_watermark = min(max(self._high_watermark, self._log_start_offset), leo)
        self._recovery_point = min(self._recovery_point, leo)
        self.leader_epochs.truncate_from_end(leo)
        rebuild_producer_state(
            self.producer_state,
            self._segments,
            log_start_offset=self._log_start_offset,
            log_end_offset=leo,
            now_ms=self._clock_ms,
        )
        self.producer_state.on_high_watermark_updated(self._high_watermark)
