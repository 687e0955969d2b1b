"""Builders and readers shared by the storage tests."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.protocol.record_batch import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    BatchHeader,
    CompressionType,
    iter_batch_headers,
)
from metamorphostreams.protocol.records import Record, build_batch, iter_records
from metamorphostreams.storage import LogConfig, PartitionLog

# Small segments and a dense index so a few appends exercise rolls and index lookups.
SMALL = LogConfig(segment_bytes=4096, index_interval_bytes=256, file_delete_delay_ms=0)


def batch(
    count: int = 1,
    *,
    value: bytes = b"value",
    ts: int = 1_000,
    pid: int = NO_PRODUCER_ID,
    epoch: int = NO_PRODUCER_EPOCH,
    seq: int = NO_SEQUENCE,
    compression: CompressionType = CompressionType.NONE,
    ts_step: int = 0,
) -> bytearray:
    """A client-style batch (baseOffset 0) of ``count`` records, timestamps ts, ts+step..."""
    records = [(b"k%d" % i, value, (), ts + i * ts_step) for i in range(count)]
    return bytearray(
        build_batch(
            records,
            compression=compression,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
        )
    )


def open_log(
    path: Path,
    config: LogConfig = SMALL,
    *,
    now_ms: int = 1_000,
    clean: bool = True,
    recovery_point: int = 0,
    log_start_offset: int | None = None,
    fsync: bool = False,
) -> PartitionLog:
    return PartitionLog.open(
        path,
        "topic",
        0,
        config,
        now_ms=now_ms,
        recovery_point=recovery_point,
        log_start_offset=log_start_offset,
        clean_shutdown=clean,
        fsync=fsync,
    )


def read_headers(log: PartitionLog, start: int | None = None) -> list[BatchHeader]:
    """Every batch from ``start`` (default log start) to the high watermark, via ``read``."""
    offset = log.log_start_offset if start is None else start
    out: list[BatchHeader] = []
    while offset < log.high_watermark:
        result = log.read(offset, 1 << 20, max_offset=log.high_watermark, min_one_message=True)
        assert result.error == 0, result
        assert result.size > 0, f"empty read at {offset}"
        headers = [h for _, h in iter_batch_headers(result.read_bytes())]
        out.extend(headers)
        offset = headers[-1].next_offset
    return out


def read_records(log: PartitionLog, start: int | None = None) -> list[Record]:
    offset = log.log_start_offset if start is None else start
    out: list[Record] = []
    while offset < log.high_watermark:
        result = log.read(offset, 1 << 20, max_offset=log.high_watermark, min_one_message=True)
        assert result.error == 0 and result.size > 0, result
        records = list(iter_records(result.read_bytes()))
        out.extend(r for r in records if r.offset >= offset)
        offset = records[-1].offset + 1
    return out
