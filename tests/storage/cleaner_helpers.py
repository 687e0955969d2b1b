"""Builders and readers shared by the log cleaner tests."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    BatchHeader,
    CompressionType,
)
from metamorphostreams.protocol.records import Record, build_batch, iter_batches
from metamorphostreams.storage import CleanerConfig, LogCleaner, LogConfig, LogManager, PartitionLog

# Compacted, small segments, a dense index, no deletion delay, clean at any dirt.
COMPACT = LogConfig(
    segment_bytes=2048,
    index_interval_bytes=256,
    file_delete_delay_ms=0,
    cleanup_policy=("compact",),
    min_cleanable_dirty_ratio=0.0,
    delete_retention_ms=1_000,
)
CLEANER = CleanerConfig(dedupe_buffer_size=1 << 20)
T0 = 1_000_000


def open_manager(data: Path, config: LogConfig = COMPACT, now_ms: int = T0) -> LogManager:
    return LogManager.open(data, config, now_ms=now_ms, fsync=False)


def new_cleaner(manager: LogManager, config: CleanerConfig = CLEANER) -> LogCleaner:
    return LogCleaner(manager, config, clock=lambda: 0.0, sleep=lambda s: None)


def keyed(
    pairs: list[tuple[bytes | None, bytes | None]],
    *,
    ts: int = T0,
    compression: CompressionType = CompressionType.NONE,
    pid: int = NO_PRODUCER_ID,
    epoch: int = NO_PRODUCER_EPOCH,
    seq: int = NO_SEQUENCE,
    transactional: bool = False,
) -> bytearray:
    return bytearray(
        build_batch(
            [(k, v, (), ts) for k, v in pairs],
            compression=compression,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            is_transactional=transactional,
        )
    )


def put(
    log: PartitionLog,
    pairs: list[tuple[bytes | None, bytes | None]],
    now_ms: int = T0,
    **kw: object,
) -> int:
    result = log.append_as_leader(keyed(pairs, ts=now_ms, **kw), leader_epoch=0, now_ms=now_ms)  # type: ignore[arg-type]
    assert result.error == ErrorCode.NONE, result
    return result.base_offset


def all_batches(log: PartitionLog) -> list[tuple[BatchHeader, list[Record]]]:
    """Every batch of every segment, in order, straight from the files."""
    out: list[tuple[BatchHeader, list[Record]]] = []
    for segment in log.segments:
        data = segment.log_path.read_bytes()
        out.extend(iter_batches(data))
    return out


def data_records(log: PartitionLog) -> list[Record]:
    return [r for h, recs in all_batches(log) if not h.is_control for r in recs]


def latest_values(records: list[Record]) -> dict[bytes, bytes]:
    """Key -> latest value, tombstoned keys removed (what a consumer rebuilds)."""
    state: dict[bytes, bytes | None] = {}
    for r in records:
        assert r.key is not None
        state[r.key] = r.value
    return {k: v for k, v in state.items() if v is not None}
