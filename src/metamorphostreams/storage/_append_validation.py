"""Header-level checks of records before they reach the log: a client's Produce records
(Kafka's analyzeAndValidateRecords + the LogValidator checks that need no decompression) and
the records a follower fetched from its leader."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    NO_TIMESTAMP,
    BatchHeader,
    ReadableBuffer,
    iter_batch_headers,
    validate_batches,
)
from metamorphostreams.storage.log_config import LONG_MAX, LogConfig
from metamorphostreams.storage.results import RecordError

__all__ = ["Validated", "validate_client_records", "validate_replica_records"]

# A replica takes the batches its leader accepted whatever their size (Kafka's
# ignoreRecordSize): no max.message.bytes limit.
_NO_BATCH_LIMIT = 2**31


@dataclass(slots=True)
class Validated:
    """Either the batches' ``(position, header)`` pairs or Kafka's error for the request."""

    headers: list[tuple[int, BatchHeader]] = field(default_factory=list)
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    record_errors: list[RecordError] = field(default_factory=list)


def validate_client_records(
    records: ReadableBuffer,
    config: LogConfig,
    *,
    now_ms: int,
    partition_name: str,
    from_client: bool = True,
) -> Validated:
    """Structure, magic, sizes, CRCs and counts (``validate_batches``), baseOffset 0,
    timestamps within message.timestamp.{before,after}.max.ms for CreateTime topics (judged
    on each batch's base and max timestamp, not record by record) and the whole request
    within segment.bytes. A coordinator's records (``from_client`` False) skip the
    client-only checks of Kafka's LogValidator (counts, sequences) but still may not hold
    control batches: markers go through ``PartitionLog.append_control_marker``."""
    check = validate_batches(records, config.max_message_bytes, from_client=from_client)
    if not check.ok:
        return Validated(error=check.error, message=check.message)
    headers = list(iter_batch_headers(records))
    for _, header in headers:
        if not from_client and header.is_control:
            return Validated(
                error=ErrorCode.INVALID_RECORD,
                message=f"control batches are not appended as records to {partition_name}",
            )
        if header.base_offset != 0:
            return Validated(
                error=ErrorCode.INVALID_RECORD,
                message=f"The baseOffset of the record batch in the append to {partition_name} "
                f"should be 0, but it is {header.base_offset}",
            )
    if not config.log_append_time:
        problem = _timestamp_problem(headers, config, now_ms)
        if problem is not None:
            return Validated(
                error=ErrorCode.INVALID_TIMESTAMP,
                message="One or more records have been rejected due to invalid timestamp",
                record_errors=[RecordError(0, problem)],
            )
    return _within_segment(headers, len(records), config, partition_name)


def validate_replica_records(
    records: ReadableBuffer, config: LogConfig, *, partition_name: str
) -> Validated:
    """The whole batches of a leader's Fetch response, which may end with a partial batch
    (left out). Each must be magic 2 with a sane length and a valid CRC (else
    CORRUPT_MESSAGE), their offsets must increase (CORRUPT_MESSAGE, Kafka's
    OffsetsOutOfOrderException) and all of them must fit in segment.bytes
    (RECORD_LIST_TOO_LARGE, Kafka's RecordBatchTooLargeException). No headers when no batch
    is whole."""
    try:
        headers = list(iter_batch_headers(records))
    except DecodeError as e:
        return Validated(error=ErrorCode.CORRUPT_MESSAGE, message=f"{partition_name}: {e}")
    if not headers:
        return Validated()
    end = headers[-1][0] + headers[-1][1].size
    check = validate_batches(memoryview(records)[:end], _NO_BATCH_LIMIT, from_client=False)
    if not check.ok:
        return Validated(error=check.error, message=f"{partition_name}: {check.message}")
    for (_, before), (_, header) in pairwise(headers):
        if header.base_offset <= before.last_offset:
            return Validated(
                error=ErrorCode.CORRUPT_MESSAGE,
                message=f"Out of order offsets found in append to {partition_name}: batch "
                f"{header.base_offset}..{header.last_offset} after one ending at "
                f"{before.last_offset}",
            )
    return _within_segment(headers, end, config, partition_name)


def _within_segment(
    headers: list[tuple[int, BatchHeader]], size: int, config: LogConfig, partition_name: str
) -> Validated:
    if size > config.segment_bytes:
        return Validated(
            error=ErrorCode.RECORD_LIST_TOO_LARGE,
            message=f"Message batch size is {size} bytes in append to partition "
            f"{partition_name}, which exceeds the maximum configured segment size of "
            f"{config.segment_bytes}.",
        )
    return Validated(headers)


def _timestamp_problem(
    headers: list[tuple[int, BatchHeader]], config: LogConfig, now_ms: int
) -> str | None:
    before = config.message_timestamp_before_max_ms
    after = config.message_timestamp_after_max_ms
    if before == LONG_MAX and after == LONG_MAX:
        return None
    for _, header in headers:
        base, top = header.base_timestamp, header.max_timestamp
        too_old = base != NO_TIMESTAMP and now_ms - base > before
        too_new = top != NO_TIMESTAMP and top - now_ms > after
        if too_old or too_new:
            return (
                f"Timestamp {base if too_old else top} of message is out of range. The "
                f"timestamp should be within [{now_ms - before}, {now_ms + after}]"
            )
    return None
