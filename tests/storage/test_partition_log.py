"""PartitionLog: the leader append path, reads, offsets lookups, roll, retention."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import (
    BatchHeader,
    CompressionType,
    TimestampType,
    iter_batch_headers,
)
from metamorphostreams.protocol.records import build_batch
from metamorphostreams.storage import LogConfig, PartitionLog

from .helpers import SMALL, batch, open_log, read_headers, read_records


def test_append_assigns_offsets_and_stamps_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    records = batch(3) + batch(2)  # two batches in one request: one write
    result = log.append_as_leader(records, leader_epoch=7, now_ms=5_000)
    assert result.error == ErrorCode.NONE
    assert (result.base_offset, result.last_offset) == (0, 4)
    assert result.log_append_time == -1 and result.log_start_offset == 0
    assert (log.log_end_offset, log.high_watermark, log.last_stable_offset) == (5, 5, 5)
    headers = read_headers(log)
    assert [(h.base_offset, h.last_offset) for h in headers] == [(0, 2), (3, 4)]
    assert {h.partition_leader_epoch for h in headers} == {7}
    assert log.latest_epoch == 7
    result = log.append_as_leader(batch(1), leader_epoch=7, now_ms=5_001)
    assert (result.base_offset, result.last_offset) == (5, 5)
    assert [r.offset for r in read_records(log)] == list(range(6))


def test_stored_bytes_are_the_clients_except_offset_and_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    sent = batch(2, compression=CompressionType.GZIP)
    original = bytes(sent)
    log.append_as_leader(sent, leader_epoch=1, now_ms=1)
    log.append_as_leader(batch(1), leader_epoch=1, now_ms=1)
    # max_offset 2 is where the second batch starts: only the first comes back
    stored = log.read(0, 10_000, max_offset=2, min_one_message=True).read_bytes()
    assert log.read(0, 10_000, max_offset=1, min_one_message=True).size == 0
    assert len(stored) == len(original)
    assert stored[12:16] == struct.pack(">i", 1)
    assert stored[16:] == original[16:]
    assert stored[:8] == original[:8]  # offset 0 stays 0


def test_log_append_time(tmp_path: Path) -> None:
    config = SMALL.replace(message_timestamp_type="LogAppendTime")
    log = open_log(tmp_path / "topic-0", config)
    result = log.append_as_leader(batch(2, ts=5), leader_epoch=0, now_ms=123_456)
    assert result.log_append_time == 123_456
    (header,) = read_headers(log)
    assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert header.max_timestamp == 123_456
    assert [r.timestamp for r in read_records(log)] == [123_456, 123_456]


@pytest.mark.parametrize(
    ("records", "error"),
    [
        (bytearray(), ErrorCode.INVALID_RECORD),
        (batch(1)[:-3], ErrorCode.CORRUPT_MESSAGE),  # torn batch
        (batch(1) + b"\x00\x01\x02", ErrorCode.CORRUPT_MESSAGE),  # garbage tail
        (batch(1) + batch(1)[:30], ErrorCode.CORRUPT_MESSAGE),  # partial second batch
    ],
)
def test_malformed_requests_append_nothing(
    tmp_path: Path, records: bytearray, error: ErrorCode
) -> None:
    log = open_log(tmp_path / "topic-0")
    result = log.append_as_leader(records, leader_epoch=0, now_ms=1)
    assert result.error == error
    assert result.base_offset == -1
    assert log.log_end_offset == 0 and log.size_in_bytes == 0


def test_bad_crc_and_bad_magic(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    good = batch(1)
    corrupt = batch(2)
    corrupt[-1] ^= 0x55
    result = log.append_as_leader(good + corrupt, leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.CORRUPT_MESSAGE
    assert result.error_message
    legacy = batch(1)
    legacy[16] = 1  # magic 1 (message format v1)
    assert log.append_as_leader(legacy, leader_epoch=0, now_ms=1).error == (
        ErrorCode.INVALID_RECORD
    )
    assert log.log_end_offset == 0 and log.size_in_bytes == 0


def test_base_offset_must_be_zero(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    shifted = bytearray(build_batch([(b"k", b"v")], base_offset=10))
    result = log.append_as_leader(shifted, leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.INVALID_RECORD
    assert "should be 0" in (result.error_message or "")


def test_size_limits(tmp_path: Path) -> None:
    config = SMALL.replace(max_message_bytes=300)
    log = open_log(tmp_path / "topic-0", config)
    big = batch(1, value=b"x" * 400)
    result = log.append_as_leader(big, leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.MESSAGE_TOO_LARGE
    many = bytearray()
    while len(many) <= config.segment_bytes:
        many += batch(1, value=b"x" * 200)
    assert log.append_as_leader(many, leader_epoch=0, now_ms=1).error == (
        ErrorCode.RECORD_LIST_TOO_LARGE
    )
    assert log.log_end_offset == 0


def test_timestamp_bounds(tmp_path: Path) -> None:
    config = SMALL.replace(message_timestamp_before_max_ms=1000, message_timestamp_after_max_ms=10)
    log = open_log(tmp_path / "topic-0", config)
    now = 100_000
    assert log.append_as_leader(batch(1, ts=now - 1000), leader_epoch=0, now_ms=now).error == 0
    old = log.append_as_leader(batch(1, ts=now - 1001), leader_epoch=0, now_ms=now)
    assert old.error == ErrorCode.INVALID_TIMESTAMP and old.record_errors
    new = log.append_as_leader(batch(1, ts=now + 11), leader_epoch=0, now_ms=now)
    assert new.error == ErrorCode.INVALID_TIMESTAMP
    assert log.log_end_offset == 1


def test_read_limits_and_min_one_message(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20))
    sizes = []
    for i in range(20):
        records = batch(2, value=bytes([i]) * (50 + i * 10))
        sizes.append(len(records))
        log.append_as_leader(records, leader_epoch=0, now_ms=1)
    hw = log.high_watermark
    # whole batches only, as many as fit
    result = log.read(0, sizes[0] + sizes[1] + 5, max_offset=hw, min_one_message=False)
    assert result.size == sizes[0] + sizes[1]
    assert len(result.regions) == 1
    # fetching from the middle of a batch returns that whole batch
    result = log.read(3, sizes[1], max_offset=hw, min_one_message=False)
    headers = [h for _, h in iter_batch_headers(result.read_bytes())]
    assert [(h.base_offset, h.last_offset) for h in headers] == [(2, 3)]
    # a first batch larger than max_bytes comes only with min_one_message
    assert log.read(10, 10, max_offset=hw, min_one_message=False).size == 0
    assert log.read(10, 10, max_offset=hw, min_one_message=True).size == sizes[5]
    # max_offset (the high watermark) cuts before the batch that holds it
    result = log.read(0, 1 << 20, max_offset=9, min_one_message=True)
    headers = [h for _, h in iter_batch_headers(result.read_bytes())]
    assert headers[-1].last_offset == 7
    # at the end, and out of range
    assert log.read(hw, 100, max_offset=hw, min_one_message=True).size == 0
    assert log.read(hw, 100, max_offset=hw, min_one_message=True).error == 0
    out = log.read(hw + 1, 100, max_offset=hw, min_one_message=True)
    assert out.error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert (out.log_start_offset, out.log_end_offset, out.high_watermark) == (0, hw, hw)


def test_roll_by_size(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")  # segment.bytes 4096
    for _ in range(40):
        assert log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1).error == 0
    assert len(log.segments) > 3
    for segment in log.segments:
        assert segment.size <= 4096
    names = sorted(os.listdir(log.dir))
    for segment in log.segments:
        stem = f"{segment.base_offset:020d}"
        assert f"{stem}.log" in names and f"{stem}.index" in names and f"{stem}.timeindex" in names
    assert [h.base_offset for h in read_headers(log)] == list(range(40))
    # a producer-state snapshot is taken at each roll
    assert f"{log.segments[-1].base_offset:020d}.snapshot" in names


def test_roll_by_time(tmp_path: Path) -> None:
    config = SMALL.replace(segment_ms=1000, segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config, now_ms=0)
    log.append_as_leader(batch(1, ts=10_000), leader_epoch=0, now_ms=10_000)
    log.append_as_leader(batch(1, ts=10_999), leader_epoch=0, now_ms=10_999)
    assert len(log.segments) == 1
    # the roll decision compares the new batch's max timestamp with the first batch's
    log.append_as_leader(batch(1, ts=11_001), leader_epoch=0, now_ms=11_001)
    assert [s.base_offset for s in log.segments] == [0, 2]
    # without timestamps the segment's creation time counts
    log2 = open_log(tmp_path / "topic-1", config, now_ms=0)
    log2.append_as_leader(batch(1, ts=-1), leader_epoch=0, now_ms=500)
    log2.append_as_leader(batch(1, ts=-1), leader_epoch=0, now_ms=1000)
    assert len(log2.segments) == 1
    log2.append_as_leader(batch(1, ts=-1), leader_epoch=0, now_ms=1001)
    assert len(log2.segments) == 2


def test_retention_by_time(tmp_path: Path) -> None:
    config = SMALL.replace(retention_ms=10_000, segment_ms=1000, segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config, now_ms=0)
    for t in (1_000, 2_500, 4_000, 5_500):  # each append rolls: one batch per segment
        log.append_as_leader(batch(1, ts=t), leader_epoch=0, now_ms=t)
    assert len(log.segments) == 4
    assert log.enforce_retention(11_000) == 0
    assert log.enforce_retention(12_501) == 2  # segments with max ts 1000 and 2500 expired
    assert log.log_start_offset == 2
    assert [h.base_offset for h in read_headers(log)] == [2, 3]
    # the active segment goes too once everything expired: a fresh one takes over
    assert log.enforce_retention(100_000) == 2
    assert log.log_start_offset == log.log_end_offset == 4
    assert len(log.segments) == 1 and log.segments[0].size == 0
    assert (
        log.append_as_leader(batch(1, ts=100_000), leader_epoch=0, now_ms=100_000).base_offset == 4
    )


def test_retention_by_size(tmp_path: Path) -> None:
    config = SMALL.replace(retention_bytes=3000)
    log = open_log(tmp_path / "topic-0", config)  # 4096-byte segments
    for _ in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1)
    before = log.size_in_bytes
    deleted = log.enforce_retention(2)
    assert deleted > 0
    assert log.size_in_bytes >= 3000 > log.size_in_bytes - log.segments[0].size
    assert log.size_in_bytes < before
    assert log.log_start_offset == log.segments[0].base_offset
    assert log.read(0, 100, max_offset=log.high_watermark, min_one_message=True).error == (
        ErrorCode.OFFSET_OUT_OF_RANGE
    )


def test_compacted_topics_keep_old_segments(tmp_path: Path) -> None:
    config = SMALL.replace(retention_ms=1, cleanup_policy=("compact",))
    log = open_log(tmp_path / "topic-0", config)
    for _ in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1)
    assert log.enforce_retention(10**9) == 0


def test_deleted_segment_stays_readable_until_the_delay(tmp_path: Path) -> None:
    config = SMALL.replace(retention_ms=1000, file_delete_delay_ms=60_000, segment_ms=10)
    log = open_log(tmp_path / "topic-0", config, now_ms=0)
    log.append_as_leader(batch(1, ts=0), leader_epoch=0, now_ms=0)
    log.append_as_leader(batch(1, ts=100), leader_epoch=0, now_ms=100)
    region = log.read(0, 1000, max_offset=1, min_one_message=True).regions[0]
    expected = region.read_bytes()
    assert log.enforce_retention(1001) == 1
    assert not (log.dir / f"{0:020d}.log").exists()
    assert (log.dir / f"{0:020d}.log.deleted").exists()
    assert region.read_bytes() == expected  # a response in flight still has its bytes
    log.enforce_retention(1001 + 59_999)
    assert (log.dir / f"{0:020d}.log.deleted").exists()
    log.enforce_retention(1001 + 60_000)
    assert not (log.dir / f"{0:020d}.log.deleted").exists()
    with pytest.raises(ValueError):
        region.read_bytes()


def test_delete_records(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    for _ in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1)
    second = log.segments[1].base_offset
    assert log.delete_records_before(31) == ErrorCode.OFFSET_OUT_OF_RANGE
    assert log.delete_records_before(second + 1) == ErrorCode.NONE
    assert log.log_start_offset == second + 1
    assert log.segments[0].base_offset == second  # the segment holding the new start stays
    result = log.read(second, 100, max_offset=log.high_watermark, min_one_message=True)
    assert result.error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert read_headers(log)[0].base_offset == second + 1
    assert log.delete_records_before(3) == ErrorCode.NONE  # below the start: nothing happens
    assert log.log_start_offset == second + 1
    assert log.delete_records_before(-1) == ErrorCode.NONE  # -1: up to the high watermark
    assert log.log_start_offset == 30 == log.log_end_offset
    assert log.earliest()[0] == 30


def test_offsets_by_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    # 3 records per batch, timestamps 1000+10*i+j, compressed batches decoded for precision
    for i in range(20):
        records = bytearray(
            build_batch(
                [(b"k", b"v" * 100, (), 1000 + 10 * i + j) for j in range(3)],
                compression=CompressionType.LZ4 if i % 2 else CompressionType.NONE,
            )
        )
        log.append_as_leader(records, leader_epoch=2 + i // 10, now_ms=1)
    assert len(log.segments) > 1
    assert log.fetch_offset_by_timestamp(0) == (0, 1000, 2)
    assert log.fetch_offset_by_timestamp(1001) == (1, 1001, 2)
    assert log.fetch_offset_by_timestamp(1003) == (3, 1010, 2)
    assert log.fetch_offset_by_timestamp(1152) == (47, 1152, 3)
    assert log.fetch_offset_by_timestamp(1193) is None
    assert log.max_timestamp_offset() == (59, 1192, 3)
    assert log.earliest() == (0, -1, 2)
    assert log.latest() == (60, -1, 3)
    log.delete_records_before(4)
    assert log.fetch_offset_by_timestamp(0) == (4, 1011, 2)


def test_max_timestamp_offset_out_of_order(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    assert log.max_timestamp_offset() is None
    log.append_as_leader(batch(3, ts=500, ts_step=100), leader_epoch=1, now_ms=1)  # 500..700
    log.append_as_leader(batch(1, ts=600), leader_epoch=1, now_ms=1)
    assert log.max_timestamp_offset() == (2, 700, 1)


def test_leader_epochs_through_the_log(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    assert log.latest_epoch == -1
    assert log.end_offset_for_epoch(0) == (-1, -1)
    log.append_as_leader(batch(2), leader_epoch=1, now_ms=1)
    log.append_as_leader(batch(3), leader_epoch=1, now_ms=1)
    log.append_as_leader(batch(1), leader_epoch=4, now_ms=1)
    assert log.leader_epochs.entries() == [(1, 0), (4, 5)]
    assert (log.dir / "leader-epoch-checkpoint").read_text() == "0\n2\n1 0\n4 5\n"
    assert log.end_offset_for_epoch(1) == (1, 5)
    assert log.end_offset_for_epoch(3) == (1, 5)
    assert log.end_offset_for_epoch(4) == (4, 6)
    assert log.end_offset_for_epoch(0) == (0, 0)


def test_truncate_to(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    for i in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=i // 10, now_ms=1)
    assert log.truncate_to(40) is False
    assert log.truncate_to(15) is True
    assert log.log_end_offset == 15 == log.high_watermark
    assert [h.base_offset for h in read_headers(log)] == list(range(15))
    assert log.leader_epochs.entries() == [(0, 0), (1, 10)]
    assert log.append_as_leader(batch(1), leader_epoch=5, now_ms=1).base_offset == 15
    log.truncate_to(0)
    assert log.log_end_offset == 0 and log.size_in_bytes == 0


def test_flush_messages_moves_the_recovery_point(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(flush_messages=3), fsync=True)
    log.append_as_leader(batch(2), leader_epoch=0, now_ms=1)
    assert log.recovery_point == 0
    log.append_as_leader(batch(1), leader_epoch=0, now_ms=1)
    assert log.recovery_point == 3


def test_flush_job_off_the_loop(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", fsync=True)  # file.delete.delay.ms 0
    for _ in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1)
    assert log.rolled_unflushed and log.recovery_point == 0
    job = log.begin_scheduled_flush(2)
    assert job is not None and job.offset == log.segments[-1].base_offset
    assert len(job.fds) == 3 * (len(log.segments) - 1)
    # segments vanish before the job runs: it owns its descriptors
    assert log.delete_records_before(log.segments[2].base_offset) == ErrorCode.NONE
    assert log.delete_expired_files(1_000) == 2  # file.delete.delay.ms is 0 here
    assert not (log.dir / f"{0:020d}.log.deleted").exists()
    worker = threading.Thread(target=job.run)
    worker.start()
    worker.join()
    assert job.done
    log.complete_flush(job)
    assert log.recovery_point == job.offset
    assert not log.rolled_unflushed
    assert log.begin_scheduled_flush(3) is None
    unrun = log.begin_flush()
    assert unrun is not None
    log.complete_flush(unrun)  # never ran: nothing is claimed durable
    assert log.recovery_point == job.offset


def test_flush_ms(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(flush_ms=1000), now_ms=0)
    log.append_as_leader(batch(2), leader_epoch=0, now_ms=1)
    assert not log.maybe_flush(999)
    assert log.recovery_point == 0
    assert log.maybe_flush(1000)
    assert log.recovery_point == 2


def test_high_watermark_setter_for_replication(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    log.hw_follows_leo = False
    log.append_as_leader(batch(5), leader_epoch=0, now_ms=1)
    assert log.high_watermark == 0
    assert log.read(0, 1000, max_offset=log.high_watermark, min_one_message=True).size == 0
    assert log.update_high_watermark(3) == 3
    assert log.update_high_watermark(99) == 5


def test_header_parse_roundtrip_sanity() -> None:
    # guard the helper: build_batch gives baseOffset 0 and the asked count
    header = BatchHeader.parse(batch(4))
    assert (header.base_offset, header.records_count, header.last_offset_delta) == (0, 4, 3)


def test_open_twice_without_closing_reads_same_data(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", LogConfig(file_delete_delay_ms=0))
    log.append_as_leader(batch(2), leader_epoch=0, now_ms=1)
    again = PartitionLog.open(
        tmp_path / "topic-0",
        "topic",
        0,
        LogConfig(),
        now_ms=2,
        recovery_point=0,
        log_start_offset=None,
        clean_shutdown=False,
        fsync=False,
    )
    assert again.log_end_offset == 2


def test_retention_never_passes_the_high_watermark(tmp_path: Path) -> None:
    config = SMALL.replace(retention_ms=10, segment_ms=1, segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config, now_ms=0)
    log.hw_follows_leo = False
    for t in (0, 10, 20, 30):  # one batch per segment
        log.append_as_leader(batch(1, ts=t), leader_epoch=0, now_ms=t)
    log.update_high_watermark(2)
    assert log.enforce_retention(10_000) == 2  # segments [0] and [1]; [2] holds the HW
    assert log.log_start_offset == 2 == log.segments[0].base_offset
    assert log.delete_records_before(3) == ErrorCode.OFFSET_OUT_OF_RANGE
    log.update_high_watermark(4)
    assert log.enforce_retention(10_000) == 2
    assert log.log_start_offset == 4


def test_write_failure_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path / "topic-0")
    log.append_as_leader(batch(1), leader_epoch=0, now_ms=1)
    size = log.size_in_bytes
    real_pwrite = os.pwrite

    def disk_full(fd: int, data: object, position: int) -> int:
        real_pwrite(fd, b"\x00\x00\x00", position)  # a torn write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("metamorphostreams.storage.segment.os.pwrite", disk_full)
    result = log.append_as_leader(batch(1), leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.KAFKA_STORAGE_ERROR
    monkeypatch.undo()
    assert log.log_end_offset == 1 and log.size_in_bytes == size
    assert (log.dir / f"{0:020d}.log").stat().st_size == size
    assert log.append_as_leader(batch(1), leader_epoch=0, now_ms=1).base_offset == 1
    assert [h.base_offset for h in read_headers(log)] == [0, 1]
