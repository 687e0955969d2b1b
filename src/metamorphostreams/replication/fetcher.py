"""Followers' fetchers (Kafka's ReplicaFetcherThread, one per leader broker).

A follower copies its leader's log with Fetch requests that carry its broker id, asking each
partition from its own log end offset; the batches come back as the leader wrote them
(offsets and leader epochs included) and are appended unchanged. The leader's high
watermark comes with them; the follower's is the smaller of that and its own log end.

Before a partition's first fetch under a new leader the follower truncates what may have
diverged (KIP-101/KIP-279): it asks the leader, with OffsetForLeaderEpoch, where its latest
leader epoch ends in the leader's log, and cuts its own log there; when the leader knows
that epoch only as an older one, the question is asked again for that one. A log that
fell below the leader's log start (retention) restarts empty at the leader's log start.

Loop-owned. Partitions are added and removed by the replica manager when the partition
states change; a response that arrives for a partition moved meanwhile is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..client.connection import BrokerConnection
from ..client.errors import KafkaConnectionError, KafkaError
from ..protocol._generated.fetch import FetchRequest, FetchResponse
from ..protocol._generated.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from ..protocol._generated.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from ..protocol.errors import ErrorCode
from ..storage import PartitionLog
from .config import ReplicationConfig

__all__ = ["FollowerHost", "ReplicaFetcher", "ReplicaFetcherManager"]

log = logging.getLogger("metamorphostreams.replication")

FETCH_VERSION = 12  # names topics; replica id, last fetched epoch, diverging epoch
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
LIST_OFFSETS_VERSION = 7
EARLIEST_TIMESTAMP = -2
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
MAX_TRUNCATION_ROUNDS = 16
_WAIT_FOR_NEW_STATE = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.UNKNOWN_TOPIC_ID,
    }
)

TopicPartition = tuple[str, int]


class FollowerHost(Protocol):
    """What a fetcher needs of the broker."""

    broker_id: int

    def follower_log(self, topic: str, partition: int) -> PartitionLog | None: ...

    def now_ms(self) -> int: ...


@dataclass(slots=True)
class FetchTarget:
    """One partition followed from this fetcher's leader, in one leader epoch."""

    topic: str
    partition: int
    leader_epoch: int
    truncating: bool = True
    delayed_until: float = 0.0


