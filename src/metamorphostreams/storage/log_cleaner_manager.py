"""Which log to clean next, and the bookkeeping around a cleaning (Kafka's LogCleanerManager,
LogToClean and the loop-side half of LogCleaner).

Loop thread: ``grab`` picks the filthiest compacted log and prepares a ``CleanTask`` (the
segments' descriptors duplicated, the aborted transactions, the producers' last batches);
a cleaner thread calls ``task.run()``; ``complete`` swaps the cleaned segments in (renames
only) when the old ones are still in place, and records the new first dirty offset for the
``cleaner-offset-checkpoint`` file (``write_checkpoint``, any thread, with the entries of
``checkpoint_entries``). ``clean_once`` does all three inline (tests, tools).

The rules, Kafka's: a log is cleanable when ``cleanup.policy`` holds ``compact``. Its dirty
section runs from the checkpointed offset (the log start offset when there is none or it is
out of range) to the first uncleanable offset: the lowest of the last stable offset, the
active segment's base, and the base of the first segment whose largest timestamp is newer than
``min.compaction.lag.ms``, rounded down to its segment's base. The log is cleaned when the
dirty bytes make more than ``min.cleanable.dirty.ratio`` of the log, or when its oldest dirty
batch is older than ``max.compaction.lag.ms``; the filthiest (highest ratio) goes first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from metamorphostreams.storage.checkpoints import CheckpointError, OffsetCheckpointFile
from metamorphostreams.storage.cleaner_config import CleanerConfig
from metamorphostreams.storage.log_cleaner import CleanTask, SourceSegment, Throttler
from metamorphostreams.storage.log_files import CLEANER_OFFSET_CHECKPOINT_FILE
from metamorphostreams.storage.log_manager import LogManager
from metamorphostreams.storage.partition_log import PartitionLog
from metamorphostreams.storage.segment import LogSegment
from metamorphostreams.storage.transaction_index import AbortedTxn

__all__ = ["LogCleaner", "LogToClean", "cleanable_offsets", "max_compaction_delay"]

logger = logging.getLogger("metamorphostreams.storage")

TopicPartition = tuple[str, int]


def _segments_from(segments: list[LogSegment], offset: int) -> list[LogSegment]:
    """The segments from the one holding ``offset`` on (Kafka's logSegments(offset, ...))."""
    start = 0
    for i, segment in enumerate(segments):
        if segment.base_offset <= offset:
            start = i
    return segments[start:]


def cleanable_offsets(
    log: PartitionLog, last_clean_offset: int | None, now_ms: int
) -> tuple[int, int, bool]:
    """``(first dirty offset, first uncleanable offset, checkpoint reset)`` (Kafka's
    cleanableOffsets)."""
    start = log.log_start_offset
    checkpointed = start if last_clean_offset is None else last_clean_offset
    reset = checkpointed < start or checkpointed > log.log_end_offset
    first_dirty = start if reset else checkpointed
    segments = log.segments
    candidates = [log.last_stable_offset, segments[-1].base_offset]
    lag = max(log.config.min_compaction_lag_ms, 0)
    if lag > 0:
        for segment in _segments_from(segments, first_dirty)[:-1]:
            if segment.largest_timestamp > now_ms - lag:
                candidates.append(segment.base_offset)
                break
    return first_dirty, max(first_dirty, min(candidates)), reset


def max_compaction_delay(log: PartitionLog, first_dirty_offset: int, now_ms: int) -> int:
    """How long past ``max.compaction.lag.ms`` the oldest dirty batch is (0 if not)."""
    dirty = _segments_from(log.segments, first_dirty_offset)[:-1]
    stamps = [ts for ts in (s.first_batch_timestamp for s in dirty) if ts > 0]
    earliest = min(stamps, default=2**63 - 1)
    clean_until = now_ms - max(log.config.max_compaction_lag_ms, 0)
    return clean_until - earliest if earliest < clean_until else 0


@dataclass(frozen=True, slots=True)
class LogToClean:
    """A compacted log's clean and cleanable bytes (Kafka's LogToClean)."""

    log: PartitionLog
    first_dirty_offset: int
    first_uncleanable_offset: int  # the base of the segment holding the uncleanable offset
    clean_bytes: int
    cleanable_bytes: int
    need_compaction_now: bool

    @classmethod
    def of(
        cls, log: PartitionLog, first_dirty: int, uncleanable: int, need_now: bool
    ) -> LogToClean:
        segments = log.segments
        active = segments[-1]
        non_active = [s for s in _segments_from(segments, uncleanable) if s is not active]
        end = (non_active[0] if non_active else active).base_offset
        clean = sum(s.size for s in segments if s.base_offset < first_dirty)
        low = min(first_dirty, end)
        cleanable = sum(s.size for s in _segments_from(segments, low) if s.base_offset < end)
        return cls(log, first_dirty, end, clean, cleanable, need_now)

    @property
    def total_bytes(self) -> int:
        return self.clean_bytes + self.cleanable_bytes

    @property
    def cleanable_ratio(self) -> float:
        return self.cleanable_bytes / self.total_bytes if self.total_bytes else 0.0


class LogCleaner:
    """The cleaner of one data directory's logs. Loop thread, except ``CleanTask.run``
    and ``write_checkpoint``."""

    def __init__(
        self,
        logs: LogManager,
        config: CleanerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._logs = logs
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._checkpoint_file = OffsetCheckpointFile(logs.data_dir / CLEANER_OFFSET_CHECKPOINT_FILE)
        try:
            self._checkpoints = self._checkpoint_file.read()
        except CheckpointError as e:
            logger.warning("ignoring unreadable %s: %s", self._checkpoint_file.path, e)
            self._checkpoints = {}
        self._in_progress: dict[TopicPartition, CleanTask] = {}
        self.uncleanable: set[TopicPartition] = set()

    # -- choosing -----------------------------------------------------------------------

    def last_clean_offset(self, topic: str, partition: int) -> int | None:
        return self._checkpoints.get((topic, partition))

    def filthiest(self, now_ms: int) -> LogToClean | None:
        """The compacted log most in need of cleaning, or None."""
        best: LogToClean | None = None
        for log in self._logs.all_logs():
            tp = (log.topic, log.partition)
            if not log.config.compact_enabled or tp in self._in_progress or tp in self.uncleanable:
                continue
            first_dirty, uncleanable, reset = cleanable_offsets(
                log, self._checkpoints.get(tp), now_ms
            )
            if reset:
                self._checkpoints[tp] = first_dirty
            delay = max_compaction_delay(log, first_dirty, now_ms)
            ltc = LogToClean.of(log, first_dirty, uncleanable, delay > 0)
            if ltc.total_bytes <= 0:
                continue
            if (ltc.need_compaction_now and ltc.cleanable_bytes > 0) or (
                ltc.cleanable_ratio > log.config.min_cleanable_dirty_ratio
            ):
                if best is None or ltc.cleanable_ratio > best.cleanable_ratio:
                    best = ltc
        return best

    def grab(self, now_ms: int) -> CleanTask | None:
        """Prepare the cleaning of the filthiest log, which is then in progress."""
        ltc = self.filthiest(now_ms)
        if ltc is None:
            return None
        task = self._prepare(ltc, now_ms)
        self._in_progress[(task.topic, task.partition)] = task
        return task

    def _prepare(self, ltc: LogToClean, now_ms: int) -> CleanTask:
        log = ltc.log
        segments = log.segments
        end = ltc.first_uncleanable_offset
        sources: list[SourceSegment] = []
        try:
            for i, segment in enumerate(segments[:-1]):
                if segment.base_offset >= end:
                    break
                fd = os.dup(segment.fd)
                sources.append(
                    SourceSegment(
                        segment,
                        segment.base_offset,
                        segments[i + 1].base_offset,
                        segment.size,
                        fd,
                        segment.offset_index.entries * 8,
                        segment.time_index.entries * 12,
                        os.fstat(fd).st_mtime_ns,
                    )
                )
        except OSError:
            for source in sources:
                os.close(source.fd)
            raise
        aborted: dict[tuple[int, int], AbortedTxn] = {}
        for segment in segments:
            for txn in segment.txn_index.entries:
                if txn.first_offset < end:
                    aborted[(txn.producer_id, txn.first_offset)] = txn
        last_records = {
            pid: (entry.last_data_offset if entry.last_data_offset >= 0 else None,
                  entry.producer_epoch)
            for pid, entry in log.producer_state.producers.items()
        }  # fmt: skip
        return CleanTask(
            topic=log.topic,
            partition=log.partition,
            directory=log.dir,
            config=log.config,
            first_dirty_offset=ltc.first_dirty_offset,
            first_uncleanable_offset=end,
            now_ms=now_ms,
            segments=sources,
            aborted=sorted(aborted.values(), key=lambda t: t.first_offset),
            last_records=last_records,
            map_entries=self.config.offset_map_slots,
            io_buffer_size=max(self.config.io_buffer_size, 64 * 1024),
            throttler=Throttler(self.config.io_max_bytes_per_second, self._clock, self._sleep),
            fsync=log.fsync_enabled,
            log=log,
        )

    # -- finishing ----------------------------------------------------------------------

    def complete(self, task: CleanTask) -> bool:
        """Swap in what ``task.run`` wrote, if every old segment is still in place (else
        nothing changes and the cleaned files go); True when swapped."""
        tp = (task.topic, task.partition)
        self._in_progress.pop(tp, None)
        log = self._logs.get_log(*tp)
        if (
            log is None
            or log is not task.log
            or task.aborted_requested
            or not all(
                log.can_replace_segments(
                    [s.segment for s in group.old], [s.size for s in group.old]
                )
                for group in task.groups
            )
        ):
            logger.info("%s: log changed while it was cleaned; cleaning discarded", task.name)
            task.discard()
            return False
        for group in task.groups:
            log.replace_segments(group.cleaned, [s.segment for s in group.old])
        task.groups = []
        self._checkpoints[tp] = task.end_offset
        stats = task.stats
        logger.info(
            "%s: cleaned up to offset %d: %d of %d messages kept, %d bytes read, %d written",
            task.name,
            task.end_offset,
            stats.messages_kept,
            stats.messages_read,
            stats.bytes_read,
            stats.bytes_written,
        )
        return True

    def fail(self, task: CleanTask, error: BaseException) -> None:
        """A cleaning failed (corrupt segment, I/O error): the partition is reported and
        left alone until the broker restarts (Kafka marks it uncleanable)."""
        tp = (task.topic, task.partition)
        self._in_progress.pop(tp, None)
        task.discard()
        if not task.aborted_requested:
            logger.error("%s: cleaning failed, marking it uncleanable: %r", task.name, error)
            self.uncleanable.add(tp)

    def clean_once(self, now_ms: int) -> bool:
        """Grab, run and complete one cleaning here and now; False when nothing was due."""
        task = self.grab(now_ms)
        if task is None:
            return False
        try:
            task.run()
        except Exception as e:
            self.fail(task, e)
            return False
        swapped = self.complete(task)
        self.write_checkpoint(self.checkpoint_entries())
        return swapped

    def abort(self, topic: str, partition: int) -> None:
        """Stop the cleaning of a partition (deleted, truncated)."""
        task = self._in_progress.get((topic, partition))
        if task is not None:
            task.abort()

    def shutdown(self) -> list[CleanTask]:
        """Ask every running task to stop; returns them (the caller waits for their threads
        and then ``discard``s them)."""
        tasks = list(self._in_progress.values())
        for task in tasks:
            task.abort()
        self._in_progress.clear()
        return tasks

    # -- the checkpoint -----------------------------------------------------------------

    def checkpoint_entries(self) -> dict[TopicPartition, int]:
        """The first dirty offsets of the live logs, to write (loop thread)."""
        live = {(log.topic, log.partition) for log in self._logs.all_logs()}
        return {tp: offset for tp, offset in self._checkpoints.items() if tp in live}

    def write_checkpoint(self, entries: Mapping[TopicPartition, int]) -> None:
        """Write ``cleaner-offset-checkpoint`` (any thread)."""
        self._checkpoint_file.write(entries, sync=self._logs.fsync_enabled)
