"""ListOffsets, OffsetForLeaderEpoch and DeleteRecords: questions about a log's offsets.

ListOffsets versions add sentinel timestamps; a sentinel sent below its version (or one
Kafka does not know) gets UNSUPPORTED_VERSION for that partition, as Kafka answers. Without
tiered storage Kafka answers the tiered-storage sentinels as we do: the local log starts
where the log starts (v8, KIP-405), and nothing is uploaded or pending upload (v9,
KIP-1005; v11, KIP-1023), so those find no offset (-1) without error. v10 (KIP-1075) adds a
timeout for reads from remote storage, which a log without it never waits for.
"""

from __future__ import annotations

from ...protocol._generated.delete_records import DeleteRecordsRequest, DeleteRecordsResponse
from ...protocol._generated.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from ...protocol._generated.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from ...protocol.errors import ErrorCode
from ...storage import PartitionLog
from ..dispatch import RequestContext
from .fetch import READ_COMMITTED, leader_epoch_error

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3  # v7+ (KIP-734)
EARLIEST_LOCAL_TIMESTAMP = -4  # v8+ (KIP-405): the start of the local log
LATEST_TIERED_TIMESTAMP = -5  # v9+ (KIP-1005): the last offset in remote storage
EARLIEST_PENDING_UPLOAD_TIMESTAMP = -6  # v11+ (KIP-1023): the first offset not yet uploaded
# The first ListOffsets version that may ask for each sentinel beyond latest and earliest.
_SENTINEL_VERSIONS = {
    MAX_TIMESTAMP: 7,
    EARLIEST_LOCAL_TIMESTAMP: 8,
    LATEST_TIERED_TIMESTAMP: 9,
    EARLIEST_PENDING_UPLOAD_TIMESTAMP: 11,
}
NOT_FOUND = (-1, -1, -1)  # (offset, timestamp, leader epoch) of "no such offset"
HIGH_WATERMARK_SENTINEL = -1  # DeleteRecords: delete up to the high watermark
Offsets = ListOffsetsResponse.ListOffsetsPartitionResponse


def _lookup(plog: PartitionLog, timestamp: int, committed: bool) -> tuple[int, int, int]:
    """(offset, timestamp, leader epoch) for a ListOffsets target, Kafka's sentinels included."""
    last_fetchable = plog.last_stable_offset if committed else plog.high_watermark
    if timestamp == LATEST_TIMESTAMP:
        return last_fetchable, -1, plog.latest_epoch
    if timestamp in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
        return plog.earliest()  # all of the log is local
    if timestamp in (LATEST_TIERED_TIMESTAMP, EARLIEST_PENDING_UPLOAD_TIMESTAMP):
        return NOT_FOUND  # no tiered storage: nothing uploaded, nothing waiting to be
    if timestamp == MAX_TIMESTAMP:
        found = plog.max_timestamp_offset()
    else:
        found = plog.fetch_offset_by_timestamp(timestamp)
    if found is None or found[0] >= last_fetchable:
        return NOT_FOUND
    return found


def _missing(ctx: RequestContext, topic: str, partition: int) -> ErrorCode:
    """No log here: an unknown partition, or in a cluster one another broker leads."""
    cluster = ctx.broker.cluster
    if cluster is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return cluster.partition_error(topic, partition)


def _unsupported(timestamp: int, version: int) -> bool:
    """A sentinel this version cannot ask for, or one Kafka does not know."""
    if timestamp >= EARLIEST_TIMESTAMP:
        return False
    return _SENTINEL_VERSIONS.get(timestamp, version + 1) > version


async def handle_list_offsets(ctx: RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse:
    replicas = ctx.broker.replicas
    committed = ctx.api_version >= 2 and req.isolation_level == READ_COMMITTED
    topics = []
    for topic in req.topics:
        parts = []
        for p in topic.partitions:
            plog = replicas.get_log(topic.name, p.partition_index)
            error = leader_epoch_error(
                p.current_leader_epoch, plog if ctx.broker.cluster is not None else None
            )
            if plog is None:
                error = _missing(ctx, topic.name, p.partition_index)
            if error != ErrorCode.NONE or plog is None:
                parts.append(Offsets(partition_index=p.partition_index, error_code=error))
                continue
            if _unsupported(p.timestamp, ctx.api_version):
                parts.append(
                    Offsets(
                        partition_index=p.partition_index, error_code=ErrorCode.UNSUPPORTED_VERSION
                    )
                )
                continue
            offset, timestamp, epoch = _lookup(plog, p.timestamp, committed)
            parts.append(
                Offsets(
                    partition_index=p.partition_index,
                    error_code=ErrorCode.NONE,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=epoch,
                )
            )
        topics.append(
            ListOffsetsResponse.ListOffsetsTopicResponse(name=topic.name, partitions=parts)
        )
    return ListOffsetsResponse(topics=topics)


async def handle_offset_for_leader_epoch(
    ctx: RequestContext, req: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    replicas = ctx.broker.replicas
    End = OffsetForLeaderEpochResponse.EpochEndOffset
    topics = []
    for topic in req.topics:
        parts = []
        for p in topic.partitions:
            plog = replicas.get_log(topic.topic, p.partition)
            error = leader_epoch_error(
                p.current_leader_epoch, plog if ctx.broker.cluster is not None else None
            )
            if plog is None:
                error = _missing(ctx, topic.topic, p.partition)
            if error != ErrorCode.NONE or plog is None:
                parts.append(End(error_code=error, partition=p.partition))
                continue
            epoch, end_offset = plog.end_offset_for_epoch(p.leader_epoch)
            parts.append(
                End(
                    error_code=ErrorCode.NONE,
                    partition=p.partition,
                    leader_epoch=epoch,
                    end_offset=end_offset,
                )
            )
        topics.append(
            OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(
                topic=topic.topic, partitions=parts
            )
        )
    return OffsetForLeaderEpochResponse(topics=topics)


async def handle_delete_records(
    ctx: RequestContext, req: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    replicas = ctx.broker.replicas
    Result = DeleteRecordsResponse.DeleteRecordsPartitionResult
    topics = []
    for topic in req.topics:
        parts = []
        for p in topic.partitions:
            plog = replicas.get_log(topic.name, p.partition_index)
            if plog is None:
                parts.append(
                    Result(
                        partition_index=p.partition_index,
                        low_watermark=-1,
                        error_code=_missing(ctx, topic.name, p.partition_index),
                    )
                )
                continue
            offset = plog.high_watermark if p.offset == HIGH_WATERMARK_SENTINEL else p.offset
            error = plog.delete_records_before(offset)
            parts.append(
                Result(
                    partition_index=p.partition_index,
                    low_watermark=plog.log_start_offset if error == ErrorCode.NONE else -1,
                    error_code=error,
                )
            )
        topics.append(
            DeleteRecordsResponse.DeleteRecordsTopicResult(name=topic.name, partitions=parts)
        )
    return DeleteRecordsResponse(topics=topics)
