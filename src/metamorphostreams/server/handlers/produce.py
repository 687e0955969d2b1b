"""Produce: validate, append to the partition logs, answer per partition.

Records stay opaque: the storage layer parses only batch headers (CRC, offsets, producer id
and sequence) and writes the bytes as received, with baseOffset and leader epoch patched.

Transactional batches first pass the transaction coordinator: before v12 the partition must
already be in the producer's transaction (KIP-890 part 1 verification); from v12 the client
runs transaction version 2 and the first batch adds the partition itself (KIP-890 part 2).
v13 (KIP-516) names topics by id: an id no topic has gets UNKNOWN_TOPIC_ID.
"""

from __future__ import annotations

import struct

from ...protocol._generated.produce import ProduceRequest, ProduceResponse
from ...protocol.errors import DecodeError, ErrorCode
from ...protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    BATCH_LENGTH_OFFSET,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MAGIC_V2,
    MIN_BATCH_LENGTH,
    PRODUCER_ID_OFFSET,
    TRANSACTIONAL_MASK,
    iter_batch_headers,
)
from ...storage import PartitionLog
from ..connection import CloseConnection
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH, Replication, effective_min_isr
from ._leaders import current_leader, leader_endpoints
from .metadata import topic_ids

_VALID_ACKS = (-1, 0, 1)
PartitionResponse = ProduceResponse.PartitionProduceResponse


def _error(index: int, code: ErrorCode, message: str | None = None) -> PartitionResponse:
    return PartitionResponse(
        index=index,
        error_code=code,
        base_offset=-1,
        log_append_time_ms=-1,
        log_start_offset=-1,
        error_message=message,
    )


_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_PRODUCER = struct.Struct(">qh")  # producerId, producerEpoch


def _missing(ctx: RequestContext, info: object, topic: str, partition: int) -> ErrorCode:
    """No log here: an unknown partition, or in a cluster one another broker leads."""
    cluster = ctx.broker.cluster
    if cluster is None or info is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return cluster.partition_error(topic, partition)


def _batch_shape(records: memoryview) -> tuple[int, tuple[int, int] | None]:
    """(number of complete batches, (producer id, epoch) of a transactional batch or None)
    from the batch headers alone."""
    size = len(records)
    if size >= BATCH_HEADER_SIZE and records[MAGIC_OFFSET] == MAGIC_V2:
        # What every client sends: exactly one well-formed batch. Two fields answer it,
        # without parsing a whole header (the log parses it once more anyway).
        (length,) = _INT32.unpack_from(records, BATCH_LENGTH_OFFSET)
        if length >= MIN_BATCH_LENGTH and LOG_OVERHEAD + length == size:
            (attributes,) = _INT16.unpack_from(records, ATTRIBUTES_OFFSET)
            if not attributes & TRANSACTIONAL_MASK:
                return 1, None
            return 1, _PRODUCER.unpack_from(records, PRODUCER_ID_OFFSET)
    count = 0
    producer: tuple[int, int] | None = None
    try:
        for _, header in iter_batch_headers(records):
            count += 1
            if header.attributes & TRANSACTIONAL_MASK and producer is None:
                producer = header.producer_id, header.producer_epoch
    except DecodeError:
        pass  # the log's validation answers malformed batches with Kafka's error code
    return count, producer


def _has_transactional_records(req: ProduceRequest) -> bool:
    """Kafka's RequestUtils.hasTransactionalRecords: the first batch of any partition."""
    for topic in req.topic_data:
        for part in topic.partition_data:
            records = part.records
            if (
                records is not None
                and len(records) >= BATCH_HEADER_SIZE
                and records[MAGIC_OFFSET] == MAGIC_V2
                and _INT16.unpack_from(records, ATTRIBUTES_OFFSET)[0] & TRANSACTIONAL_MASK
            ):
                return True
    return False


def _all_failed(req: ProduceRequest, code: ErrorCode) -> ProduceResponse:
    return ProduceResponse(
        responses=[
            ProduceResponse.TopicProduceResponse(
                name=topic.name,
                topic_id=topic.topic_id,
                partition_responses=[_error(p.index, code) for p in topic.partition_data],
            )
            for topic in req.topic_data
        ]
    )


