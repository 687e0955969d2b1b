"""fsync bookkeeping of a partition log: the recovery point, scheduled and inline
flushes (Kafka's UnifiedLog.flush and the log flusher), as a mixin of ``PartitionLog``."""

from __future__ import annotations

import logging
import os

from metamorphostreams.storage.flush_job import FlushJob
from metamorphostreams.storage.leader_epoch import LeaderEpochFileCache
from metamorphostreams.storage.log_config import LONG_MAX, LogConfig
from metamorphostreams.storage.segment import LogSegment

__all__ = ["LogFlushing"]

logger = logging.getLogger("metamorphostreams.storage")


class LogFlushing:
    """Flushes of ``PartitionLog``: everything below ``_recovery_point`` is fsynced. Jobs
    are prepared and completed on the loop thread and may run anywhere. Not task-safe."""

    # provided by PartitionLog
    topic: str
    partition: int
    config: LogConfig
    leader_epochs: LeaderEpochFileCache
    _segments: list[LogSegment]
    _bases: list[int]
    _log_end_offset: int
    _recovery_point: int
    _fsync: bool
    _last_flush_ms: int
    _roll_flush_offset: int
    _clock_ms: int

    def _tick(self, now_ms: int) -> None:
        self._clock_ms = max(self._clock_ms, now_ms)

    def _sync(self, end_offset: int) -> None:
        """fsync, here and now, every segment holding offsets between the recovery point
        and ``end_offset`` (which may be beyond the log end offset during an append)."""
        if self._fsync:
            FlushJob(self._sync_handles(self._recovery_point, end_offset), end_offset).run()

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
