"""DescribeLogDirs: the log directory of this broker and the partition logs in it.

Kafka's ReplicaManager.describeLogDirs: one result per configured log directory (we have
one, the data dir, by its absolute path) with the volume's total and usable bytes (v4+) and,
for every local log asked for, its size in bytes and its offset lag. Null topics ask for
every log on this broker, led and followed alike; a topic or partition with no log here is
simply absent, and a topic none of whose asked partitions is here is left out.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ...protocol._generated.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from ...protocol.errors import ErrorCode
from ...storage import PartitionLog
from ..dispatch import RequestContext
from ..replica_manager import ReplicaManager

log = logging.getLogger("metamorphostreams.server")

INVALID_OFFSET_LAG = -1  # Kafka's DescribeLogDirsResponse.INVALID_OFFSET_LAG: no replica yet

Result = DescribeLogDirsResponse.DescribeLogDirsResult


def _offset_lag(replicas: ReplicaManager, plog: PartitionLog) -> int:
    """Kafka's getLogEndOffsetLag for a current (not future) log: how far the log end offset
    is behind the high watermark, never negative; -1 while no role is set for the replica
    (Kafka: no online partition). A standalone broker leads every log it has."""
    key = (plog.topic, plog.partition)
    if replicas.leaders is not None and key not in replicas.leaders:
        if key not in replicas.followed:
            return INVALID_OFFSET_LAG
    return max(plog.high_watermark - plog.log_end_offset, 0)


def _topics(
    replicas: ReplicaManager, wanted: set[tuple[str, int]] | None
) -> list[DescribeLogDirsResponse.DescribeLogDirsTopic]:
    by_topic: dict[str, list[DescribeLogDirsResponse.DescribeLogDirsPartition]] = {}
    for plog in sorted(replicas.logs.all_logs(), key=lambda p: (p.topic, p.partition)):
        if wanted is not None and (plog.topic, plog.partition) not in wanted:
            continue
        by_topic.setdefault(plog.topic, []).append(
            DescribeLogDirsResponse.DescribeLogDirsPartition(
                partition_index=plog.partition,
                partition_size=plog.size_in_bytes,
                offset_lag=_offset_lag(replicas, plog),
                is_future_key=False,  # no AlterReplicaLogDirs: every log is the current one
            )
        )
    return [
        DescribeLogDirsResponse.DescribeLogDirsTopic(name=name, partitions=parts)
        for name, parts in by_topic.items()
    ]


def describe_log_dir(
    data_dir: Path, replicas: ReplicaManager, wanted: set[tuple[str, int]] | None
) -> Result:
    """The result for ``data_dir``; ``wanted`` None: every local log."""
    path = str(data_dir.absolute())  # Java's toAbsolutePath: not normalised, links kept
    try:
        volume = os.statvfs(data_dir)
        topics = _topics(replicas, wanted)
    except OSError:
        # Kafka answers the dir's error in its result (Errors.forException of an IOException).
        log.exception("describing log dir %s failed", path)
        return Result(error_code=ErrorCode.UNKNOWN_SERVER_ERROR, log_dir=path)
    return Result(
        error_code=ErrorCode.NONE,
        log_dir=path,
        topics=topics,
        # Java's FileStore: total = blocks, usable = blocks available to unprivileged users.
        total_bytes=volume.f_blocks * volume.f_frsize,
        usable_bytes=volume.f_bavail * volume.f_frsize,
        is_cordoned=False,  # cordoned.log.dirs (KIP-1066) is not supported
    )


async def handle_describe_log_dirs(
    ctx: RequestContext, req: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    broker = ctx.broker
    wanted = None
    if req.topics is not None:
        wanted = {(t.topic, p) for t in req.topics for p in t.partitions or []}
    result = describe_log_dir(broker.data_dir, broker.replicas, wanted)
    return DescribeLogDirsResponse(error_code=ErrorCode.NONE, results=[result])