async def _verify(
    ctx: RequestContext, req: ProduceRequest, topic: str, partition: int, producer: tuple[int, int]
) -> PartitionResponse | None:
    """KIP-890 part 1: a transactional batch is appended only to a partition its producer
    added to the ongoing transaction (asked of its coordinator, here or on another
    broker); Kafka's translation of the coordinator's answer."""
    assert req.transactional_id is not None
    runtime = ctx.broker.transactions
    # Kafka adds for TV_2 clients whatever transaction.partition.verification.enable says.
    add = ctx.api_version >= IMPLICIT_ADD_VERSION
    if not add and not runtime.verification_enabled:
        return None
    error = await runtime.check_partition(
        req.transactional_id, *producer, topic, partition, add=add
    )
    if error == ErrorCode.NONE:
        return None
    # The translations of Kafka's AddPartitionsToTxnManager: producers expect
    # INVALID_PRODUCER_EPOCH here, and clients before Produce v11 do not know
    # TRANSACTION_ABORTABLE.
    if error == ErrorCode.PRODUCER_FENCED:
        error = ErrorCode.INVALID_PRODUCER_EPOCH
    elif error == ErrorCode.TRANSACTION_ABORTABLE and ctx.api_version <= _NO_GENERIC_ERROR_VERSION:
        error = ErrorCode.INVALID_TXN_STATE
    if error == ErrorCode.INVALID_TXN_STATE:
        return _error(partition, error, "Partition was not added to the transaction")
    if error in _RETRIABLE_VERIFICATION_ERRORS:
        # Older clients do not retry these on Produce; NOT_ENOUGH_REPLICAS they do retry
        # without refreshing metadata, which is why Kafka answers it instead.
        return _error(
            partition,
            ErrorCode.NOT_ENOUGH_REPLICAS,
            "Unable to verify the partition has been added to the transaction. "
            f"Underlying error: {error.name}",
        )
    return _error(partition, error)


def _isr_too_small(ctx: RequestContext, plog: PartitionLog) -> bool:
    """Kafka refuses an acks=all append while the ISR is smaller than min.insync.replicas
    (capped by the replication factor); a standalone broker's ISR is itself."""
    if ctx.broker.cluster is None:
        return plog.config.min_insync_replicas > 1
    state = ctx.broker.replicas.leader_state(plog.topic, plog.partition)
    return state is not None and len(state.isr) < effective_min_isr(state, plog)


async def _await_replication(
    ctx: RequestContext, waits: list[tuple[PartitionResponse, Replication]], timeout_ms: int
) -> None:
    """Hold the acks=all answers until the ISR has the records (Kafka's DelayedProduce):
    the high watermark reached them, the leadership moved, or ``timeout_ms`` passed."""
    errors = await ctx.broker.replicas.await_replicated(
        [w for _, w in waits], timeout_ms / 1000, lambda: ctx.connection.closed
    )
    for (resp, _), error in zip(waits, errors, strict=True):
        if error != ErrorCode.NONE:
            _fail(resp, error)


def _fail(resp: PartitionResponse, error: ErrorCode) -> None:
    resp.error_code = error
    resp.base_offset = -1
    resp.log_append_time_ms = -1
    resp.log_start_offset = -1


_NO_GENERIC_ERROR_VERSION = 10  # Produce v11+ clients handle TRANSACTION_ABORTABLE
IMPLICIT_ADD_VERSION = 12  # KIP-890 part 2: the broker adds the partition to the transaction
TOPIC_ID_VERSION = 13  # KIP-516: topics by id
CURRENT_LEADER_VERSION = 10  # KIP-951: leaders in NOT_LEADER_OR_FOLLOWER answers
_RETRIABLE_VERIFICATION_ERRORS = frozenset(
    {
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
    }
)


