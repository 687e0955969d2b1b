"""All partition logs of one data directory (Kafka's LogManager, one log dir)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from metamorphostreams.storage.checkpoints import (
    CheckpointError,
    OffsetCheckpointFile,
    fsync_dir,
)
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_files import (
    CLEAN_SHUTDOWN_FILE,
    DELETE_DIR_SUFFIX,
    LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE,
    REPLICATION_OFFSET_CHECKPOINT_FILE,
    delete_dir_name,
    parse_partition_dir_name,
    partition_dir_name,
)
from metamorphostreams.storage.partition_log import PartitionLog
from metamorphostreams.storage.producer_state import DEFAULT_PRODUCER_ID_EXPIRATION_MS

__all__ = ["LogManager", "TopicConfigs"]

logger = logging.getLogger("metamorphostreams.storage")

TopicConfigs = Mapping[str, LogConfig] | Callable[[str], LogConfig]
TopicPartition = tuple[str, int]


class LogManager:
    """Opens, creates, deletes and checkpoints the partition logs of a data directory.

    On disk: ``<topic>-<partition>/`` directories, ``recovery-point-offset-checkpoint``,
    ``log-start-offset-checkpoint`` and ``replication-offset-checkpoint`` (high watermarks,
    written by ``checkpoint_high_watermarks`` only; ``0``, count, ``topic partition offset``
    lines) and the ``.kafka_cleanshutdown`` marker, present only while the broker is
    cleanly stopped: with it the next start trusts indexes and recovery points, without it
    every segment after the recovery point is re-validated. Not task-safe.
    """

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig,
        *,
        topic_configs: TopicConfigs | None,
        now_ms: int,
        had_clean_shutdown: bool,
        producer_id_expiration_ms: int,
        fsync: bool,
    ) -> None:
        self.data_dir = data_dir
        self.default_config = default_config
        self._topic_configs = topic_configs
        self.had_clean_shutdown = had_clean_shutdown
        self._producer_id_expiration_ms = producer_id_expiration_ms
        self._fsync = fsync
        self._clock_ms = now_ms
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._pending_dir_deletes: list[tuple[int, PartitionLog]] = []
        self._recovery_points = OffsetCheckpointFile(data_dir / RECOVERY_POINT_CHECKPOINT_FILE)
        self._log_start_offsets = OffsetCheckpointFile(data_dir / LOG_START_OFFSET_CHECKPOINT_FILE)
        self._high_watermarks = OffsetCheckpointFile(data_dir / REPLICATION_OFFSET_CHECKPOINT_FILE)
        self._checkpointed_high_watermarks: dict[TopicPartition, int] = {}

    @property
    def fsync_enabled(self) -> bool:
        return self._fsync

    @classmethod
    def open(
        cls,
        data_dir: Path,
        default_config: LogConfig | None = None,
        *,
        now_ms: int,
        topic_configs: TopicConfigs | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        fsync: bool = True,
    ) -> LogManager:
        """Load every partition of ``data_dir`` (created if missing), finish interrupted
        deletions, then remove the clean-shutdown marker."""
        data_dir.mkdir(parents=True, exist_ok=True)
        marker = data_dir / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        manager = cls(
            data_dir,
            default_config if default_config is not None else LogConfig(),
            topic_configs=topic_configs,
            now_ms=now_ms,
            had_clean_shutdown=clean,
            producer_id_expiration_ms=producer_id_expiration_ms,
            fsync=fsync,
        )
        manager._load_all(now_ms)
        marker.unlink(missing_ok=True)
        if fsync:
            fsync_dir(data_dir)
        return manager

    def _read_checkpoint(self, checkpoint: OffsetCheckpointFile) -> dict[TopicPartition, int]:
        try:
            return checkpoint.read()
        except (CheckpointError, OSError) as e:
            # Kafka: reset to an empty checkpoint (full recovery / segment-based start)
            logger.warning("ignoring unreadable %s: %s", checkpoint.path, e)
            return {}

    def _load_all(self, now_ms: int) -> None:
        recovery_points = self._read_checkpoint(self._recovery_points)
        log_start_offsets = self._read_checkpoint(self._log_start_offsets)
        logger.info(
            "loading logs from %s (%s shutdown)",
            self.data_dir,
            "clean" if self.had_clean_shutdown else "unclean",
        )
        for name in sorted(os.listdir(self.data_dir)):
            path = self.data_dir / name
            if not path.is_dir():
                continue
            if name.endswith(DELETE_DIR_SUFFIX):
                logger.info("finishing deletion of %s", path)
                shutil.rmtree(path, ignore_errors=True)
                continue
            parsed = parse_partition_dir_name(name)
            if parsed is None:
                logger.info("ignoring directory %s", path)
                continue
            topic, partition = parsed
            self._logs[parsed] = PartitionLog.open(
                path,
                topic,
                partition,
                self.config_for(topic),
                now_ms=now_ms,
                recovery_point=recovery_points.get(parsed, 0),
                log_start_offset=log_start_offsets.get(parsed),
                clean_shutdown=self.had_clean_shutdown,
                producer_id_expiration_ms=self._producer_id_expiration_ms,
                fsync=self._fsync,
            )
        high_watermarks = self._read_checkpoint(self._high_watermarks)
        self._checkpointed_high_watermarks = {
            tp: offset for tp, offset in high_watermarks.items() if tp in self._logs
        }

    def config_for(self, topic: str) -> LogConfig:
        configs = self._topic_configs
        if configs is None:
            return self.default_config
        if callable(configs):
            return configs(topic)
        return configs.get(topic, self.default_config)

    # -- the logs -----------------------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> list[PartitionLog]:
        return list(self._logs.values())

    def create_log(
        self,
        topic: str,
        partition: int,
        config: LogConfig | None = None,
        *,
        now_ms: int | None = None,
    ) -> PartitionLog:
        """The partition's log, created empty if it does not exist yet."""
        existing = self._logs.get((topic, partition))
        if existing is not None:
            return existing
        if now_ms is not None:
            self._clock_ms = max(self._clock_ms, now_ms)
        path = self.data_dir / partition_dir_name(topic, partition)
        log = PartitionLog.open(
            path,
            topic,
            partition,
            config if config is not None else self.config_for(topic),
            now_ms=self._clock_ms,
            recovery_point=0,
            log_start_offset=None,
            clean_shutdown=True,
            producer_id_expiration_ms=self._producer_id_expiration_ms,
            fsync=self._fsync,
        )
        self._logs[(topic, partition)] = log
        if self._fsync:
            fsync_dir(self.data_dir)
        logger.info("created log for %s-%d in %s", topic, partition, path)
        return log

    def delete_log(self, topic: str, partition: int, *, now_ms: int | None = None) -> bool:
        """Rename the partition dir to ``<topic>-<partition>.<uuid>-delete`` at once, and
        remove it after file.delete.delay.ms (``run_retention``), or right now when
        ``now_ms`` is None. Returns False if there was no such log."""
        log = self._logs.pop((topic, partition), None)
        if log is None:
            return False
        log.rename_dir(self.data_dir / delete_dir_name(topic, partition))
        if now_ms is None:
            log.delete()
        else:
            self._clock_ms = max(self._clock_ms, now_ms)
            self._pending_dir_deletes.append((now_ms + log.config.file_delete_delay_ms, log))
        logger.info("deleted log for %s-%d", topic, partition)
        return True

    # -- periodic work ------------------------------------------------------------------

    def checkpoint_recovery_points(self) -> None:
        self._recovery_points.write(
            {tp: log.recovery_point for tp, log in self._logs.items()}, sync=self._fsync
        )

    def checkpoint_log_start_offsets(self) -> None:
        self._log_start_offsets.write(
            {tp: log.log_start_offset for tp, log in self._logs.items()}, sync=self._fsync
        )

    def checkpoint_high_watermarks(self) -> None:
        """Write every log's high watermark to ``replication-offset-checkpoint`` (Kafka's
        ReplicaManager does so every replica.high.watermark.checkpoint.interval.ms)."""
        self._high_watermarks.write(
            {tp: log.high_watermark for tp, log in self._logs.items()}, sync=self._fsync
        )

    def checkpointed_high_watermark(self, topic: str, partition: int) -> int | None:
        """The high watermark ``replication-offset-checkpoint`` held for the partition when
        the data dir was opened; None without an entry, a file, or a readable one."""
        return self._checkpointed_high_watermarks.get((topic, partition))

    def run_retention(self, now_ms: int) -> int:
        """log.retention.check.interval.ms work: retention of every log, expired producer
        ids, and files/dirs whose deletion delay is over. Returns segments deleted."""
        self._clock_ms = max(self._clock_ms, now_ms)
        deleted = 0
        for log in self._logs.values():
            deleted += log.enforce_retention(now_ms)
            log.remove_expired_producers(now_ms)
        keep = []
        for due, log in self._pending_dir_deletes:
            if due <= now_ms:
                log.delete()
            else:
                keep.append((due, log))
        self._pending_dir_deletes = keep
        return deleted

    def flush_dirty(self, now_ms: int) -> int:
        """flush.ms: flush every log whose interval has passed; returns how many did."""
        self._clock_ms = max(self._clock_ms, now_ms)
        return sum(1 for log in self._logs.values() if log.maybe_flush(now_ms))

    def close(self) -> bool:
        """Clean shutdown: flush and close every log, write both checkpoints, then the
        clean-shutdown marker. When any of that fails (disk full, I/O error) every file is
        still closed but the marker is not written, so the next start recovers the logs
        instead of trusting them. Returns whether the marker was written."""
        failures: list[str] = []
        for log in self._logs.values():
            try:
                log.close()
            except OSError as e:
                failures.append(f"{log.topic}-{log.partition}: {e}")
        for write in (self.checkpoint_recovery_points, self.checkpoint_log_start_offsets):
            try:
                write()
            except OSError as e:
                failures.append(str(e))
        for _, log in self._pending_dir_deletes:
            log.delete()
        self._pending_dir_deletes = []
        if failures:
            logger.error(
                "closed logs in %s with errors, so without the clean shutdown marker (the "
                "next start recovers them): %s",
                self.data_dir,
                "; ".join(failures),
            )
            return False
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        with open(marker, "wb") as f:
            if self._fsync:
                os.fsync(f.fileno())
        if self._fsync:
            fsync_dir(self.data_dir)
        logger.info("closed logs in %s", self.data_dir)
        return True
