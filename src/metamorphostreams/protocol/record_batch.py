"""Magic-2 record batch headers: parsing, CRC-32C checks, validation and in-place patching.

A record batch is kept as opaque bytes everywhere on the hot path (produce, storage, fetch).
This module reads the fixed 61-byte header, checks the CRC and rewrites the few fields a
broker owns (baseOffset, partitionLeaderEpoch, LogAppendTime). Record-level work lives in
``records.py``. No I/O, no clock.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from crc32c import crc32c

from metamorphostreams.protocol.errors import DecodeError, ErrorCode

__all__ = [
    "ATTRIBUTES_OFFSET",
    "BASE_OFFSET_OFFSET",
    "BASE_SEQUENCE_OFFSET",
    "BASE_TIMESTAMP_OFFSET",
    "BATCH_HEADER_SIZE",
    "BATCH_LENGTH_OFFSET",
    "COMPRESSION_MASK",
    "CONTROL_MASK",
    "CRC_OFFSET",
    "DELETE_HORIZON_MASK",
    "LAST_OFFSET_DELTA_OFFSET",
    "LOG_OVERHEAD",
    "MAGIC_OFFSET",
    "MAGIC_V2",
    "MAX_TIMESTAMP_OFFSET",
    "MIN_BATCH_LENGTH",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_TIMESTAMP",
    "PARTITION_LEADER_EPOCH_OFFSET",
    "PRODUCER_EPOCH_OFFSET",
    "PRODUCER_ID_OFFSET",
    "RECORDS_COUNT_OFFSET",
    "TIMESTAMP_TYPE_MASK",
    "TRANSACTIONAL_MASK",
    "BatchHeader",
    "BatchValidation",
    "CompressionType",
    "ReadableBuffer",
    "TimestampType",
    "WritableBuffer",
    "compute_crc",
    "increment_sequence",
    "iter_batch_headers",
    "peek_magic",
    "set_base_offset",
    "set_log_append_time",
    "set_partition_leader_epoch",
    "update_crc",
    "validate_batches",
    "verify_crc",
]

ReadableBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview

# Field offsets inside a batch, counted from the batch's first byte (DefaultRecordBatch).
BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21  # the CRC covers everything from here to the end of the batch
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35
PRODUCER_ID_OFFSET = 43
PRODUCER_EPOCH_OFFSET = 51
BASE_SEQUENCE_OFFSET = 53  # 51 + 2; the table in record-batch-notes.md says 55, a slip
RECORDS_COUNT_OFFSET = 57
BATCH_HEADER_SIZE = 61  # records (or the compressed blob) start here

LOG_OVERHEAD = 12  # baseOffset int64 + batchLength int32: the part not counted by batchLength
# batchLength counts the header bytes after the length field, so it can never be below this.
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD  # 49

MAGIC_V2 = 2

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40
# Attribute bits Kafka keeps when it rewrites attributes (setMaxTimestamp recomputes them).
_KNOWN_FLAGS = COMPRESSION_MASK | TRANSACTIONAL_MASK | CONTROL_MASK | DELETE_HORIZON_MASK

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_TIMESTAMP = -1
NO_PARTITION_LEADER_EPOCH = -1

_INT32_MAX = 0x7FFFFFFF

_HEADER = struct.Struct(">qiibIhiqqqhii")
assert _HEADER.size == BATCH_HEADER_SIZE
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")


class CompressionType(enum.IntEnum):
    """Codec id stored in attribute bits 0-2. Values are Kafka's."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    """Attribute bit 3: who set the batch's timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The 61-byte header of a magic-2 record batch, big-endian on the wire.

    Layout: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8,
    crc uint32, attributes int16, lastOffsetDelta int32, baseTimestamp int64,
    maxTimestamp int64, producerId int64, producerEpoch int16, baseSequence int32,
    recordsCount int32. ``batch_length`` counts the bytes after the length field, so the
    batch occupies ``12 + batch_length`` bytes. A parsed header always has magic 2 and
    ``batch_length >= 49``; the CRC is not checked by parsing (see ``verify_crc``).
    Immutable, safe to share.
    """

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @classmethod
    def parse(cls, buf: ReadableBuffer, pos: int = 0) -> BatchHeader:
        """Read the header at ``pos``. Raises DecodeError on short input, magic != 2 or a
        batchLength smaller than the header itself."""
        if pos < 0 or len(buf) - pos < BATCH_HEADER_SIZE:
            raise DecodeError(
                f"record batch header needs {BATCH_HEADER_SIZE} bytes at {pos}, "
                f"have {max(len(buf) - pos, 0)}"
            )
        header = cls(*_HEADER.unpack_from(buf, pos))
        if header.magic != MAGIC_V2:
            raise DecodeError(f"unsupported record batch magic {header.magic} at {pos}")
        if header.batch_length < MIN_BATCH_LENGTH:
            raise DecodeError(f"record batch length {header.batch_length} at {pos} is too small")
        return header

    @property
    def size(self) -> int:
        """Total bytes the batch occupies, length prefix included."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def compression(self) -> CompressionType:
        """The codec; raises DecodeError for codec ids Kafka does not define (5-7)."""
        codec = self.attributes & COMPRESSION_MASK
        try:
            return CompressionType(codec)
        except ValueError:
            raise DecodeError(f"unknown compression codec id {codec}") from None

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & TIMESTAMP_TYPE_MASK:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_MASK)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id > NO_PRODUCER_ID

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; sequences wrap from int32 max to 0, as in Kafka."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return increment_sequence(self.base_sequence, self.last_offset_delta)


