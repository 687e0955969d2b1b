"""AddPartitionsToTxn request and response shapes, and the partition checks Kafka's
request handler makes before the coordinator sees the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnResponse,
)
from metamorphostreams.protocol.errors import ErrorCode

from .state import TopicPartition

# Kafka's Topic.isInternal: clients may not add these (AddOffsetsToTxn covers the offsets).
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})

_Result = AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult
_TopicResult = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult


def partitions_of(topics: list[Any] | None) -> list[TopicPartition]:
    """The request's partitions in order, each once."""
    seen: dict[TopicPartition, None] = {}
    for topic in topics or ():
        for p in topic.partitions or ():
            seen[topic.name, p] = None
    return list(seen)


def refuse_partitions(
    partitions: list[TopicPartition],
    from_client: bool,
    partition_exists: Callable[[str, int], bool] | None,
) -> dict[TopicPartition, ErrorCode] | None:
    """Errors for a transaction whose partitions fail the checks, or None if all pass.

    An internal topic from a client (v0-3) is TOPIC_AUTHORIZATION_FAILED, an unknown
    partition UNKNOWN_TOPIC_OR_PARTITION; one failure fails the whole transaction and the
    other partitions get OPERATION_NOT_ATTEMPTED, as Kafka answers."""
    refused: dict[TopicPartition, ErrorCode] = {}
    for topic, p in partitions:
        if from_client and topic in INTERNAL_TOPICS:
            refused[topic, p] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        elif partition_exists is not None and not partition_exists(topic, p):
            refused[topic, p] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if not refused:
        return None
    return {tp: refused.get(tp, ErrorCode.OPERATION_NOT_ATTEMPTED) for tp in partitions}


def topic_results(errors: dict[TopicPartition, ErrorCode]) -> list[_TopicResult]:
    by_topic: dict[str, list[_Result]] = {}
    for (topic, p), error in errors.items():
        by_topic.setdefault(topic, []).append(
            _Result(partition_index=p, partition_error_code=error)
        )
    return [_TopicResult(name=t, results_by_partition=ps) for t, ps in by_topic.items()]
