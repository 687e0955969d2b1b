"""The transaction APIs: answered by the transaction coordinator, or by the partition logs.

AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions go to
the coordinator through ``TxnRuntime``; DescribeProducers reads each partition's producer
state; WriteTxnMarkers (what Kafka's coordinators send to partition leaders, and what
``kafka-transactions abort`` sends) writes markers into the logs named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...protocol._generated import RESPONSE_CLASSES
from ...protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from ...protocol._generated.describe_producers import (
    DescribeProducersRequest,
    DescribeProducersResponse,
)
from ...protocol._generated.write_txn_markers import (
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)
from ...protocol.errors import ErrorCode
from ..dispatch import HandlerFn, RequestContext
from ..group_runtime import OFFSETS_TOPIC
from ..replica_manager import Replication, leader_epoch_of

log = logging.getLogger("metamorphostreams.server")


def _txn_api(method: Callable[[Any], Callable[..., Any]]) -> HandlerFn:
    """A handler that hands the request to a TransactionCoordinator method."""

    async def handle(ctx: RequestContext, req: Any) -> Any:
        if ctx.broker.cluster is not None and (refused := cluster_refusal(ctx, req)) is not None:
            return refused
        runtime = ctx.broker.transactions
        return await runtime.call(method(runtime.coordinator), req, ctx.api_version)

    return handle


MARKER_REPLICATION_TIMEOUT_S = 30.0
BATCHED_ADD_PARTITIONS_VERSION = 4  # AddPartitionsToTxn v4+: brokers' verification batches


def cluster_refusal(ctx: RequestContext, req: Any) -> Any | None:
    """In a cluster: NOT_COORDINATOR for a transactional id whose __transaction_state
    partition another broker leads (brokers' batched AddPartitionsToTxn: see
    ``_coordinated_here``). None to go on."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    is_add = isinstance(req, AddPartitionsToTxnRequest)
    if is_add and ctx.api_version >= BATCHED_ADD_PARTITIONS_VERSION:
        return _coordinated_here(ctx, req)
    txn_id = req.v3_and_below_transactional_id if is_add else getattr(req, "transactional_id", None)
    if not isinstance(txn_id, str) or not txn_id or cluster.coordinates_transaction(txn_id):
        return None
    if is_add:
        return AddPartitionsToTxnResponse(
            results_by_topic_v3_and_below=_topic_results(
                [(t.name, list(t.partitions)) for t in req.v3_and_below_topics],
                ErrorCode.NOT_COORDINATOR,
            )
        )
    response = RESPONSE_CLASSES[ctx.header.request_api_key]()
    response.error_code = ErrorCode.NOT_COORDINATOR
    return response


def _topic_results(
    topics: list[tuple[str, list[int]]], error: ErrorCode
) -> list[AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult]:
    Result = AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult
    return [
        AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult(
            name=name,
            results_by_partition=[
                Result(partition_index=p, partition_error_code=error) for p in partitions
            ],
        )
        for name, partitions in topics
    ]