def increment_sequence(sequence: int, increment: int) -> int:
    """Add to a producer sequence number, wrapping past int32 max to 0 (Kafka's rule)."""
    if sequence > _INT32_MAX - increment:
        return increment - (_INT32_MAX - sequence) - 1
    return sequence + increment


def peek_magic(buf: ReadableBuffer, pos: int = 0) -> int | None:
    """The magic byte of the batch (or legacy message set) at ``pos``; None if too short.

    Never raises, so a broker can tell a magic 0/1 message set from garbage and reject it
    with the right error.
    """
    if pos < 0 or len(buf) - pos <= MAGIC_OFFSET:
        return None
    value: int = buf[pos + MAGIC_OFFSET]
    return value - 256 if value > 127 else value


def compute_crc(buf: ReadableBuffer, pos: int = 0, batch_length: int | None = None) -> int:
    """CRC-32C over attributes..end of the batch at ``pos`` (batchLength read if not given)."""
    if batch_length is None:
        (batch_length,) = _INT32.unpack_from(buf, pos + BATCH_LENGTH_OFFSET)
    end = pos + LOG_OVERHEAD + batch_length
    if end > len(buf):
        raise DecodeError(f"record batch at {pos} needs {end - pos} bytes, have {len(buf) - pos}")
    with memoryview(buf) as view:
        return int(crc32c(view[pos + ATTRIBUTES_OFFSET : end]))


def verify_crc(buf: ReadableBuffer, pos: int, header: BatchHeader) -> bool:
    """True if the stored CRC matches the batch bytes; False also when the batch is cut short."""
    if pos + header.size > len(buf):
        return False
    return compute_crc(buf, pos, header.batch_length) == header.crc


def update_crc(buf: WritableBuffer, pos: int = 0) -> int:
    """Recompute and store the CRC of the batch at ``pos``; returns the new CRC."""
    crc = compute_crc(buf, pos)
    _UINT32.pack_into(buf, pos + CRC_OFFSET, crc)
    return crc


