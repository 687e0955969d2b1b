"""Fetch: read whole batches from segment files, long-poll until min bytes or max wait.

Record data is never read into Python: a partition's records are file regions that the
connection sends with sendfile. Fetch sessions (KIP-227) are answered as Kafka answers when
its session cache is full: a request for a new session gets session id 0 and a full
response; an incremental fetch for an unknown session gets FETCH_SESSION_ID_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ...protocol._generated.fetch import FetchRequest, FetchResponse
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH

READ_COMMITTED = 1
FINAL_EPOCH = -1  # session epoch of a sessionless fetch
PartitionData = FetchResponse.PartitionData


@dataclass(frozen=True, slots=True)
class RecordParts:
    """A partition's records as several file regions sent back to back under one length."""

    parts: list[Any]
    size: int

    def read_bytes(self) -> bytes:
        return b"".join(bytes(p.read_bytes()) for p in self.parts)


def leader_epoch_error(current_leader_epoch: int) -> ErrorCode:
    """Kafka's check of a client's current leader epoch against ours (-1: not checked)."""
    if current_leader_epoch < 0 or current_leader_epoch == LEADER_EPOCH:
        return ErrorCode.NONE
    if current_leader_epoch < LEADER_EPOCH:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH


def _read_all(
    ctx: RequestContext, req: FetchRequest
) -> tuple[list[FetchResponse.FetchableTopicResponse], int, bool]:
    """One pass over the requested partitions: (responses, bytes read, any error)."""
    replicas = ctx.broker.replicas
    committed = ctx.api_version >= 4 and req.isolation_level == READ_COMMITTED
    remaining = req.max_bytes if ctx.api_version >= 3 else 0x7FFFFFFF
    min_one = True
    total = 0
    any_error = False
    topics: list[FetchResponse.FetchableTopicResponse] = []
    for topic in req.topics:
        parts: list[PartitionData] = []
        for p in topic.partitions:
            plog = replicas.get_log(topic.topic, p.partition)
            error = leader_epoch_error(p.current_leader_epoch)
            if plog is None:
                error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            if error != ErrorCode.NONE or plog is None:
                any_error = True
                parts.append(
                    PartitionData(
                        partition_index=p.partition,
                        error_code=error,
                        high_watermark=-1,
                        last_stable_offset=-1,
                        log_start_offset=-1,
                        records=None,
                    )
                )
                continue
            max_offset = plog.last_stable_offset if committed else plog.high_watermark
            result = plog.read(
                p.fetch_offset,
                max(0, min(p.partition_max_bytes, remaining)),
                max_offset=max_offset,
                min_one_message=min_one,
            )
            if result.error != ErrorCode.NONE:
                any_error = True
                # Kafka answers an errored partition without offsets
                parts.append(
                    PartitionData(
                        partition_index=p.partition,
                        error_code=result.error,
                        high_watermark=-1,
                        last_stable_offset=-1,
                        aborted_transactions=None,
                        log_start_offset=-1,
                        records=None,
                    )
                )
                continue
            records: Any = b""
            if result.size:
                regions = list(result.regions)
                records = regions[0] if len(regions) == 1 else RecordParts(regions, result.size)
                total += result.size
                remaining -= result.size
                min_one = False
            parts.append(
                PartitionData(
                    partition_index=p.partition,
                    error_code=result.error,
                    high_watermark=plog.high_watermark,
                    last_stable_offset=plog.last_stable_offset,
                    log_start_offset=plog.log_start_offset,
                    aborted_transactions=[] if committed else None,
                    preferred_read_replica=-1,
                    records=records,
                )
            )
        topics.append(FetchResponse.FetchableTopicResponse(topic=topic.topic, partitions=parts))
    return topics, total, any_error


async def handle_fetch(ctx: RequestContext, req: FetchRequest) -> FetchResponse:
    if ctx.api_version >= 7 and req.session_epoch > 0:
        return FetchResponse(
            error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0, responses=[]
        )
    if req.replica_id >= 0:
        # Follower fetches come with replication; a single broker has no followers.
        return FetchResponse(error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, responses=[])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, req.max_wait_ms) / 1000
    replicas = ctx.broker.replicas
    while True:
        topics, total, any_error = _read_all(ctx, req)
        now = loop.time()
        if total >= req.min_bytes or any_error or now >= deadline or ctx.connection.closed:
            return FetchResponse(error_code=ErrorCode.NONE, session_id=0, responses=topics)
        await replicas.wait_for_data(deadline - now)