async def handle_produce(ctx: RequestContext, req: ProduceRequest) -> ProduceResponse | None:
    broker = ctx.broker
    replicas = broker.replicas
    in_cluster = broker.cluster is not None  # leader epochs move only in a cluster
    acks = req.acks
    if req.transactional_id is None and _has_transactional_records(req):
        if acks == 0:
            raise CloseConnection("transactional records without a transactional id, acks=0")
        return _all_failed(req, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    topics: list[ProduceResponse.TopicProduceResponse] = []
    appended = False
    any_error = False
    by_id = topic_ids(broker.metadata) if ctx.api_version >= TOPIC_ID_VERSION else None
    unknown_ids: list[ProduceResponse.TopicProduceResponse] = []
    waits: list[tuple[PartitionResponse, Replication]] = []
    for topic in req.topic_data:
        responses: list[PartitionResponse] = []
        if by_id is None:
            info = broker.metadata.topics.get(topic.name)
        else:
            info = by_id.get(topic.topic_id)
            if info is None:
                # After the others, as KafkaApis merges its unknown-topic answers last.
                any_error = True
                unknown_ids.append(
                    ProduceResponse.TopicProduceResponse(
                        topic_id=topic.topic_id,
                        partition_responses=[
                            _error(p.index, ErrorCode.UNKNOWN_TOPIC_ID)
                            for p in topic.partition_data
                        ],
                    )
                )
                continue
            topic.name = info.name
        for part in topic.partition_data:
            plog = replicas.get_log(topic.name, part.index) if info is not None else None
            if acks not in _VALID_ACKS:
                resp = _error(part.index, ErrorCode.INVALID_REQUIRED_ACKS)
            elif plog is None:
                resp = _error(part.index, _missing(ctx, info, topic.name, part.index))
            elif part.records is None or len(part.records) == 0:
                resp = _error(
                    part.index, ErrorCode.INVALID_RECORD, "Produce request without records"
                )
            elif (shape := _batch_shape(part.records))[0] > 1:
                resp = _error(
                    part.index,
                    ErrorCode.INVALID_RECORD,
                    f"Produce requests with version {ctx.api_version} are only allowed to "
                    "contain exactly one record batch per partition.",
                )
            elif shape[1] is not None and (
                failed := await _verify(ctx, req, topic.name, part.index, shape[1])
            ):
                resp = failed
            elif acks == -1 and _isr_too_small(ctx, plog):
                # Kafka answers with the log start offset and no message.
                resp = _error(part.index, ErrorCode.NOT_ENOUGH_REPLICAS)
                resp.log_start_offset = plog.log_start_offset
            else:
                try:
                    records = part.records  # a view of the request frame: patched in place
                    result = plog.append_as_leader(
                        bytearray(records) if records.readonly else records,
                        leader_epoch=plog.latest_epoch if in_cluster else LEADER_EPOCH,
                        now_ms=broker.now_ms(),
                    )
                except OSError as e:
                    resp = _error(part.index, ErrorCode.KAFKA_STORAGE_ERROR, str(e))
                else:
                    resp = PartitionResponse(
                        index=part.index,
                        error_code=result.error,
                        base_offset=result.base_offset if result.error == ErrorCode.NONE else -1,
                        log_append_time_ms=result.log_append_time,
                        log_start_offset=result.log_start_offset,
                        record_errors=[
                            ProduceResponse.BatchIndexAndErrorMessage(
                                batch_index=i, batch_index_error_message=m
                            )
                            for i, m in result.record_errors
                        ],
                        error_message=result.error_message,
                    )
                    if result.error == ErrorCode.NONE:
                        appended = True
                        if in_cluster:
                            replicas.appended(plog)
                    if in_cluster and acks == -1 and result.error == ErrorCode.NONE:
                        waits.append(
                            (
                                resp,
                                (topic.name, part.index, result.last_offset + 1, plog.latest_epoch),
                            )
                        )
            any_error = any_error or resp.error_code != ErrorCode.NONE
            responses.append(resp)
        topics.append(
            ProduceResponse.TopicProduceResponse(
                name=topic.name, topic_id=topic.topic_id, partition_responses=responses
            )
        )
    if unknown_ids:
        topics.extend(unknown_ids)
    if appended:
        replicas.notify_append()
    if waits:
        await _await_replication(ctx, waits, req.timeout_ms)
    if acks == 0:
        if any_error:
            # A client that asked for no acks can only learn of an error by a closed connection.
            raise CloseConnection("error in a Produce request with acks=0")
        return None
    response = ProduceResponse(responses=topics)
    if in_cluster and ctx.api_version >= CURRENT_LEADER_VERSION:
        _with_leaders(ctx, response)
    return response


def _with_leaders(ctx: RequestContext, response: ProduceResponse) -> None:
    """KIP-951: NOT_LEADER_OR_FOLLOWER answers name the partition's current leader, and
    the response lists those leaders' endpoints."""
    leaders = []
    for topic in response.responses:
        for part in topic.partition_responses:
            if part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                leader, epoch = current_leader(ctx, topic.name, part.index)
                part.current_leader = ProduceResponse.LeaderIdAndEpoch(
                    leader_id=leader, leader_epoch=epoch
                )
                leaders.append(leader)
    response.node_endpoints = leader_endpoints(ctx, leaders, ProduceResponse.NodeEndpoint)
