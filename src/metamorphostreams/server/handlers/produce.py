"""Produce: validate, append to the partition logs, answer per partition.

Records stay opaque: the storage layer parses only batch headers (CRC, offsets, producer id
and sequence) and writes the bytes as received, with baseOffset and leader epoch patched.
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
    TRANSACTIONAL_MASK,
    iter_batch_headers,
)
from ..connection import CloseConnection
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH

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


def _batch_shape(records: memoryview) -> tuple[int, bool]:
    """(number of complete batches, any transactional) from the batch headers alone."""
    size = len(records)
    if size >= BATCH_HEADER_SIZE and records[MAGIC_OFFSET] == MAGIC_V2:
        # What every client sends: exactly one well-formed batch. Two fields answer it,
        # without parsing a whole header (the log parses it once more anyway).
        (length,) = _INT32.unpack_from(records, BATCH_LENGTH_OFFSET)
        if length >= MIN_BATCH_LENGTH and LOG_OVERHEAD + length == size:
            (attributes,) = _INT16.unpack_from(records, ATTRIBUTES_OFFSET)
            return 1, bool(attributes & TRANSACTIONAL_MASK)
    count = 0
    transactional = False
    try:
        for _, header in iter_batch_headers(records):
            count += 1
            transactional = transactional or bool(header.attributes & TRANSACTIONAL_MASK)
    except DecodeError:
        pass  # the log's validation answers malformed batches with Kafka's error code
    return count, transactional


async def handle_produce(ctx: RequestContext, req: ProduceRequest) -> ProduceResponse | None:
    broker = ctx.broker
    replicas = broker.replicas
    acks = req.acks
    topics: list[ProduceResponse.TopicProduceResponse] = []
    appended = False
    any_error = False
    for topic in req.topic_data:
        responses: list[PartitionResponse] = []
        info = broker.metadata.topics.get(topic.name)
        for part in topic.partition_data:
            plog = replicas.get_log(topic.name, part.index) if info is not None else None
            if acks not in _VALID_ACKS:
                resp = _error(part.index, ErrorCode.INVALID_REQUIRED_ACKS)
            elif plog is None:
                resp = _error(part.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
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
            elif req.transactional_id is not None or shape[1]:
                resp = _error(
                    part.index, ErrorCode.INVALID_TXN_STATE, "Transactions are not supported yet"
                )
            elif acks == -1 and plog.config.min_insync_replicas > 1:
                resp = _error(
                    part.index,
                    ErrorCode.NOT_ENOUGH_REPLICAS,
                    f"The size of the current ISR (1) is insufficient to satisfy the min.isr "
                    f"requirement of {plog.config.min_insync_replicas}",
                )
            else:
                try:
                    records = part.records  # a view of the request frame: patched in place
                    result = plog.append_as_leader(
                        bytearray(records) if records.readonly else records,
                        leader_epoch=LEADER_EPOCH,
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
                    appended = appended or result.error == ErrorCode.NONE
            any_error = any_error or resp.error_code != ErrorCode.NONE
            responses.append(resp)
        topics.append(
            ProduceResponse.TopicProduceResponse(name=topic.name, partition_responses=responses)
        )
    if appended:
        replicas.notify_append()
    if acks == 0:
        if any_error:
            # A client that asked for no acks can only learn of an error by a closed connection.
            raise CloseConnection("error in a Produce request with acks=0")
        return None
    return ProduceResponse(responses=topics)
