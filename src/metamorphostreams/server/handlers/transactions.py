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
from ...protocol._generated.add_offsets_to_txn import AddOffsetsToTxnRequest
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
from ..replica_manager import leader_epoch_of

log = logging.getLogger("metamorphostreams.server")


def _txn_api(method: Callable[[Any], Callable[..., Any]]) -> HandlerFn:
    """A handler that hands the request to a TransactionCoordinator method."""

    async def handle(ctx: RequestContext, req: Any) -> Any:
        if ctx.broker.cluster is not None and (refused := cluster_refusal(ctx, req)) is not None:
            return refused
        runtime = ctx.broker.transactions
        return await runtime.call(method(runtime.coordinator), req, ctx.api_version)

    return handle


BATCHED_ADD_PARTITIONS_VERSION = 4  # AddPartitionsToTxn v4+: brokers' verification batches


def cluster_refusal(ctx: RequestContext, req: Any) -> Any | None:
    """In a cluster: NOT_COORDINATOR for a transactional id whose __transaction_state
    partition another broker leads; and, until markers are sent to other brokers
    (WriteTxnMarkers), INVALID_TXN_STATE for adding a partition this broker does not lead.
    None to go on."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    is_add = isinstance(req, AddPartitionsToTxnRequest)
    if is_add and ctx.api_version >= BATCHED_ADD_PARTITIONS_VERSION:
        return None
    txn_id = req.v3_and_below_transactional_id if is_add else getattr(req, "transactional_id", None)
    if not isinstance(txn_id, str) or not txn_id:
        return None
    error = ErrorCode.NONE
    if not cluster.coordinates_transaction(txn_id):
        error = ErrorCode.NOT_COORDINATOR
    if is_add:
        return _refuse_remote_partitions(ctx, req, txn_id, error)
    if isinstance(req, AddOffsetsToTxnRequest) and error == ErrorCode.NONE:
        partition = ctx.broker.groups.coordinator.partition_for(req.group_id)
        if not cluster.leads(OFFSETS_TOPIC, partition):
            log.warning(
                "transaction %s: group %s is coordinated by another broker; transactions "
                "spanning brokers are not supported yet",
                txn_id,
                req.group_id,
            )
            error = ErrorCode.INVALID_TXN_STATE
    if error == ErrorCode.NONE:
        return None
    response = RESPONSE_CLASSES[ctx.header.request_api_key]()
    response.error_code = error
    return response


def _refuse_remote_partitions(
    ctx: RequestContext, req: AddPartitionsToTxnRequest, txn_id: str, error: ErrorCode
) -> AddPartitionsToTxnResponse | None:
    cluster = ctx.broker.cluster
    assert cluster is not None
    wanted = [(t.name, p) for t in req.v3_and_below_topics for p in t.partitions]
    remote = {
        (t, p)
        for t, p in wanted
        if not cluster.leads(t, p)
        and cluster.partition_error(t, p) != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    }
    if error == ErrorCode.NONE and not remote:
        return None
    if remote and error == ErrorCode.NONE:
        log.warning(
            "transaction %s: %s led by other brokers; transactions spanning brokers are not "
            "supported yet",
            txn_id,
            ", ".join(f"{t}-{p}" for t, p in sorted(remote)),
        )
    Result = AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult
    topics = []
    for t in req.v3_and_below_topics:
        results = []
        for p in t.partitions:
            if error != ErrorCode.NONE:
                code = error
            elif (t.name, p) in remote:
                code = ErrorCode.INVALID_TXN_STATE
            else:
                code = ErrorCode.OPERATION_NOT_ATTEMPTED
            results.append(Result(partition_index=p, partition_error_code=code))
        topics.append(
            AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult(
                name=t.name, results_by_partition=results
            )
        )
    return AddPartitionsToTxnResponse(results_by_topic_v3_and_below=topics)


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
    results = []
    appended = False
    for marker in req.markers:
        topic_results = []
        for topic in marker.topics:
            partition_results = []
            for index in topic.partition_indexes:
                plog = replicas.get_log(topic.name, index)
                if plog is None:
                    error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
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
                partition_results.append(
                    WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult(
                        partition_index=index, error_code=error
                    )
                )
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