class ReplicaFetcher:
    """Fetches the partitions this broker follows from one leader."""

    def __init__(
        self,
        host: FollowerHost,
        leader_id: int,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        config: ReplicationConfig,
    ) -> None:
        self.host = host
        self.leader_id = leader_id
        self.endpoint_of = endpoint_of
        self.config = config
        self.targets: dict[TopicPartition, FetchTarget] = {}
        self._conn: BrokerConnection | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._backoff_s = config.fetch_backoff_ms / 1000
        self._client_id = f"broker-{host.broker_id}-fetcher-{leader_id}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add(self, topic: str, partition: int, leader_epoch: int) -> None:
        key = (topic, partition)
        current = self.targets.get(key)
        if current is not None and current.leader_epoch == leader_epoch:
            return
        self.targets[key] = FetchTarget(topic, partition, leader_epoch)
        self._changed.set()

    def remove(self, topic: str, partition: int) -> None:
        self.targets.pop((topic, partition), None)

    async def close(self) -> None:
        self._closed = True
        self._changed.set()
        if self._conn is not None:
            self._conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            if not self.targets:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                conn = await self._connection()
                await self._truncate(conn)
                if not await self._fetch(conn):
                    await self._wait(self._backoff_s)
            except (KafkaError, OSError) as e:
                log.info("fetcher from broker %d: %s", self.leader_id, e)
                self._drop_connection()
                await self._wait(self._backoff_s)
            except Exception:
                log.exception("fetcher from broker %d failed", self.leader_id)
                self._drop_connection()
                await self._wait(self._backoff_s)

    async def _wait(self, seconds: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    async def _connection(self) -> BrokerConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed:
            return conn
        endpoint = self.endpoint_of(self.leader_id)
        if endpoint is None:
            raise KafkaConnectionError(f"broker {self.leader_id} is not registered yet")
        self._conn = await BrokerConnection.open(
            *endpoint,
            client_id=self._client_id,
            node_id=self.leader_id,
            timeout_s=self.config.socket_timeout_ms / 1000,
        )
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ready(self) -> list[tuple[FetchTarget, PartitionLog]]:
        now = asyncio.get_running_loop().time()
        ready = []
        for target in self.targets.values():
            plog = self.host.follower_log(target.topic, target.partition)
            if plog is not None and target.delayed_until <= now:
                ready.append((target, plog))
        return ready

    def _delay(self, target: FetchTarget) -> None:
        target.delayed_until = asyncio.get_running_loop().time() + self._backoff_s

    def _current(self, target: FetchTarget) -> PartitionLog | None:
        """The log to apply an answer to, if the partition is still followed as asked."""
        if self.targets.get((target.topic, target.partition)) is not target:
            return None
        return self.host.follower_log(target.topic, target.partition)

    # -- truncation (OffsetForLeaderEpoch) ------------------------------------------------

    async def _truncate(self, conn: BrokerConnection) -> None:
        for _ in range(MAX_TRUNCATION_ROUNDS):
            pending = [(t, plog) for t, plog in self._ready() if t.truncating]
            if not pending:
                return
            asked: dict[TopicPartition, tuple[FetchTarget, int]] = {}
            by_topic: dict[str, list[Any]] = {}
            for target, plog in pending:
                epoch = plog.latest_epoch
                if epoch == UNDEFINED_EPOCH:
                    # Nothing to compare: keep what is below the high watermark.
                    plog.truncate_to(plog.high_watermark)
                    target.truncating = False
                    continue
                asked[(target.topic, target.partition)] = (target, epoch)
                by_topic.setdefault(target.topic, []).append(
                    OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                        partition=target.partition,
                        current_leader_epoch=target.leader_epoch,
                        leader_epoch=epoch,
                    )
                )
            if not by_topic:
                continue
            request = OffsetForLeaderEpochRequest(
                replica_id=self.host.broker_id,
                topics=[
                    OffsetForLeaderEpochRequest.OffsetForLeaderTopic(topic=t, partitions=ps)
                    for t, ps in by_topic.items()
                ],
            )
            response: OffsetForLeaderEpochResponse = await conn.request(
                request, OFFSET_FOR_LEADER_EPOCH_VERSION, self.config.socket_timeout_ms / 1000
            )
            for topic in response.topics:
                for p in topic.partitions:
                    entry = asked.get((topic.topic, p.partition))
                    if entry is not None:
                        self._apply_epoch_end(entry[0], entry[1], p)

    def _apply_epoch_end(self, target: FetchTarget, asked_epoch: int, answer: Any) -> None:
        plog = self._current(target)
        if plog is None:
            return
        if answer.error_code != ErrorCode.NONE:
            self._delay(target)
            return
        leo = plog.log_end_offset
        if answer.end_offset == UNDEFINED_EPOCH_OFFSET:
            offset = plog.high_watermark  # the leader knows no epoch this old
            done = True
        elif answer.leader_epoch == asked_epoch or answer.leader_epoch == UNDEFINED_EPOCH:
            offset, done = min(answer.end_offset, leo), True
        else:
            ours_epoch, ours_end = plog.end_offset_for_epoch(answer.leader_epoch)
            if ours_epoch == answer.leader_epoch:
                offset, done = min(answer.end_offset, ours_end, leo), True
            elif ours_epoch == UNDEFINED_EPOCH:
                offset, done = min(answer.end_offset, leo), True
            else:
                # We have an older epoch than the leader's answer: ask again for that one.
                offset, done = min(ours_end, leo), False
        if offset < leo:
            log.info(
                "%s-%d: truncating from %d to %d (leader %d, epoch %d)",
                target.topic,
                target.partition,
                leo,
                offset,
                self.leader_id,
                target.leader_epoch,
            )
            plog.truncate_to(offset)
        target.truncating = not done

    # -- fetching -------------------------------------------------------------------------

    async def _fetch(self, conn: BrokerConnection) -> bool:
        """One Fetch round; False when nothing could be asked (all delayed)."""
        ready = [(t, plog) for t, plog in self._ready() if not t.truncating]
        if not ready:
            return False
        asked: dict[TopicPartition, FetchTarget] = {}
        by_topic: dict[str, list[Any]] = {}
        for target, plog in ready:
            asked[(target.topic, target.partition)] = target
            by_topic.setdefault(target.topic, []).append(
                FetchRequest.FetchPartition(
                    partition=target.partition,
                    current_leader_epoch=target.leader_epoch,
                    fetch_offset=plog.log_end_offset,
                    last_fetched_epoch=plog.latest_epoch,
                    log_start_offset=plog.log_start_offset,
                    partition_max_bytes=self.config.fetch_max_bytes,
                )
            )
        request = FetchRequest(
            replica_id=self.host.broker_id,
            max_wait_ms=self.config.fetch_wait_max_ms,
            min_bytes=self.config.fetch_min_bytes,
            max_bytes=self.config.fetch_response_max_bytes,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
        )
        timeout_s = (self.config.socket_timeout_ms + self.config.fetch_wait_max_ms) / 1000
        response: FetchResponse = await conn.request(request, FETCH_VERSION, timeout_s)
        if response.error_code != ErrorCode.NONE:
            raise KafkaError(f"fetch failed: {ErrorCode(response.error_code).name}")
        out_of_range: list[tuple[FetchTarget, PartitionLog]] = []
        for topic in response.responses:
            for p in topic.partitions:
                found = asked.get((topic.topic, p.partition_index))
                current = self._current(found) if found is not None else None
                if found is None or current is None:
                    continue
                target, plog = found, current
                if p.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                    out_of_range.append((target, plog))
                elif p.error_code != ErrorCode.NONE:
                    if p.error_code not in _WAIT_FOR_NEW_STATE:
                        log.info(
                            "%s-%d: fetch from broker %d: %s",
                            target.topic,
                            target.partition,
                            self.leader_id,
                            ErrorCode(p.error_code).name,
                        )
                    self._delay(target)
                else:
                    self._apply_data(target, plog, p)
        if out_of_range:
            await self._reset_out_of_range(conn, out_of_range)
        return True

    def _apply_data(
        self, target: FetchTarget, plog: PartitionLog, data: FetchResponse.PartitionData
    ) -> None:
        records = data.records
        if records is not None and len(records):
            result = plog.append_as_follower(records, now_ms=self.host.now_ms())
            if result.error != ErrorCode.NONE:
                log.warning(
                    "%s-%d: cannot append what broker %d sent: %s %s",
                    target.topic,
                    target.partition,
                    self.leader_id,
                    ErrorCode(result.error).name,
                    result.error_message or "",
                )
                target.truncating = True
                self._delay(target)
                return
        plog.update_high_watermark(min(data.high_watermark, plog.log_end_offset))
        leader_start = data.log_start_offset
        if plog.log_start_offset < leader_start <= plog.high_watermark:
            plog.delete_records_before(leader_start)

    async def _reset_out_of_range(
        self, conn: BrokerConnection, targets: list[tuple[FetchTarget, PartitionLog]]
    ) -> None:
        """Our log end is outside the leader's log: below its start (retention there), or,
        after a divergence, past its end (truncate by epochs again)."""
        by_topic: dict[str, list[Any]] = {}
        for target, _ in targets:
            by_topic.setdefault(target.topic, []).append(
                ListOffsetsRequest.ListOffsetsPartition(
                    partition_index=target.partition,
                    current_leader_epoch=target.leader_epoch,
                    timestamp=EARLIEST_TIMESTAMP,
                )
            )
        request = ListOffsetsRequest(
            replica_id=self.host.broker_id,
            isolation_level=0,
            topics=[
                ListOffsetsRequest.ListOffsetsTopic(name=t, partitions=ps)
                for t, ps in by_topic.items()
            ],
        )
        response: ListOffsetsResponse = await conn.request(
            request, LIST_OFFSETS_VERSION, self.config.socket_timeout_ms / 1000
        )
        earliest = {
            (t.name, p.partition_index): p.offset
            for t in response.topics
            for p in t.partitions
            if p.error_code == ErrorCode.NONE
        }
        for target, _ in targets:
            plog = self._current(target)
            start = earliest.get((target.topic, target.partition))
            if plog is None:
                continue
            if start is not None and plog.log_end_offset < start:
                log.info(
                    "%s-%d: restarting empty at the leader's log start %d",
                    target.topic,
                    target.partition,
                    start,
                )
                plog.truncate_fully_and_start_at(start)
            else:
                target.truncating = True
                self._delay(target)


