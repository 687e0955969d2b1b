"""The partitions this broker leads: topic lifecycle over the metadata store and the logs.

Single-broker form of Kafka's ReplicaManager: every partition is led here with leader epoch 0,
the ISR is this broker alone, so the high watermark follows the log end offset. Fetch
long-polls wait on ``data_arrived``, which is set (and replaced) after every append.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cluster.metadata import TopicInfo
from ..cluster.store import MetadataStoreProtocol
from ..storage import CleanerConfig, LogCleaner, LogConfig, LogManager, PartitionLog
from .config import BrokerConfig
from .topic_configs import broker_defaults

log = logging.getLogger("metamorphostreams.server")

LEADER_EPOCH = 0  # a single broker is elected leader once, in epoch 0, as KRaft does


class ReplicaManager:
    """Owns the LogManager. Loop-owned; not task-safe beyond the event loop's serialisation."""

    def __init__(
        self,
        data_dir: Path,
        config: BrokerConfig,
        metadata: MetadataStoreProtocol,
        now_ms: Callable[[], int],
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.metadata = metadata
        self.now_ms = now_ms
        self.logs: LogManager
        self.cleaner_config = CleanerConfig.from_server_props(config.props)
        self.cleaner: LogCleaner
        self._cleaner_pool: ThreadPoolExecutor | None = None
        self._data_arrived = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def open(self, *, lead_all: bool = True) -> None:
        """Open the logs; a standalone broker (``lead_all``) leads every partition of every
        topic and deletes logs of topics that are gone (a cluster broker's ClusterRuntime
        decides which partitions are its own)."""
        self.logs = LogManager.open(
            self.data_dir,
            broker_defaults(self.config.props),
            now_ms=self.now_ms(),
            topic_configs=self._config_for_topic,
            producer_id_expiration_ms=int(self.config["producer.id.expiration.ms"]),
        )
        self.cleaner = LogCleaner(
            self.logs, self.cleaner_config, clock=time.monotonic, sleep=time.sleep
        )
        if not lead_all:
            return
        known = {(t.name, p) for t in self.metadata.topics.values() for p in range(t.partitions)}
        for plog in self.logs.all_logs():
            key = (plog.topic, plog.partition)
            if key not in known:
                log.warning("deleting log %s-%d of a topic that no longer exists", *key)
                self.logs.delete_log(*key)
        for topic in self.metadata.topics.values():
            cfg = self.log_config(topic)
            for p in range(topic.partitions):
                self._create_log(topic.name, p, cfg)

    def _create_log(self, topic: str, partition: int, cfg: LogConfig) -> None:
        """Open (or create) a partition's log and lead it."""
        plog = self.logs.create_log(topic, partition, cfg, now_ms=self.now_ms())
        plog.become_leader(LEADER_EPOCH)

    def lead(self, topic: str, partition: int, cfg: LogConfig, leader_epoch: int) -> None:
        """Open (or create) a partition's log if needed and lead it from ``leader_epoch``."""
        plog = self.logs.get_log(topic, partition)
        if plog is None:
            plog = self.logs.create_log(topic, partition, cfg, now_ms=self.now_ms())
            log.info("leading %s-%d from leader epoch %d", topic, partition, leader_epoch)
        plog.become_leader(leader_epoch)

    def drop_partition(self, topic: str, partition: int) -> None:
        """Delete a partition's log: its topic was deleted or it is no longer placed here."""
        self.cleaner.abort(topic, partition)
        self.logs.delete_log(topic, partition, now_ms=self.now_ms())
        log.info("deleted log %s-%d", topic, partition)

    def _config_for_topic(self, topic: str) -> LogConfig:
        info = self.metadata.topics.get(topic)
        if info is None:
            return broker_defaults(self.config.props)
        return self.log_config(info)

    def close(self) -> None:
        self._stop_cleaner()
        self.logs.close()

    # -- topics ------------------------------------------------------------------------

    def log_config(self, topic: TopicInfo) -> LogConfig:
        return LogConfig.from_props(topic.configs, broker_defaults(self.config.props))

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> TopicInfo:
        info = self.metadata.create_topic(name, partitions, configs)
        cfg = self.log_config(info)
        for p in range(partitions):
            self._create_log(name, p, cfg)
        log.info("created topic %s with %d partitions", name, partitions)
        return info

    def delete_topic(self, name: str) -> None:
        info = self.metadata.topics[name]
        self.metadata.delete_topic(name)
        for p in range(info.partitions):
            self.cleaner.abort(name, p)
            self.logs.delete_log(name, p, now_ms=self.now_ms())
        log.info("deleted topic %s", name)

    def add_partitions(self, name: str, total: int) -> None:
        info = self.metadata.topics[name]
        cfg = self.log_config(info)
        for p in range(info.partitions, total):
            self._create_log(name, p, cfg)
        self.metadata.set_partition_count(name, total)

    def maybe_auto_create(self, name: str) -> TopicInfo | None:
        """Create ``name`` with the broker defaults if auto-creation is enabled."""
        if not self.config["auto.create.topics.enable"]:
            return None
        return self.create_topic(name, int(self.config["num.partitions"]), {})

    # -- partitions --------------------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get_log(topic, partition)

    def notify_append(self) -> None:
        """Wake fetch long-polls waiting for data."""
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    async def wait_for_data(self, timeout_s: float) -> None:
        event = self._data_arrived
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            pass

    # -- housekeeping ------------------------------------------------------------------

    async def flush_dirty(self) -> None:
        """Scheduled fsyncs (flush.ms, rolled segments) in a worker thread, off the loop."""
        now = self.now_ms()
        for plog in self.logs.all_logs():
            job = plog.begin_scheduled_flush(now)
            if job is None:
                continue
            try:
                await asyncio.to_thread(job.run)
            finally:
                plog.complete_flush(job)

    def run_retention(self) -> None:
        self.logs.run_retention(self.now_ms())

    def checkpoint(self) -> None:
        self.logs.checkpoint_recovery_points()
        self.logs.checkpoint_log_start_offsets()

    # -- the log cleaner ---------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        if self._cleaner_pool is None:
            self._cleaner_pool = ThreadPoolExecutor(
                max_workers=max(self.cleaner_config.threads, 1),
                thread_name_prefix="kafka-log-cleaner-thread",
            )
        return self._cleaner_pool

    async def run_cleaner_thread(self) -> None:
        """One of the ``log.cleaner.threads``: clean the filthiest log in a worker thread,
        swap the result in here on the loop (renames only), write the checkpoint in the
        thread; sleep ``log.cleaner.backoff.ms`` when no log needs cleaning."""
        loop = asyncio.get_running_loop()
        backoff_s = self.cleaner_config.backoff_ms / 1000
        while True:
            task = self.cleaner.grab(self.now_ms())
            if task is None:
                await asyncio.sleep(backoff_s)
                continue
            try:
                await loop.run_in_executor(self._pool(), task.run)
            except Exception as e:
                self.cleaner.fail(task, e)
                continue
            try:
                self.cleaner.complete(task)
                entries = self.cleaner.checkpoint_entries()
                await loop.run_in_executor(self._pool(), self.cleaner.write_checkpoint, entries)
            except OSError:
                log.exception("log cleaner: cannot finish the cleaning of %s", task.name)

    def _stop_cleaner(self) -> None:
        """Abort running cleanings, wait for the threads, drop their unswapped output."""
        tasks = self.cleaner.shutdown()
        if self._cleaner_pool is not None:
            self._cleaner_pool.shutdown(wait=True)
            self._cleaner_pool = None
        for task in tasks:
            task.discard()