def _coordinated_here(
    ctx: RequestContext, req: AddPartitionsToTxnRequest
) -> AddPartitionsToTxnResponse | None:
    """A broker's batched AddPartitionsToTxn naming transactions another broker now
    coordinates (the leadership moved meanwhile): NOT_COORDINATOR for their partitions,
    OPERATION_NOT_ATTEMPTED for the others; the sender asks again where it should."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    transactions = req.transactions or []
    elsewhere = [t for t in transactions if not cluster.coordinates_transaction(t.transactional_id)]
    if not elsewhere:
        return None
    return AddPartitionsToTxnResponse(
        error_code=ErrorCode.NONE,
        results_by_transaction=[
            AddPartitionsToTxnResponse.AddPartitionsToTxnResult(
                transactional_id=t.transactional_id,
                topic_results=_topic_results(
                    [(topic.name, list(topic.partitions)) for topic in t.topics],
                    ErrorCode.NOT_COORDINATOR
                    if t in elsewhere
                    else ErrorCode.OPERATION_NOT_ATTEMPTED,
                ),
            )
            for t in transactions
        ],
    )


async def handle_describe_producers(
    ctx: RequestContext, req: DescribeProducersRequest
) -> DescribeProducersResponse:
    replicas = ctx.broker.replicas
    topics = []
    for topic in req.topics:
        partitions = []
        for index in topic.partition_indexes:
            plog = replicas.get_log(topic.name, index)
            if plog is None:
                partitions.append(
                    DescribeProducersResponse.PartitionResponse(
                        partition_index=index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        active_producers=[],
                    )
                )
                continue
            partitions.append(
                DescribeProducersResponse.PartitionResponse(
                    partition_index=index,
                    error_code=ErrorCode.NONE,
                    active_producers=[
                        DescribeProducersResponse.ProducerState(
                            producer_id=p.producer_id,
                            producer_epoch=p.producer_epoch,
                            last_sequence=p.last_sequence,
                            last_timestamp=p.last_timestamp,
                            coordinator_epoch=p.coordinator_epoch,
                            current_txn_start_offset=p.current_txn_start_offset,
                        )
                        for p in plog.active_producers()
                    ],
                )
            )
        topics.append(
            DescribeProducersResponse.TopicResponse(name=topic.name, partitions=partitions)
        )
    return DescribeProducersResponse(topics=topics)


async def handle_write_txn_markers(
    ctx: RequestContext, req: WriteTxnMarkersRequest
) -> WriteTxnMarkersResponse:
    broker = ctx.broker
    replicas = broker.replicas
    cluster = broker.cluster
    results = []
    appended = False
    # In a cluster a marker is answered once the ISR has it (Kafka appends markers with
    # acks=all), so a leader change cannot lose a marker its coordinator counted.
    waits: list[tuple[Any, Replication]] = []
    for marker in req.markers:
        topic_results = []
        for topic in marker.topics:
            partition_results = []
            for index in topic.partition_indexes:
                plog = replicas.get_log(topic.name, index)
                if plog is None:
                    error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    if cluster is not None:
                        error = cluster.partition_error(topic.name, index)
                else:
                    try:
                        error = ErrorCode(
                            plog.append_control_marker(
                                marker.producer_id,
                                marker.producer_epoch,
                                commit=marker.transaction_result,
                                coordinator_epoch=marker.coordinator_epoch,
                                leader_epoch=leader_epoch_of(plog),
                                now_ms=broker.now_ms(),
                                transaction_version=marker.transaction_version,
                            ).error
                        )
                    except OSError:
                        error = ErrorCode.KAFKA_STORAGE_ERROR
                if error == ErrorCode.NONE and plog is not None:
                    appended = True
                    replicas.appended(plog)
                    if topic.name == OFFSETS_TOPIC:
                        broker.groups.complete_transaction(
                            index, marker.producer_id, marker.transaction_result
                        )
                answer = WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult(
                    partition_index=index, error_code=error
                )
                partition_results.append(answer)
                if cluster is not None and error == ErrorCode.NONE and plog is not None:
                    end = plog.log_end_offset
                    waits.append((answer, (topic.name, index, end, leader_epoch_of(plog))))
            topic_results.append(
                WriteTxnMarkersResponse.WritableTxnMarkerTopicResult(
                    name=topic.name, partitions=partition_results
                )
            )
        results.append(
            WriteTxnMarkersResponse.WritableTxnMarkerResult(
                producer_id=marker.producer_id, topics=topic_results
            )
        )
    if appended:
        replicas.notify_append()
    if waits:
        errors = await replicas.await_replicated(
            [w for _, w in waits], MARKER_REPLICATION_TIMEOUT_S, lambda: ctx.connection.closed
        )
        for (answer, _), error in zip(waits, errors, strict=True):
            answer.error_code = error
    return WriteTxnMarkersResponse(markers=results)


TRANSACTION_HANDLERS: dict[int, HandlerFn] = {
    24: _txn_api(lambda c: c.add_partitions_to_txn),
    25: _txn_api(lambda c: c.add_offsets_to_txn),
    26: _txn_api(lambda c: c.end_txn),
    27: handle_write_txn_markers,
    61: handle_describe_producers,
    65: _txn_api(lambda c: c.describe_transactions),
    66: _txn_api(lambda c: c.list_transactions),
}