class ReplicaFetcherManager:
    """One fetcher per leader broker, created on demand."""

    def __init__(
        self,
        host: FollowerHost,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        config: ReplicationConfig,
    ) -> None:
        self.host = host
        self.endpoint_of = endpoint_of
        self.config = config
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._leader_of: dict[TopicPartition, int] = {}

    def follow(self, topic: str, partition: int, leader_id: int, leader_epoch: int) -> None:
        """Fetch ``topic``-``partition`` from ``leader_id`` (moving it from another fetcher)."""
        key = (topic, partition)
        previous = self._leader_of.get(key)
        if previous is not None and previous != leader_id:
            self.fetchers[previous].remove(topic, partition)
        fetcher = self.fetchers.get(leader_id)
        if fetcher is None:
            fetcher = self.fetchers[leader_id] = ReplicaFetcher(
                self.host, leader_id, self.endpoint_of, self.config
            )
            fetcher.start()
        fetcher.add(topic, partition, leader_epoch)
        self._leader_of[key] = leader_id

    def unfollow(self, topic: str, partition: int) -> None:
        leader = self._leader_of.pop((topic, partition), None)
        if leader is not None:
            self.fetchers[leader].remove(topic, partition)

    def leader_of(self, topic: str, partition: int) -> int | None:
        return self._leader_of.get((topic, partition))

    async def close(self) -> None:
        fetchers = list(self.fetchers.values())
        self.fetchers.clear()
        self._leader_of.clear()
        for fetcher in fetchers:
            await fetcher.close()
