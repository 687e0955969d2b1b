"""ListOffsets for the consumer and the admin client: earliest, latest, or by timestamp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from ..protocol._generated.list_offsets import ListOffsetsRequest
from ..protocol.errors import ErrorCode
from .cluster import KafkaClient, TopicPartition
from .errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, error_for

EARLIEST = -2  # ListOffsets timestamp meaning "log start offset"
LATEST = -1  # ListOffsets timestamp meaning "log end offset" (or LSO when read_committed)
MAX_TIMESTAMP = -3  # the offset of the record with the largest timestamp (v7+)


async def list_offsets(
    client: KafkaClient,
    specs: Mapping[TopicPartition, int],
    *,
    isolation_level: int = 0,
    timeout_s: float = 60.0,
) -> dict[TopicPartition, tuple[int, int]]:
    """{tp: (offset, timestamp)} per ``specs`` {tp: timestamp or EARLIEST/LATEST}.

    offset is -1 when no record has a timestamp at or after the one asked for. Retries
    retriable errors (refreshing metadata) until ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    todo = dict(specs)
    out: dict[TopicPartition, tuple[int, int]] = {}
    backoff = client.config["retry.backoff.ms"] / 1000
    while todo:
        for topic in {tp.topic for tp in todo}:
            await client.topic_info(topic, timeout_s=max(0.0, deadline - time.monotonic()))
        by_node: dict[int, dict[TopicPartition, int]] = {}
        for tp, ts in todo.items():
            leader = client.metadata.leader(tp)
            if leader is None:
                raise error_for(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no partition {tp}")
            by_node.setdefault(leader, {})[tp] = ts
        results = await asyncio.gather(
            *(_list_on(client, node, part, isolation_level) for node, part in by_node.items()),
            return_exceptions=True,
        )
        retry: dict[TopicPartition, int] = {}
        last: BaseException | None = None
        for (_node, part), result in zip(by_node.items(), results, strict=True):
            if isinstance(result, KafkaConnectionError | KafkaTimeoutError):
                retry.update(part)
                last = result
                continue
            if isinstance(result, BaseException):
                raise result
            for tp, (code, offset, ts) in result.items():
                if code == ErrorCode.NONE:
                    out[tp] = (offset, ts)
                    continue
                err = error_for(code, f"listing offsets of {tp}")
                if not err.retriable:
                    raise err
                retry[tp] = part[tp]
                last = err
        todo = retry
        if todo:
            if time.monotonic() + backoff > deadline:
                assert last is not None
                raise last
            await client.refresh_metadata({tp.topic for tp in todo})
            await asyncio.sleep(backoff)
    return out


async def _list_on(
    client: KafkaClient, node: int, specs: Mapping[TopicPartition, int], isolation_level: int
) -> dict[TopicPartition, tuple[int, int, int]]:
    by_topic: dict[str, list[ListOffsetsRequest.ListOffsetsPartition]] = {}
    for tp, ts in specs.items():
        by_topic.setdefault(tp.topic, []).append(
            ListOffsetsRequest.ListOffsetsPartition(partition_index=tp.partition, timestamp=ts)
        )
    request = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=isolation_level,
        topics=[
            ListOffsetsRequest.ListOffsetsTopic(name=t, partitions=p) for t, p in by_topic.items()
        ],
    )
    try:
        response = await client.send(node, request)
    except KafkaError:
        client.request_refresh()
        raise
    out: dict[TopicPartition, tuple[int, int, int]] = {}
    for t in response.topics or []:
        for p in t.partitions or []:
            out[TopicPartition(t.name, p.partition_index)] = (p.error_code, p.offset, p.timestamp)
    for tp in specs:
        out.setdefault(tp, (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1, -1))
    return out
