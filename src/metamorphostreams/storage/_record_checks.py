"""The checks of Kafka's LogValidator that need the records themselves, not just the batch
headers; they cost nothing on a topic that does not ask for them.

Compacted topics refuse records without a key (a key is what compaction keeps).

A topic's ``compression.type``: batches are stored with the topic's codec.

``producer`` (the default) keeps each batch as the client compressed it; that is the fast
path and costs one string comparison. Any other value (``uncompressed``, ``gzip``,
``snappy``, ``lz4``, ``zstd``) makes a batch whose codec differs be rebuilt with the
topic's codec and level, as Kafka's LogValidator does on its compressed path: the records
keep their keys, values, headers and timestamps; the batch keeps its producer id, epoch,
base sequence, transactional flag and timestamp type; offsets are laid out 0..n-1 again.
Batches already in the topic's codec are kept byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metamorphostreams.protocol.compression import CompressionError
from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    BatchHeader,
    CompressionType,
    TimestampType,
    WritableBuffer,
    iter_batch_headers,
)
from metamorphostreams.protocol.records import Record, build_batch, decode_batch
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.results import RecordError

__all__ = [
    "PRODUCER_COMPRESSION",
    "Recompressed",
    "check_records",
    "keyless_records",
    "recompress",
    "target_codec",
]

PRODUCER_COMPRESSION = "producer"  # compression.type: keep the producer's codec
_CODECS = {
    "uncompressed": CompressionType.NONE,
    "gzip": CompressionType.GZIP,
    "snappy": CompressionType.SNAPPY,
    "lz4": CompressionType.LZ4,
    "zstd": CompressionType.ZSTD,
}
_DEFAULT_LEVEL = -1  # compression.gzip.level's "codec default"


def target_codec(config: LogConfig) -> CompressionType | None:
    """The codec batches are stored with, or None to keep the producer's."""
    if config.compression_type == PRODUCER_COMPRESSION:
        return None
    return _CODECS[config.compression_type]


def _level(config: LogConfig, codec: CompressionType) -> int | None:
    level = {
        CompressionType.GZIP: config.compression_gzip_level,
        CompressionType.LZ4: config.compression_lz4_level,
        CompressionType.ZSTD: config.compression_zstd_level,
    }.get(codec, _DEFAULT_LEVEL)
    return None if level == _DEFAULT_LEVEL else level


@dataclass(slots=True)
class Recompressed:
    """The rewritten records (None: nothing to rewrite) or Kafka's error for them."""

    records: bytearray | None = None
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    record_errors: list[RecordError] = field(default_factory=list)


def recompress(
    records: WritableBuffer,
    headers: list[tuple[int, BatchHeader]],
    config: LogConfig,
    *,
    partition_name: str,
) -> Recompressed:
    """The batches of one append in the topic's codec, when any of them differs."""
    codec = target_codec(config)
    if codec is None or all(h.compression == codec for _, h in headers):
        return Recompressed()
    out = bytearray()
    level = _level(config, codec)
    for pos, header in headers:
        if header.compression == codec:
            out += records[pos : pos + header.size]
            continue
        try:
            _, decoded = decode_batch(records, pos, check_crc=False)
        except CompressionError as e:
            return Recompressed(error=ErrorCode.CORRUPT_MESSAGE, message=str(e))
        except DecodeError as e:
            return Recompressed(error=ErrorCode.INVALID_RECORD, message=str(e))
        out += build_batch(
            [Record(i, r.timestamp, r.key, r.value, r.headers) for i, r in enumerate(decoded)],
            compression=codec,
            compression_level=level,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            is_transactional=header.is_transactional,
            timestamp_type=(
                TimestampType.LOG_APPEND_TIME
                if header.timestamp_type == TimestampType.LOG_APPEND_TIME
                else TimestampType.CREATE_TIME
            ),
        )
    for _, rebuilt in iter_batch_headers(out):
        if rebuilt.size > config.max_message_bytes:
            return Recompressed(
                error=ErrorCode.MESSAGE_TOO_LARGE,
                message=f"The batch in the append to {partition_name} is {rebuilt.size} bytes "
                f"with the topic's compression.type={config.compression_type}, which exceeds "
                f"the maximum configured value of {config.max_message_bytes}.",
            )
    return Recompressed(out)


def keyless_records(
    records: WritableBuffer, headers: list[tuple[int, BatchHeader]], *, partition_name: str
) -> Recompressed | None:
    """Kafka's answer for a compacted topic's records without a key (INVALID_RECORD, each
    such record named by its index in the request), or None when every record has one."""
    errors: list[RecordError] = []
    index = 0
    for pos, _ in headers:
        try:
            _, decoded = decode_batch(records, pos, check_crc=False)
        except CompressionError as e:
            return Recompressed(error=ErrorCode.CORRUPT_MESSAGE, message=str(e))
        except DecodeError as e:
            return Recompressed(error=ErrorCode.INVALID_RECORD, message=str(e))
        for record in decoded:
            if record.key is None:
                errors.append(
                    RecordError(
                        index,
                        "Compacted topic cannot accept message without key in topic "
                        f"partition {partition_name}.",
                    )
                )
            index += 1
    if not errors:
        return None
    return Recompressed(
        error=ErrorCode.INVALID_RECORD,
        message="One or more records have been rejected",
        record_errors=errors,
    )


def check_records(
    records: WritableBuffer,
    headers: list[tuple[int, BatchHeader]],
    config: LogConfig,
    *,
    partition_name: str,
) -> Recompressed:
    """Both checks, in Kafka's order: keys on a compacted topic, then the topic's codec."""
    if config.compact_enabled:
        refused = keyless_records(records, headers, partition_name=partition_name)
        if refused is not None:
            return refused
    return recompress(records, headers, config, partition_name=partition_name)
