"""LogSegment: appends, index density, lookups, truncation, roll decisions."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.protocol.record_batch import (
    BatchHeader,
    iter_batch_headers,
    set_base_offset,
)
from metamorphostreams.storage import LogSegment

from .helpers import batch


def make_segment(
    tmp_path: Path, base: int = 100, *, interval: int = 200, index_bytes: int = 4096
) -> LogSegment:
    return LogSegment.create(
        tmp_path, base, index_interval_bytes=interval, max_index_size=index_bytes, now_ms=0
    )


def append(
    segment: LogSegment, base_offset: int, count: int, *, ts: int = 1000, size: int = 5
) -> BatchHeader:
    data = batch(count, value=b"v" * size, ts=ts)
    set_base_offset(data, 0, base_offset)
    headers = list(iter_batch_headers(data))
    segment.append(data, [(pos, h.size, h.last_offset, h.max_timestamp) for pos, h in headers])
    return headers[0][1]


def test_files_and_index_density(tmp_path: Path) -> None:
    size = len(batch(2, value=b"v" * 30))
    interval = 2 * size  # exactly two batches: Kafka indexes only once *more* was written
    segment = make_segment(tmp_path, interval=interval)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000000000000000100.index",
        "00000000000000000100.log",
        "00000000000000000100.timeindex",
    ]
    offset = 100
    for i in range(10):
        offset = append(segment, offset, 2, ts=1000 + i, size=30).next_offset
    # batches 3, 6, 9 are indexed, each as (its last offset, its position)
    index = segment.offset_index
    expected = [(100 + 2 * i + 1, i * size) for i in (3, 6, 9)]
    assert [index.entry(n) for n in range(index.entries)] == expected
    time_index = segment.time_index
    assert [time_index.entry(n) for n in range(time_index.entries)] == [
        (1003, 107),
        (1006, 113),
        (1009, 119),
    ]
    assert segment.read_next_offset() == 120
    assert segment.size == 10 * size


def test_translate_and_read(tmp_path: Path) -> None:
    segment = make_segment(tmp_path)
    offset = 100
    positions = {}
    pos = 0
    for _ in range(20):
        header = append(segment, offset, 3)
        positions[offset] = pos
        pos += header.size
        offset = header.next_offset
    for target in (100, 101, 102, 103, 130, 159):
        found = segment.translate_offset(target)
        assert found is not None
        base = 100 + (target - 100) // 3 * 3
        assert found[0] == positions[base] and found[1].base_offset == base
    assert segment.translate_offset(160) is None
    assert segment.read(160, 1000) is None
    start, size = segment.read(103, 10_000) or (0, 0)
    assert (start, size) == (positions[103], segment.size - positions[103])


def test_truncate_to(tmp_path: Path) -> None:
    segment = make_segment(tmp_path, interval=0)
    offset = 100
    for i in range(10):
        offset = append(segment, offset, 2, ts=1000 + i).next_offset
    removed = segment.truncate_to(107)  # inside the batch 106-107: it goes entirely
    assert removed > 0
    assert segment.read_next_offset() == 106
    assert segment.offset_index.last_offset < 106
    assert segment.time_index.last_entry[1] < 106
    assert segment.max_timestamp_and_offset == (1002, 105)
    assert segment.truncate_to(500) == 0


def test_should_roll(tmp_path: Path) -> None:
    segment = make_segment(tmp_path, interval=0, index_bytes=16)  # two offset-index entries
    args = dict(
        max_segment_bytes=10_000,
        max_segment_ms=1000,
        messages_size=10,
        max_timestamp_in_messages=1000,
        max_offset_in_messages=101,
        now_ms=0,
    )
    assert not segment.should_roll(**args)  # type: ignore[arg-type]
    append(segment, 100, 1, ts=1000)
    assert not segment.should_roll(**args)  # type: ignore[arg-type]
    assert segment.should_roll(**{**args, "max_timestamp_in_messages": 2001})  # type: ignore[arg-type]
    assert segment.should_roll(**{**args, "messages_size": 10_000})  # type: ignore[arg-type]
    assert segment.should_roll(**{**args, "max_offset_in_messages": 100 + 2**31})  # type: ignore[arg-type]
    append(segment, 101, 1)
    append(segment, 102, 1)
    assert segment.offset_index.is_full
    assert segment.should_roll(**args)  # type: ignore[arg-type]


def test_close_records_max_timestamp_and_reopen(tmp_path: Path) -> None:
    segment = make_segment(tmp_path, interval=10_000)
    append(segment, 100, 1, ts=5000)
    append(segment, 101, 1, ts=7000)
    append(segment, 102, 1, ts=6000)
    assert segment.time_index.entries == 0  # nothing indexed yet at this interval
    segment.close()
    reopened = LogSegment(
        tmp_path, 100, index_interval_bytes=10_000, max_index_size=4096, created_ms=0
    )
    assert reopened.time_index.last_entry == (7000, 101)
    assert reopened.largest_timestamp == 7000
    reopened.sanity_check()
