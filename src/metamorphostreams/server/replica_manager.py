"""The partitions of this broker: topic lifecycle over the metadata store and the logs.

Standalone (Kafka's ReplicaManager with one broker): every partition is led here with
leader epoch 0, the ISR is this broker alone, so the high watermark follows the log end
offset.

In a cluster (``enable_replication``) the cluster runtime makes each local partition a
leader or a follower from its partition state. ``get_log`` then answers only for the
partitions led here (what clients may produce to and read), ``follower_log`` for those
followed. A leader's ``LeaderState`` tracks its followers' fetches; the high watermark is
the smallest log end offset over the ISR, and ISR changes go to ``isr_writer`` (the
partition state in ZooKeeper). Followers fetch through ``replication.fetcher``.

Fetch long-polls and acks=all produces wait on ``data_arrived``, which is set (and
replaced) after every append and every high-watermark move.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..cluster.metadata import TopicInfo
from ..cluster.store import MetadataStoreProtocol
from ..protocol.errors import ErrorCode
from ..replication.config import ReplicationConfig
from ..replication.fetcher import ReplicaFetcherManager
from ..replication.partition import IsrChange, LeaderState
from ..storage import CleanerConfig, LogCleaner, LogConfig, LogManager, PartitionLog
from .config import BrokerConfig
from .topic_configs import broker_defaults

log = logging.getLogger("metamorphostreams.server")

LEADER_EPOCH = 0  # a single broker is elected leader once, in epoch 0, as KRaft does

TopicPartition = tuple[str, int]
IsrWriter = Callable[[str, int, IsrChange], None]
# An append waiting for replication: topic, partition, the offset the high watermark must
# reach, the leader epoch it was appended in.
Replication = tuple[str, int, int, int]


def leader_epoch_of(plog: PartitionLog) -> int:
    """The epoch a leader's appends carry: the log's latest (a cluster's leader epoch)."""
    return max(plog.latest_epoch, LEADER_EPOCH)


def effective_min_isr(state: LeaderState, plog: PartitionLog) -> int:
    """min.insync.replicas, capped by the replication factor (Kafka's effectiveMinIsr)."""
    return min(plog.config.min_insync_replicas, len(state.replicas))


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
        self.broker_id = int(config.broker_id)
        # In a cluster only (enable_replication); None: a standalone broker leads every log.
        self.leaders: dict[TopicPartition, LeaderState] | None = None
        self.followed: set[TopicPartition] = set()
        self.fetchers: ReplicaFetcherManager | None = None
        self.replication = ReplicationConfig.from_props(config.props)
        self.isr_writer: IsrWriter | None = None
        self.registered: Callable[[int], bool] = lambda broker_id: True

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

    def drop_partition(self, topic: str, partition: int) -> None:
        """Delete a partition's log: its topic was deleted or it is no longer placed here."""
        self._forget_role(topic, partition)
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
        self.checkpoint_high_watermarks()
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
        """The log of a partition led here (standalone: every local log)."""
        leaders = self.leaders
        if leaders is not None and (topic, partition) not in leaders:
            return None
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

    # -- replication (a cluster only) ---------------------------------------------------

    def enable_replication(
        self,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        isr_writer: IsrWriter,
        registered: Callable[[int], bool],
    ) -> None:
        """Partitions are now led or followed as the cluster runtime says (none until then).
        ``registered``: is a broker registered (a broker withdrawing for a controlled
        shutdown still fetches, but does not come back into ISRs, as in Kafka)."""
        self.leaders = {}
        self.fetchers = ReplicaFetcherManager(self, endpoint_of, self.replication)
        self.isr_writer = isr_writer
        self.registered = registered

    def follower_log(self, topic: str, partition: int) -> PartitionLog | None:
        if (topic, partition) not in self.followed:
            return None
        return self.logs.get_log(topic, partition)

    def leader_state(self, topic: str, partition: int) -> LeaderState | None:
        return None if self.leaders is None else self.leaders.get((topic, partition))

    def _replicated_log(self, topic: str, partition: int, cfg: LogConfig) -> PartitionLog:
        """Open (or create) a partition's log for replication: its high watermark no longer
        follows its end but starts where it was checkpointed (else at the log start)."""
        plog = self.logs.get_log(topic, partition)
        if plog is None:
            plog = self.logs.create_log(topic, partition, cfg, now_ms=self.now_ms())
        if plog.hw_follows_leo:
            plog.hw_follows_leo = False
            checkpointed = self.logs.checkpointed_high_watermark(topic, partition)
            plog.update_high_watermark(
                checkpointed if checkpointed is not None else plog.log_start_offset
            )
        return plog

    def become_leader(
        self,
        topic: str,
        partition: int,
        cfg: LogConfig,
        *,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        zk_version: int,
    ) -> None:
        """Lead ``topic``-``partition`` in ``leader_epoch`` (or take a newer ISR of it)."""
        assert self.leaders is not None and self.fetchers is not None
        key = (topic, partition)
        plog = self._replicated_log(topic, partition, cfg)
        current = self.leaders.get(key)
        if current is not None and current.leader_epoch == leader_epoch:
            if current.adopt(replicas, isr, zk_version):
                self.maybe_advance_high_watermark(current, plog)
            return
        self.fetchers.unfollow(topic, partition)
        self.followed.discard(key)
        plog.become_leader(leader_epoch)
        state = LeaderState.start(
            topic,
            partition,
            self.broker_id,
            leader_epoch=leader_epoch,
            replicas=replicas,
            isr=isr,
            zk_version=zk_version,
            epoch_start_offset=plog.log_end_offset,
            now_ms=self.now_ms(),
        )
        self.leaders[key] = state
        log.info(
            "leading %s-%d in leader epoch %d (ISR %s)", topic, partition, leader_epoch, list(isr)
        )
        self.maybe_advance_high_watermark(state, plog)

    def become_follower(
        self, topic: str, partition: int, cfg: LogConfig, *, leader: int, leader_epoch: int
    ) -> None:
        """Follow ``leader`` (-1: no leader, nothing to fetch) in ``leader_epoch``."""
        assert self.leaders is not None and self.fetchers is not None
        key = (topic, partition)
        self._replicated_log(topic, partition, cfg)
        if self.leaders.pop(key, None) is not None:
            log.info("%s-%d: no longer leader (leader %d now)", topic, partition, leader)
            self.notify_append()  # acks=all waiters answer NOT_LEADER_OR_FOLLOWER
        if key not in self.followed:
            self.followed.add(key)
            log.info(
                "following %s-%d (leader %d, epoch %d)", topic, partition, leader, leader_epoch
            )
        if leader >= 0:
            self.fetchers.follow(topic, partition, leader, leader_epoch)
        else:
            self.fetchers.unfollow(topic, partition)

    def _forget_role(self, topic: str, partition: int) -> None:
        if self.leaders is None or self.fetchers is None:
            return
        self.leaders.pop((topic, partition), None)
        self.followed.discard((topic, partition))
        self.fetchers.unfollow(topic, partition)

    def on_follower_fetch(
        self, state: LeaderState, plog: PartitionLog, replica_id: int, fetch_offset: int
    ) -> ErrorCode:
        """A follower fetched from ``fetch_offset``: its log end offset. The high watermark
        may move and the ISR may grow. A broker that is no replica: NOT_LEADER_OR_FOLLOWER
        (Kafka's answer to a fetch from a replica it does not know)."""
        if not state.on_follower_fetch(
            replica_id, fetch_offset, plog.log_end_offset, self.now_ms()
        ):
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        self.maybe_advance_high_watermark(state, plog)
        if replica_id not in state.isr and self.registered(replica_id):
            change = state.expansion(replica_id, plog.high_watermark)
            if change is not None:
                self._write_isr(state, change)
        return ErrorCode.NONE

    def appended(self, plog: PartitionLog) -> None:
        """A leader append: with this broker alone in the ISR the high watermark moves now
        (Kafka's maybeIncrementLeaderHW after appendRecordsToLeader)."""
        if self.leaders is None:
            return
        state = self.leaders.get((plog.topic, plog.partition))
        if state is not None:
            self.maybe_advance_high_watermark(state, plog)

    def maybe_advance_high_watermark(self, state: LeaderState, plog: PartitionLog) -> None:
        high_watermark = state.high_watermark(plog.log_end_offset)
        if high_watermark > plog.high_watermark:
            plog.update_high_watermark(high_watermark)
            self.notify_append()

    def shrink_isrs(self) -> None:
        """Drop followers that have not caught up for replica.lag.time.max.ms from the ISR
        of every partition led here (Kafka's isr-expiration task)."""
        if self.leaders is None:
            return
        now = self.now_ms()
        lag = self.replication.lag_time_max_ms
        for (topic, partition), state in self.leaders.items():
            plog = self.logs.get_log(topic, partition)
            if plog is None:
                continue
            change = state.shrink(now, lag, plog.log_end_offset)
            if change is not None:
                log.info(
                    "%s-%d: shrinking the ISR from %s to %s",
                    topic,
                    partition,
                    list(state.isr),
                    list(change.isr),
                )
                self._write_isr(state, change)

    def _write_isr(self, state: LeaderState, change: IsrChange) -> None:
        if self.isr_writer is not None:
            self.isr_writer(state.topic, state.partition, change)

    def isr_written(
        self, topic: str, partition: int, change: IsrChange, zk_version: int | None
    ) -> None:
        """The answer to an ISR write: the znode's new version, or None when it lost."""
        state = self.leader_state(topic, partition)
        if state is None:
            return
        if zk_version is None:
            state.write_failed(change)
            return
        state.written(change, zk_version)
        plog = self.logs.get_log(topic, partition)
        if plog is not None:
            self.maybe_advance_high_watermark(state, plog)
        self.notify_append()  # acks=all waiters look at the ISR size again

    def replication_error(
        self, topic: str, partition: int, required_offset: int, leader_epoch: int
    ) -> ErrorCode | None:
        """Where an acks=all append stands: None while the high watermark has not reached
        ``required_offset``; then NONE, or NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR
        fell below min.insync.replicas; NOT_LEADER_OR_FOLLOWER once leadership moved."""
        state = self.leader_state(topic, partition)
        plog = self.logs.get_log(topic, partition)
        if state is None or plog is None or state.leader_epoch != leader_epoch:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if plog.high_watermark < required_offset:
            return None
        if len(state.maximal_isr()) < effective_min_isr(state, plog):
            return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return ErrorCode.NONE

    async def await_replicated(
        self,
        waits: Sequence[Replication],
        timeout_s: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[ErrorCode]:
        """Wait until the ISR has each append (topic, partition, offset the high watermark
        must reach, leader epoch of the append), Kafka's delayed produce: an answer per
        wait, REQUEST_TIMED_OUT for those still short after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        answers: list[ErrorCode | None] = [None] * len(waits)
        while True:
            pending = False
            for i, (topic, partition, required, epoch) in enumerate(waits):
                if answers[i] is None:
                    answers[i] = self.replication_error(topic, partition, required, epoch)
                    pending = pending or answers[i] is None
            now = loop.time()
            if not pending or cancelled():
                break
            if now >= deadline:
                break
            await self.wait_for_data(deadline - now)
        return [ErrorCode.REQUEST_TIMED_OUT if a is None else a for a in answers]

    def checkpoint_high_watermarks(self) -> None:
        """``replication-offset-checkpoint`` (a cluster's replicated logs only), every
        ``replica.high.watermark.checkpoint.interval.ms`` and at close."""
        if self.leaders is None:
            return
        try:
            self.logs.checkpoint_high_watermarks()
        except OSError:
            log.exception("cannot write the high-watermark checkpoint")

    async def close_fetchers(self) -> None:
        if self.fetchers is not None:
            await self.fetchers.close()

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
