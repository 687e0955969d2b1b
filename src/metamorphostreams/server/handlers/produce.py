"""Produce: validate, append to the partition logs, answer per partition.

Records stay opaque: the storage layer parses only batch headers (CRC, offsets, producer id
and sequence) and writes the bytes as received, with baseOffset and leader epoch patched.

Transactional batches first pass the transaction coordinator: before v12 the partition must
already be in the producer's transaction (KIP-890 part 1 verification); from v12 the client
runs transaction version 2 and the first batch adds the partition itself (KIP-890 part 2).
v13 (KIP-516) names topics by id: an id no topic has gets UNKNOWN_TOPIC_ID.
"""

from __future__ import annotations

import asyncio
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
from ..replica_manager import LEADER_EPOCH, effective_min_isr
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


def _verify(
    ctx: RequestContext, req: ProduceRequest, topic: str, partition: int, producer: tuple[int, int]
) -> PartitionResponse | None:
    """KIP-890 part 1: a transactional batch is appended only to a partition its producer
    added to the ongoing transaction; Kafka's translation of the coordinator's answer."""
    assert req.transactional_id is not None
    runtime = ctx.broker.transactions
    cluster = ctx.broker.cluster
    if cluster is not None and not cluster.coordinates_transaction(req.transactional_id):
        # Only partitions led by the transaction's coordinator can have been added to it
        # until markers are sent across brokers.
        return _error(
            partition, ErrorCode.INVALID_TXN_STATE, "Partition was not added to the transaction"
        )
    if ctx.api_version >= IMPLICIT_ADD_VERSION:
        # Kafka adds for TV_2 clients whatever transaction.partition.verification.enable says.
        error = runtime.add_partition(req.transactional_id, *producer, topic, partition)
    elif not runtime.verification_enabled:
        return None
    else:
        error = runtime.verify_partition(req.transactional_id, *producer, topic, partition)
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


def _isr_too_small(ctx: RequestContext, plog: PartitionLog) -> str | None:
    """Kafka's refusal of an acks=all append while the ISR is below min.insync.replicas."""
    min_isr = plog.config.min_insync_replicas
    if ctx.broker.cluster is None:
        if min_isr <= 1:
            return None
        isr = f"Set({ctx.broker.broker_id})"
    else:
        state = ctx.broker.replicas.leader_state(plog.topic, plog.partition)
        if state is None or len(state.isr) >= effective_min_isr(state, plog):
            return None
        min_isr = effective_min_isr(state, plog)
        isr = "Set(" + ", ".join(str(b) for b in state.isr) + ")"
    return (
        f"The size of the current ISR {isr} is insufficient to satisfy the min.isr "
        f"requirement of {min_isr} for partition {plog.topic}-{plog.partition}"
    )


# An acks=all partition answer waiting for the high watermark: (the answer, topic, offset
# the high watermark must reach, leader epoch of the append).
_Wait = tuple[PartitionResponse, str, int, int]


async def _await_replication(ctx: RequestContext, waits: list[_Wait], timeout_ms: int) -> None:
    """Hold the acks=all answers until the ISR has the records (Kafka's DelayedProduce):
    the high watermark reached them, or the leadership moved, or ``timeout_ms`` passed
    (REQUEST_TIMED_OUT)."""
    replicas = ctx.broker.replicas
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_ms, 0) / 1000
    while True:
        pending: list[_Wait] = []
        for wait in waits:
            resp, topic, required, epoch = wait
            error = replicas.replication_error(topic, resp.index, required, epoch)
            if error is None:
                pending.append(wait)
            elif error != ErrorCode.NONE:
                _fail(resp, error)
        now = loop.time()
        if not pending or ctx.connection.closed:
            return
        if now >= deadline:
            for resp, *_ in pending:
                _fail(resp, ErrorCode.REQUEST_TIMED_OUT)
            return
        waits = pending
        await replicas.wait_for_data(deadline - now)


def _fail(resp: PartitionResponse, error: ErrorCode) -> None:
    resp.error_code = error
    resp.base_offset = -1
    resp.log_append_time_ms = -1
    resp.log_start_offset = -1


_NO_GENERIC_ERROR_VERSION = 10  # Produce v11+ clients handle TRANSACTION_ABORTABLE
IMPLICIT_ADD_VERSION = 12  # KIP-890 part 2: the broker adds the partition to the transaction
TOPIC_ID_VERSION = 13  # KIP-516: topics by id
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
    waits: list[_Wait] = []
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
                failed := _verify(ctx, req, topic.name, part.index, shape[1])
            ):
                resp = failed
            elif acks == -1 and (short := _isr_too_small(ctx, plog)) is not None:
                resp = _error(part.index, ErrorCode.NOT_ENOUGH_REPLICAS, short)
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
                        waits.append((resp, topic.name, result.last_offset + 1, plog.latest_epoch))
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
    return ProduceResponse(responses=topics)
