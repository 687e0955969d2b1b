"""Fetch: read whole batches from segment files, long-poll until min bytes or max wait.

Record data is never read into Python: a partition's records are file regions that the
connection sends with sendfile. Fetch sessions (KIP-227) are answered as Kafka answers when
its session cache is full: a request for a new session gets session id 0 and a full
response; an incremental fetch for an unknown session gets FETCH_SESSION_ID_NOT_FOUND.

What each version changes, and how Kafka 4.3 answers it (and we do):
- v13+ (KIP-516) name topics by id: an id no topic has gets UNKNOWN_TOPIC_ID. Partitions of
  unknown topics, ids or partitions are answered after all the others (KafkaApis collects
  them apart and appends them), and they do not end a long poll; their aborted
  transactions are an empty list where a failed read's are null.
- v15+ (KIP-903) carry the follower's id in ReplicaState (before, the top-level replica
  id). A follower's fetch reads up to the log end offset, not the high watermark, and
  tells the partition's leader state where the follower is (high watermark, ISR). A
  standalone broker has no followers: NOT_LEADER_OR_FOLLOWER for every partition.
- v11+ (KIP-392): in a cluster, a consumer may fetch from a follower, which answers from its
  own log up to its high watermark (or last stable offset); partitions neither led nor
  followed here are answered NOT_LEADER_OR_FOLLOWER in place, with null aborted
  transactions, as failed reads.
- v16+ (KIP-951) add the current leader to NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH
  answers (NodeEndpoints stays empty: Kafka lists no endpoint for a leader that is itself).
- v17 (KIP-853 directory ids) and v18 (KIP-1166 the follower's high watermark) only add
  follower fields to the request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ...protocol._generated.fetch import FetchRequest, FetchResponse
from ...protocol.errors import ErrorCode
from ...storage import PartitionLog, ReadResult
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH
from ._leaders import current_leader, leader_endpoints
from .metadata import topic_ids

READ_COMMITTED = 1
FINAL_EPOCH = -1  # session epoch of a sessionless fetch
TOPIC_ID_VERSION = 13  # KIP-516: topics by id
REPLICA_STATE_VERSION = 15  # KIP-903: the follower's id moves into ReplicaState
CURRENT_LEADER_VERSION = 16  # KIP-951: the current leader in leadership errors
FOLLOWER_READ_VERSION = 11  # KIP-392: consumers may fetch from followers
PartitionData = FetchResponse.PartitionData
TopicResponse = FetchResponse.FetchableTopicResponse
_LEADERSHIP_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH})


@dataclass(frozen=True, slots=True)
class RecordParts:
    """A partition's records as several file regions sent back to back under one length."""

    parts: list[Any]
    size: int

    def read_bytes(self) -> bytes:
        return b"".join(bytes(p.read_bytes()) for p in self.parts)


def leader_epoch_error(
    current_leader_epoch: int, plog: PartitionLog | None = None, known: int | None = None
) -> ErrorCode:
    """Kafka's check of a client's current leader epoch against ours (-1: not checked).

    Ours is LEADER_EPOCH on a standalone broker; in a cluster the caller passes the log,
    whose latest leader epoch is the partition state's (it moves when leadership does), or
    on a follower the partition state's epoch itself (``known``)."""
    if current_leader_epoch < 0 or (
        plog is None and known is None and current_leader_epoch == LEADER_EPOCH
    ):
        return ErrorCode.NONE
    if known is not None:
        ours = known
    else:
        ours = LEADER_EPOCH if plog is None else max(plog.latest_epoch, LEADER_EPOCH)
    if current_leader_epoch == ours:
        return ErrorCode.NONE
    if current_leader_epoch < ours:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH


def _failed(partition: int, error: ErrorCode, aborted: list[Any] | None) -> PartitionData:
    """A partition answered with an error: no offsets, empty (never null) records."""
    return PartitionData(
        partition_index=partition,
        error_code=error,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=aborted,
        records=b"",
    )


def _with_leaders(ctx: RequestContext, response: FetchResponse) -> FetchResponse:
    """KIP-951: the current leader of each partition answered with a leadership error,
    and (in a cluster) those leaders' endpoints."""
    leaders = []
    for topic in response.responses:
        for data in topic.partitions:
            if data.error_code in _LEADERSHIP_ERRORS:
                leader, epoch = current_leader(ctx, topic.topic, data.partition_index)
                data.current_leader = FetchResponse.LeaderIdAndEpoch(
                    leader_id=leader, leader_epoch=epoch
                )
                leaders.append(leader)
    response.node_endpoints = leader_endpoints(ctx, leaders, FetchResponse.NodeEndpoint)
    return response


def _entry(topics: list[TopicResponse], topic: Any) -> list[PartitionData]:
    """The partition list a request topic's answers go to. Kafka's FetchResponse.toMessage:
    the last entry when it is the same topic, else a new one, so the request's order is
    kept (a topic asked for twice in a row is answered in one entry)."""
    if topics:
        last = topics[-1]
        same_id = last.topic_id is topic.topic_id or last.topic_id == topic.topic_id
        if same_id and last.topic == topic.topic:
            return last.partitions
    entry = TopicResponse(topic=topic.topic, topic_id=topic.topic_id, partitions=[])
    topics.append(entry)
    return entry.partitions


