"""OffsetIndex and TimeIndex: file format, lookups, truncation, sanity checks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from metamorphostreams.storage import CorruptIndexError, InvalidOffsetError, OffsetIndex, TimeIndex


def test_offset_index_file_format(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000100.index"
    index = OffsetIndex(path, 100, 1024)
    index.append(105, 0)
    index.append(110, 4200)
    index.close()
    assert path.read_bytes() == struct.pack(">ii", 5, 0) + struct.pack(">ii", 10, 4200)
    reopened = OffsetIndex(path, 100, 1024)
    assert reopened.entries == 2
    assert reopened.entry(1) == (110, 4200)


def test_offset_index_lookup(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "x.index", 100, 1024)
    for i, (offset, pos) in enumerate([(104, 10), (109, 20), (130, 35)]):
        index.append(offset, pos)
        assert index.entries == i + 1
    assert index.lookup(99) == (100, 0)
    assert index.lookup(103) == (100, 0)
    assert index.lookup(104) == (104, 10)
    assert index.lookup(120) == (109, 20)
    assert index.lookup(10**12) == (130, 35)
    assert index.floor_by_position(19) == (104, 10)
    assert index.floor_by_position(20) == (109, 20)
    assert index.floor_by_position(5) == (100, 0)


def test_offset_index_rejects_disorder_overflow_and_full(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "x.index", 0, 16)  # room for two entries
    index.append(5, 0)
    with pytest.raises(InvalidOffsetError):
        index.append(5, 10)
    with pytest.raises(InvalidOffsetError):
        OffsetIndex(tmp_path / "y.index", 0, 16).append(2**31, 0)
    index.append(6, 10)
    assert index.is_full
    with pytest.raises(InvalidOffsetError):
        index.append(7, 20)


def test_offset_index_truncate(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    index = OffsetIndex(path, 0, 1024)
    for offset in (10, 20, 30):
        index.append(offset, offset * 10)
    index.truncate_to(20)
    assert index.entries == 1 and index.last_offset == 10
    assert path.stat().st_size == 8
    index.truncate_to(0)
    assert index.entries == 0 and index.last_offset == 0
    index.append(3, 0)
    assert OffsetIndex(path, 0, 1024).entry(0) == (3, 0)


def test_offset_index_sanity_check(tmp_path: Path) -> None:
    path = tmp_path / "x.index"
    path.write_bytes(struct.pack(">ii", 1, 0) + b"\x00\x01")
    with pytest.raises(CorruptIndexError, match="multiple"):
        OffsetIndex(path, 0, 1024).sanity_check(1000)
    # a preallocated file that was never trimmed ends in zero entries
    path.write_bytes(struct.pack(">ii", 1, 0) + struct.pack(">ii", 7, 500) + bytes(16))
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0, 1024).sanity_check(1000)
    path.write_bytes(struct.pack(">ii", 7, 5000))
    with pytest.raises(CorruptIndexError, match="beyond the log"):
        OffsetIndex(path, 0, 1024).sanity_check(1000)
    path.write_bytes(struct.pack(">ii", -3, 0))
    with pytest.raises(CorruptIndexError, match="below base"):
        OffsetIndex(path, 0, 1024).sanity_check(1000)
    path.write_bytes(struct.pack(">ii", 1, 0) + struct.pack(">ii", 7, 500))
    OffsetIndex(path, 0, 1024).sanity_check(1000)


def test_time_index_file_format_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000050.timeindex"
    index = TimeIndex(path, 50, 1200)
    assert index.last_entry == (-1, 50)
    index.maybe_append(1000, 55)
    index.maybe_append(1000, 56)  # same timestamp: ignored
    index.maybe_append(900, 57)  # smaller timestamp: ignored
    index.maybe_append(2000, 60)
    index.close()
    assert path.read_bytes() == struct.pack(">qi", 1000, 5) + struct.pack(">qi", 2000, 10)
    index = TimeIndex(path, 50, 1200)
    assert index.lookup(999) == (-1, 50)
    assert index.lookup(1000) == (1000, 55)
    assert index.lookup(1999) == (1000, 55)
    assert index.lookup(5000) == (2000, 60)
    with pytest.raises(InvalidOffsetError):
        index.maybe_append(3000, 59)
    index.truncate_to(60)
    assert index.last_entry == (1000, 55)


def test_time_index_sanity_check(tmp_path: Path) -> None:
    path = tmp_path / "x.timeindex"
    path.write_bytes(struct.pack(">qi", 1000, 1) + struct.pack(">qi", 0, 0))
    with pytest.raises(CorruptIndexError, match="below the first"):
        TimeIndex(path, 0, 1200).sanity_check()
    path.write_bytes(struct.pack(">qi", 1000, 1) + b"\x00")
    with pytest.raises(CorruptIndexError):
        TimeIndex(path, 0, 1200).sanity_check()
    path.write_bytes(struct.pack(">qi", 1000, 1) + struct.pack(">qi", 2000, 2))
    TimeIndex(path, 0, 1200).sanity_check()