def iter_batch_headers(buf: ReadableBuffer) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each complete batch, in order.

    Stops quietly at a trailing partial batch (a torn log tail, a fetch cut at max bytes);
    the caller finds where it starts from the last ``position + header.size``. Raises
    DecodeError for a complete-looking batch that is not magic 2 or whose length is absurd.
    CRCs are not checked here.
    """
    pos = 0
    end = len(buf)
    while end - pos >= LOG_OVERHEAD:
        (batch_length,) = _INT32.unpack_from(buf, pos + BATCH_LENGTH_OFFSET)
        if batch_length < MIN_BATCH_LENGTH:
            raise DecodeError(f"record batch length {batch_length} at {pos} is too small")
        if end - pos < LOG_OVERHEAD + batch_length:
            return
        header = BatchHeader.parse(buf, pos)
        yield pos, header
        pos += header.size


@dataclass(frozen=True, slots=True)
class BatchValidation:
    """Outcome of ``validate_batches``: Kafka's error code plus a message for the response's
    error_message field (None when the records are acceptable). Truthy when valid."""

    error: ErrorCode
    message: str | None = None
    batch_count: int = 0

    @property
    def ok(self) -> bool:
        return self.error == ErrorCode.NONE

    def __bool__(self) -> bool:
        return self.ok


def validate_batches(
    buf: ReadableBuffer,
    max_batch_bytes: int,
    *,
    allow_empty: bool = False,
    from_client: bool = True,
    require_single_batch: bool = False,
    allow_zstd: bool = True,
) -> BatchValidation:
    """Header-only validation of the records of one produce partition (no decompression).

    Mirrors the checks Kafka makes before appending (ProduceRequest.validateRecords,
    LogValidator.validateBatch, DefaultRecordBatch.ensureValid, the max.message.bytes check):

    * structure: the buffer must be whole batches exactly; a short or leftover tail, or a
      batchLength below the header size, is CORRUPT_MESSAGE (Kafka would trim a partial tail;
      no real client sends one);
    * magic other than 2: INVALID_RECORD (Produce v3+ accepts only magic 2);
    * batch larger than ``max_batch_bytes`` (max.message.bytes): MESSAGE_TOO_LARGE;
    * CRC-32C mismatch or undefined codec id: CORRUPT_MESSAGE;
    * ``from_client``: recordsCount must be > 0 and equal lastOffsetDelta + 1, no control
      batches, a producer id needs a sequence: INVALID_RECORD;
    * ``require_single_batch`` (Produce v3+ in Kafka): more than one batch is INVALID_RECORD;
    * zstd when ``allow_zstd`` is False (Produce below v7): UNSUPPORTED_COMPRESSION_TYPE.
    """
    total = len(buf)
    if total == 0:
        if allow_empty:
            return BatchValidation(ErrorCode.NONE)
        return BatchValidation(ErrorCode.INVALID_RECORD, "produce request has no record batch")
    pos = 0
    count = 0
    while pos < total:
        remaining = total - pos
        if remaining <= MAGIC_OFFSET:
            return _corrupt(f"{remaining} stray bytes at {pos}")
        magic = peek_magic(buf, pos)
        if magic != MAGIC_V2:
            return BatchValidation(
                ErrorCode.INVALID_RECORD,
                f"record batch magic {magic} at {pos}; only magic 2 is accepted",
            )
        (batch_length,) = _INT32.unpack_from(buf, pos + BATCH_LENGTH_OFFSET)
        if batch_length < MIN_BATCH_LENGTH:
            return _corrupt(f"record batch length {batch_length} at {pos} is too small")
        size = LOG_OVERHEAD + batch_length
        if size > remaining:
            return _corrupt(f"record batch at {pos} needs {size} bytes, only {remaining} present")
        if size > max_batch_bytes:
            return BatchValidation(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"record batch of {size} bytes exceeds the limit of {max_batch_bytes}",
            )
        header = BatchHeader.parse(buf, pos)
        if not verify_crc(buf, pos, header):
            return _corrupt(f"record batch at {pos} fails its CRC check")
        codec = header.attributes & COMPRESSION_MASK
        if codec > CompressionType.ZSTD:
            return _corrupt(f"record batch at {pos} uses unknown codec id {codec}")
        if codec == CompressionType.ZSTD and not allow_zstd:
            return BatchValidation(
                ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7 or later"
            )
        if header.records_count < 0 or header.last_offset_delta < 0:
            return BatchValidation(ErrorCode.INVALID_RECORD, f"negative count in batch at {pos}")
        if from_client:
            problem = _client_batch_problem(header)
            if problem is not None:
                return BatchValidation(ErrorCode.INVALID_RECORD, f"{problem} (batch at {pos})")
        count += 1
        if require_single_batch and count > 1:
            return BatchValidation(
                ErrorCode.INVALID_RECORD, "only one record batch per partition is allowed"
            )
        pos += size
    return BatchValidation(ErrorCode.NONE, None, count)


def _corrupt(message: str) -> BatchValidation:
    return BatchValidation(ErrorCode.CORRUPT_MESSAGE, message)


def _client_batch_problem(header: BatchHeader) -> str | None:
    """What Kafka's LogValidator.validateBatch rejects in a batch a client sent, or None."""
    if header.records_count <= 0:
        return "invalid reported count for record batch"
    if header.last_offset_delta + 1 != header.records_count:
        return "inconsistent batch offset range and record count"
    if header.is_control:
        return "clients are not allowed to write control records"
    if header.has_producer_id and header.base_sequence < 0:
        return "invalid sequence number"
    return None


def set_base_offset(buf: WritableBuffer, pos: int, offset: int) -> None:
    """Stamp the assigned log offset. Outside the CRC, so nothing else changes."""
    _INT64.pack_into(buf, pos + BASE_OFFSET_OFFSET, offset)


def set_partition_leader_epoch(buf: WritableBuffer, pos: int, epoch: int) -> None:
    """Stamp the leader epoch. Outside the CRC, so nothing else changes."""
    _INT32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, epoch)


def set_log_append_time(buf: WritableBuffer, pos: int, timestamp: int) -> None:
    """Mark the batch LogAppendTime with ``timestamp`` as maxTimestamp, then fix the CRC.

    Same as Kafka's DefaultRecordBatch.setMaxTimestamp: attributes are rebuilt from the
    known flags plus the timestamp-type bit, baseTimestamp and the records are left alone,
    and nothing is rewritten when the batch already says exactly this.
    """
    (attributes,) = _INT16.unpack_from(buf, pos + ATTRIBUTES_OFFSET)
    (current_max,) = _INT64.unpack_from(buf, pos + MAX_TIMESTAMP_OFFSET)
    if attributes & TIMESTAMP_TYPE_MASK and current_max == timestamp:
        return
    new_attributes = (attributes & _KNOWN_FLAGS) | TIMESTAMP_TYPE_MASK
    _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, new_attributes)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp)
    update_crc(buf, pos)