def _read_all(ctx: RequestContext, req: FetchRequest) -> tuple[list[TopicResponse], int, bool]:
    """One pass over the requested partitions: (responses, bytes read, any read error)."""
    version = ctx.api_version
    replicas = ctx.broker.replicas
    cluster = ctx.broker.cluster
    in_cluster = cluster is not None  # leader epochs move only in a cluster
    committed = version >= 4 and req.isolation_level == READ_COMMITTED
    remaining = req.max_bytes
    by_id = topic_ids(ctx.broker.metadata) if version >= TOPIC_ID_VERSION else None
    if version >= REPLICA_STATE_VERSION:
        replica_id = req.replica_state.replica_id
    else:
        replica_id = req.replica_id
    # KIP-392: from v11 a consumer may read from a follower, up to its high watermark.
    follower_reads = cluster is not None and replica_id < 0 and version >= FOLLOWER_READ_VERSION
    min_one = True
    total = 0
    any_error = False
    topics: list[TopicResponse] = []
    # Unknown topics, ids and partitions: answered after the others, as KafkaApis does.
    erroneous: list[tuple[Any, PartitionData]] = []
    for topic in req.topics:
        name = topic.topic
        if by_id is not None:
            info = by_id.get(topic.topic_id)
            if info is None:
                for p in topic.partitions:
                    erroneous.append((topic, _failed(p.partition, ErrorCode.UNKNOWN_TOPIC_ID, [])))
                continue
            # The resolved name goes into the request topic: it keys the response entries.
            name = topic.topic = info.name
        parts: list[PartitionData] | None = None
        for p in topic.partitions:
            plog = replicas.get_log(name, p.partition)
            leads = plog is not None
            if plog is None and follower_reads:
                plog = replicas.follower_log(name, p.partition)
            if plog is None:
                error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if cluster is not None:
                    error = cluster.partition_error(name, p.partition)
                if error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    erroneous.append((topic, _failed(p.partition, error, [])))
                    continue
                # Known here but led elsewhere: answered in place, as a failed read.
                any_error = True
                if parts is None:
                    parts = _entry(topics, topic)
                parts.append(_failed(p.partition, error, None))
                continue
            leader = replicas.leader_state(name, p.partition) if replica_id >= 0 else None
            if replica_id >= 0 and leader is None:
                # A follower's fetch, but this broker leads no replicated partition here
                # (a standalone broker has no followers).
                error = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif not leads and cluster is not None:
                # A consumer reading from a follower (KIP-392): the epoch it knows is the
                # partition state's.
                error = leader_epoch_error(
                    p.current_leader_epoch, None, cluster.leader_of(name, p.partition)[1]
                )
            else:
                error = leader_epoch_error(p.current_leader_epoch, plog if in_cluster else None)
            if error != ErrorCode.NONE:
                any_error = True
                data = _failed(p.partition, error, None)
            else:
                if leader is not None:
                    max_offset = plog.log_end_offset  # followers read past the high watermark
                elif committed:
                    max_offset = plog.last_stable_offset
                else:
                    max_offset = plog.high_watermark
                result = plog.read(
                    p.fetch_offset,
                    max(0, min(p.partition_max_bytes, remaining)),
                    max_offset=max_offset,
                    min_one_message=min_one,
                )
                if result.error == ErrorCode.NONE and leader is not None:
                    result_error = replicas.on_follower_fetch(
                        leader, plog, replica_id, p.fetch_offset
                    )
                    if result_error != ErrorCode.NONE:
                        result = replace(result, error=result_error)
                if result.error != ErrorCode.NONE:
                    any_error = True
                    # Kafka answers an errored partition without offsets
                    data = _failed(p.partition, result.error, None)
                else:
                    data = _partition_data(plog, p.partition, p.fetch_offset, result, committed)
                    if result.size:
                        total += result.size
                        remaining -= result.size
                        min_one = False
            if parts is None:
                parts = _entry(topics, topic)
            parts.append(data)
    if erroneous:
        for topic, data in erroneous:
            _entry(topics, topic).append(data)
        # With nothing else asked for, Kafka answers at once.
        any_error = any_error or len(erroneous) == sum(len(t.partitions) for t in req.topics)
    return topics, total, any_error


def _partition_data(
    plog: PartitionLog, partition: int, fetch_offset: int, result: ReadResult, committed: bool
) -> PartitionData:
    """A partition read without error: its offsets and its records as file regions."""
    records: Any = b""
    aborted = None
    if committed:
        # Kafka's upper bound is the end of what the read could reach; aborted
        # transactions starting beyond the data sent are never consulted.
        aborted = (
            [
                FetchResponse.AbortedTransaction(producer_id=pid, first_offset=first)
                for pid, first in plog.collect_aborted_transactions(
                    fetch_offset, plog.log_end_offset
                )
            ]
            if result.size
            else []
        )
    if result.size:
        regions = list(result.regions)
        records = regions[0] if len(regions) == 1 else RecordParts(regions, result.size)
    return PartitionData(
        partition_index=partition,
        error_code=result.error,
        high_watermark=plog.high_watermark,
        last_stable_offset=plog.last_stable_offset,
        log_start_offset=plog.log_start_offset,
        aborted_transactions=aborted,
        preferred_read_replica=-1,
        records=records,
    )


async def handle_fetch(ctx: RequestContext, req: FetchRequest) -> FetchResponse:
    if ctx.api_version >= 7 and req.session_epoch > 0:
        return FetchResponse(
            error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0, responses=[]
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, req.max_wait_ms) / 1000
    replicas = ctx.broker.replicas
    while True:
        topics, total, any_error = _read_all(ctx, req)
        now = loop.time()
        if total >= req.min_bytes or any_error or now >= deadline or ctx.connection.closed:
            response = FetchResponse(error_code=ErrorCode.NONE, session_id=0, responses=topics)
            leaders_may_move = any_error or ctx.broker.cluster is not None
            if leaders_may_move and ctx.api_version >= CURRENT_LEADER_VERSION:
                _with_leaders(ctx, response)
            return response
        await replicas.wait_for_data(deadline - now)
