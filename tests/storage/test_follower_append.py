"""PartitionLog.append_as_follower and follower truncation: a follower fed the bytes a
leader's ``read`` returns ends up with the leader's files, epochs, producer state and
transactions; bad input appends nothing."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import (
    CRC_OFFSET,
    MAGIC_OFFSET,
    BatchHeader,
    iter_batch_headers,
)
from metamorphostreams.protocol.records import build_batch
from metamorphostreams.storage import LogConfig, PartitionLog

from .helpers import SMALL, batch, open_log, read_headers

_SEGMENT_FILES = (".log", ".index", ".timeindex", ".txnindex")


def txn(pid: int, seq: int, *, ts: int, epoch: int = 0, count: int = 1) -> bytearray:
    records = [(b"k", b"t" * 300, (), ts)] * count
    return bytearray(
        build_batch(
            records,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            is_transactional=True,
        )
    )


def produce(log: PartitionLog, records: bytearray, *, epoch: int, ts: int) -> tuple[int, int]:
    result = log.append_as_leader(records, leader_epoch=epoch, now_ms=ts)
    assert result.error == ErrorCode.NONE, result
    return result.base_offset, result.last_offset


def end_txn(log: PartitionLog, pid: int, *, commit: bool, epoch: int, ts: int) -> int:
    result = log.append_control_marker(
        pid, 0, commit=commit, coordinator_epoch=4, leader_epoch=epoch, now_ms=ts
    )
    assert result.error == ErrorCode.NONE, result
    return result.base_offset


def fetch(leader: PartitionLog, offset: int, *, until: int | None = None) -> bytes:
    """What a replica Fetch at ``offset`` returns: whole batches of one segment."""
    end = leader.log_end_offset if until is None else until
    result = leader.read(offset, 1 << 20, max_offset=end, min_one_message=True)
    assert result.error == ErrorCode.NONE, result
    return result.read_bytes()


def replicate(leader: PartitionLog, follower: PartitionLog, *, until: int | None = None) -> int:
    """Fetch and append until the follower reaches ``until`` (default: the leader's end);
    returns how many appends it took."""
    end = leader.log_end_offset if until is None else until
    appends = 0
    while follower.log_end_offset < end:
        data = fetch(leader, follower.log_end_offset, until=end)
        result = follower.append_as_follower(data, now_ms=50_000)
        assert result.error == ErrorCode.NONE, result
        assert result.last_offset == follower.log_end_offset - 1
        appends += 1
    return appends


def files(log: PartitionLog) -> dict[str, bytes]:
    """Segment files and the leader-epoch checkpoint, by name (pending deletions left out)."""
    names = sorted(os.listdir(log.dir))
    wanted = [n for n in names if n.endswith(_SEGMENT_FILES) or n == "leader-epoch-checkpoint"]
    return {name: (log.dir / name).read_bytes() for name in wanted}


def producer_view(log: PartitionLog) -> tuple[object, ...]:
    state = log.producer_state
    producers = {
        pid: (e.producer_epoch, list(e.batches), e.coordinator_epoch, e.current_txn_first_offset)
        for pid, e in state.producers.items()
    }
    return producers, dict(state.ongoing_txns)


def build_leader(path: Path, config: LogConfig = SMALL) -> PartitionLog:
    """Four segments or so: plain and idempotent batches, an aborted and a committed
    transaction, an epoch change, and a transaction still open at the end."""
    leader = open_log(path, config)
    leader.become_leader(0)
    ts = 10_000
    for i in range(6):
        produce(leader, batch(2, value=b"p" * 300, ts=ts + i), epoch=0, ts=ts + i)
        produce(
            leader, batch(1, value=b"i" * 300, ts=ts + i, pid=1, epoch=0, seq=i), epoch=0, ts=ts
        )
    produce(leader, txn(7, 0, ts=ts + 10, count=2), epoch=0, ts=ts + 10)
    produce(leader, batch(1, value=b"x" * 300, ts=ts + 11), epoch=0, ts=ts + 11)
    produce(leader, txn(7, 2, ts=ts + 12), epoch=0, ts=ts + 12)
    end_txn(leader, 7, commit=False, epoch=0, ts=ts + 13)
    leader.become_leader(3)
    produce(leader, txn(8, 0, ts=ts + 20), epoch=3, ts=ts + 20)
    for i in range(6, 12):
        produce(
            leader,
            batch(1, value=b"i" * 300, ts=ts + 21 + i, pid=1, epoch=0, seq=i),
            epoch=3,
            ts=ts,
        )
    end_txn(leader, 8, commit=True, epoch=3, ts=ts + 40)
    for i in range(8):
        produce(leader, batch(3, value=b"q" * 200, ts=ts + 50 + i), epoch=3, ts=ts + 50 + i)
    produce(leader, txn(9, 0, ts=ts + 60), epoch=3, ts=ts + 60)
    produce(leader, batch(1, value=b"y" * 300, ts=ts + 61), epoch=3, ts=ts + 61)
    return leader


@pytest.fixture
def leader(tmp_path: Path) -> PartitionLog:
    log = build_leader(tmp_path / "leader" / "topic-0")
    assert len(log.segments) >= 4
    assert any(n.endswith(".txnindex") and d for n, d in files(log).items())
    return log


def follower_of(tmp_path: Path, name: str = "follower", config: LogConfig = SMALL) -> PartitionLog:
    return open_log(tmp_path / name / "topic-0", config)


# -- mirroring the leader -------------------------------------------------------------


def test_follower_files_are_the_leaders(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    assert replicate(leader, follower) >= len(leader.segments)
    assert files(follower) == files(leader)
    assert [s.base_offset for s in follower.segments] == [s.base_offset for s in leader.segments]
    assert follower.leader_epochs.entries() == leader.leader_epochs.entries() == [(0, 0), (3, 23)]
    assert (follower.log_start_offset, follower.log_end_offset) == (0, leader.log_end_offset)
    assert follower.recovery_point <= follower.log_end_offset


def test_follower_producer_state_and_transactions(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    assert producer_view(follower) == producer_view(leader)
    assert list(follower.producer_state.ongoing_txns.values()) == [9]
    hw = leader.high_watermark
    assert follower.high_watermark == 0  # the leader's high watermark is not ours
    assert follower.last_stable_offset == 0
    # completed transactions count as unstable until their marker is below the HW
    assert follower.producer_state.first_unstable_offset == 18
    assert follower.update_high_watermark(30) == 30
    assert follower.last_stable_offset == 23  # producer 8's marker (30) is not below it
    assert follower.update_high_watermark(hw) == hw
    assert follower.producer_state.first_unstable_offset == 55
    assert follower.last_stable_offset == leader.last_stable_offset < hw
    assert follower.collect_aborted_transactions(0, hw) == leader.collect_aborted_transactions(
        0, hw
    )
    assert follower.collect_aborted_transactions(0, hw) == [(7, 18)]
    for offset in range(0, hw, 5):
        assert follower.end_offset_for_epoch(0) == leader.end_offset_for_epoch(0)
        assert follower.read(offset, 10_000, max_offset=hw, min_one_message=True).read_bytes() == (
            leader.read(offset, 10_000, max_offset=hw, min_one_message=True).read_bytes()
        )


def test_promoted_follower_detects_retries(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    follower.become_leader(5)
    end = follower.log_end_offset
    retry = batch(1, value=b"i" * 300, ts=10_000 + 21 + 11, pid=1, epoch=0, seq=11)
    result = follower.append_as_leader(retry, leader_epoch=5, now_ms=60_000)
    original = leader.producer_state.producers[1].batches[-1]
    assert (result.error, result.base_offset, result.last_offset) == (
        ErrorCode.NONE,
        original.first_offset,
        original.last_offset,
    )
    assert follower.log_end_offset == end
    gap = batch(1, pid=1, epoch=0, seq=13)
    result = follower.append_as_leader(gap, leader_epoch=5, now_ms=60_000)
    assert result.error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(follower, batch(1, pid=1, epoch=0, seq=12), epoch=5, ts=60_000) == (end, end)
    # the open transaction of producer 9 is known: a marker ends it
    assert follower.last_stable_offset < end
    end_txn(follower, 9, commit=False, epoch=5, ts=60_001)
    follower.update_high_watermark(follower.log_end_offset)
    assert follower.last_stable_offset == follower.log_end_offset


def test_follower_survives_a_restart(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    follower.close()
    reopened = follower_of(tmp_path)
    assert files(reopened) == files(leader)
    assert producer_view(reopened) == producer_view(leader)


# -- what is appended -----------------------------------------------------------------


def test_partial_trailing_batch_is_left_out(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    data = fetch(leader, 0)
    sizes = [h.size for _, h in iter_batch_headers(data)]
    cut = data[: len(data) - 10]
    result = follower.append_as_follower(cut, now_ms=1)
    headers = [h for _, h in iter_batch_headers(cut)]
    assert result.error == ErrorCode.NONE
    assert (result.base_offset, result.last_offset) == (0, headers[-1].last_offset)
    assert follower.segments[0].size == sum(sizes[:-1])
    for tail in (b"", data[len(data) - sizes[-1] :][:11], data[len(data) - sizes[-1] :][:40]):
        result = follower.append_as_follower(tail, now_ms=1)
        assert (result.error, result.base_offset, result.last_offset) == (ErrorCode.NONE, -1, -1)
    assert follower.log_end_offset == headers[-1].next_offset
    replicate(leader, follower)
    assert files(follower) == files(leader)


def test_overlap_and_gap_are_refused(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower, until=12)
    before = files(follower)
    again = fetch(leader, 6, until=15)  # the leader resends what we have
    result = follower.append_as_follower(again, now_ms=1)
    assert result.error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert result.error_message and "6 is less than the next offset 12" in result.error_message
    beyond = fetch(leader, 15, until=20)
    result = follower.append_as_follower(beyond, now_ms=1)
    assert result.error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert result.error_message and "15 is beyond the next offset 12" in result.error_message
    assert files(follower) == before and follower.log_end_offset == 12
    replicate(leader, follower)
    assert files(follower) == files(leader)


def test_compacted_log_takes_a_gap(tmp_path: Path) -> None:
    config = SMALL.replace(cleanup_policy="compact")
    follower = follower_of(tmp_path, config=config)
    records = bytearray(build_batch([(b"k", b"v", (), 5)], base_offset=0))
    assert follower.append_as_follower(records, now_ms=1).error == ErrorCode.NONE
    later = bytearray(build_batch([(b"k", b"w", (), 6)], base_offset=4))
    result = follower.append_as_follower(later, now_ms=1)
    assert (result.error, result.base_offset, follower.log_end_offset) == (ErrorCode.NONE, 4, 5)
    assert [h.base_offset for h in read_headers_all(follower)] == [0, 4]


def read_headers_all(log: PartitionLog) -> list[BatchHeader]:
    log.update_high_watermark(log.log_end_offset)
    return read_headers(log)


@pytest.mark.parametrize("damage", ["crc", "magic", "length", "order"])
def test_corrupt_records_append_nothing(tmp_path: Path, leader: PartitionLog, damage: str) -> None:
    follower = follower_of(tmp_path)
    data = bytearray(fetch(leader, 0))
    second = next(pos for pos, _ in iter_batch_headers(data) if pos > 0)
    if damage == "crc":
        data[-1] ^= 0xFF
    elif damage == "magic":
        data[second + MAGIC_OFFSET] = 1
    elif damage == "length":
        struct.pack_into(">i", data, second + 8, 3)
    else:
        data = data + data[second:]  # offsets go backwards
    result = follower.append_as_follower(data, now_ms=1)
    assert result.error == ErrorCode.CORRUPT_MESSAGE, result
    assert (result.base_offset, follower.log_end_offset, follower.segments[0].size) == (-1, 0, 0)
    assert follower.leader_epochs.entries() == [] and not follower.producer_state.producers


def test_crc_is_checked_on_every_batch(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    data = bytearray(fetch(leader, 0))
    data[CRC_OFFSET] ^= 0x01
    assert follower.append_as_follower(data, now_ms=1).error == ErrorCode.CORRUPT_MESSAGE
    assert follower.log_end_offset == 0


def test_empty_log_starts_where_the_leader_starts(tmp_path: Path, leader: PartitionLog) -> None:
    start = leader.segments[1].base_offset
    assert leader.delete_records_before(start) == ErrorCode.NONE
    follower = follower_of(tmp_path)
    follower.become_leader(1)  # an epoch entry of its own, dropped with the restart
    result = follower.append_as_follower(fetch(leader, start), now_ms=1)
    assert (result.error, result.base_offset) == (ErrorCode.NONE, start)
    replicate(leader, follower)
    assert (follower.log_start_offset, follower.log_end_offset) == (start, leader.log_end_offset)
    assert [s.base_offset for s in follower.segments] == [s.base_offset for s in leader.segments]
    assert files(follower) == files(leader)


def test_empty_log_takes_the_batch_holding_its_start(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader" / "topic-0")
    produce(leader, batch(5), epoch=2, ts=1)
    produce(leader, batch(5), epoch=2, ts=1)
    assert leader.delete_records_before(7) == ErrorCode.NONE  # inside the second batch
    follower = follower_of(tmp_path)
    follower.truncate_fully_and_start_at(7)  # what a fetcher does after OFFSET_OUT_OF_RANGE
    data = fetch(leader, 7)
    result = follower.append_as_follower(data, now_ms=1)
    assert (result.error, result.base_offset, result.last_offset) == (ErrorCode.NONE, 5, 9)
    assert (follower.log_start_offset, follower.log_end_offset) == (5, 10)
    # not on a log with data: the first batch then has to start at the end
    assert follower.append_as_follower(data, now_ms=1).error == ErrorCode.OFFSET_OUT_OF_RANGE


def test_high_watermark_is_the_leaders_business(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    assert follower.hw_follows_leo  # even so: a follower append leaves it alone
    replicate(leader, follower, until=20)
    assert follower.high_watermark == 0
    assert follower.update_high_watermark(leader.high_watermark) == 20  # capped at our end
    replicate(leader, follower)
    assert follower.high_watermark == 20


def test_leader_with_a_lagging_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    log.hw_follows_leo = False
    produce(log, batch(2), epoch=0, ts=1)
    produce(log, txn(7, 0, ts=2), epoch=0, ts=2)  # 2
    end_txn(log, 7, commit=True, epoch=0, ts=3)  # 3
    assert (log.high_watermark, log.last_stable_offset, log.log_end_offset) == (0, 0, 4)
    log.update_high_watermark(3)
    assert log.last_stable_offset == 2  # the marker is not below the high watermark yet
    log.update_high_watermark(4)
    assert log.last_stable_offset == 4


def test_follower_rolls_at_segment_bytes(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    config = follower.config
    assert len(follower.segments) == len(leader.segments)
    assert all(s.size <= config.segment_bytes for s in follower.segments)
    tight = follower_of(tmp_path, "tight", SMALL.replace(segment_bytes=1_000))
    result = tight.append_as_follower(fetch(leader, 0), now_ms=1)
    assert result.error == ErrorCode.RECORD_LIST_TOO_LARGE
    assert tight.log_end_offset == 0


@pytest.mark.parametrize("failing", [".log", ".txnindex"])
def test_failed_write_undoes_the_append(
    tmp_path: Path, leader: PartitionLog, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    follower = follower_of(tmp_path, config=SMALL.replace(segment_bytes=1 << 20))
    marker = next(
        h.base_offset for h in read_headers(leader) if h.is_control and h.producer_id == 7
    )
    replicate(leader, follower, until=marker)

    def state() -> tuple[object, ...]:
        # a failed first entry may leave an empty .txnindex behind, as on the leader path
        written = {n: d for n, d in files(follower).items() if d or not n.endswith(".txnindex")}
        unstable = follower.producer_state.first_unstable_offset
        return (
            written,
            producer_view(follower),
            unstable,
            follower.log_end_offset,
            follower.latest_epoch,
        )

    before = state()
    real = os.pwrite

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(failing):
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_disk)
    data = fetch(leader, marker, until=marker + 3)
    result = follower.append_as_follower(data, now_ms=1)
    assert result.error == ErrorCode.KAFKA_STORAGE_ERROR
    assert state() == before
    monkeypatch.setattr(os, "pwrite", real)
    assert follower.append_as_follower(data, now_ms=1).error == ErrorCode.NONE
    follower.update_high_watermark(follower.log_end_offset)
    assert follower.collect_aborted_transactions(0, follower.log_end_offset) == [(7, 18)]


# -- truncation -----------------------------------------------------------------------


def test_truncation_then_a_new_leaders_batches(tmp_path: Path, leader: PartitionLog) -> None:
    """The follower copied everything of the old leader; the new leader had only up to
    ``cut`` (inside an open transaction, in an earlier segment) and wrote on from there."""
    marker = next(h for h in read_headers(leader) if h.is_control and h.producer_id == 7)
    cut = marker.base_offset + 2  # past the ABORT and the start of producer 8's txn
    assert cut < leader.segments[-2].base_offset
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    new_leader = follower_of(tmp_path, "new-leader")
    replicate(leader, new_leader, until=cut)

    assert follower.truncate_to(cut)
    assert follower.log_end_offset == cut and follower.high_watermark <= cut
    assert files(follower) == files(new_leader)
    assert producer_view(follower) == producer_view(new_leader)
    assert follower.leader_epochs.entries() == [(0, 0), (3, 23)]
    assert list(follower.producer_state.ongoing_txns.items()) == [(23, 8)]
    follower.update_high_watermark(cut)
    assert follower.collect_aborted_transactions(0, cut) == [(7, 18)]

    new_leader.become_leader(6)
    for i in range(6, 30):
        seq = 6 + 2 * (i - 6)
        produce(new_leader, batch(2, value=b"n" * 300, pid=1, epoch=0, seq=seq), epoch=6, ts=i)
    end_txn(new_leader, 8, commit=False, epoch=6, ts=99)
    replicate(new_leader, follower)
    assert files(follower) == files(new_leader)
    assert follower.leader_epochs.entries() == [(0, 0), (3, 23), (6, cut)]
    assert producer_view(follower) == producer_view(new_leader)
    follower.update_high_watermark(follower.log_end_offset)
    assert follower.collect_aborted_transactions(0, follower.log_end_offset) == [(7, 18), (8, 23)]


def test_truncated_batch_is_no_duplicate(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    last = follower.producer_state.producers[1].batches[-1]  # seq 11
    assert follower.truncate_to(last.first_offset)
    assert follower.producer_state.producers[1].last_seq == 10
    follower.become_leader(5)
    retry = batch(1, value=b"i" * 300, ts=10_032, pid=1, epoch=0, seq=11)
    end = follower.log_end_offset
    assert produce(follower, retry, epoch=5, ts=70_000) == (end, end)  # written anew


def test_truncation_removes_the_abort_entry(tmp_path: Path, leader: PartitionLog) -> None:
    follower = follower_of(tmp_path)
    replicate(leader, follower)
    marker = next(h for h in read_headers(leader) if h.is_control and h.producer_id == 7)
    assert follower.truncate_to(marker.base_offset)
    assert follower.leader_epochs.entries() == [(0, 0)]  # epoch 3 started at 23
    txn_files = {n: d for n, d in files(follower).items() if n.endswith(".txnindex")}
    assert all(d == b"" for d in txn_files.values())
    assert list(follower.producer_state.ongoing_txns.items()) == [(18, 7)]
    follower.update_high_watermark(marker.base_offset)
    assert follower.last_stable_offset == 18
    replicate(leader, follower)
    assert files(follower) == files(leader)


def test_truncation_past_the_end_still_trims_epochs(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    produce(log, batch(2), epoch=1, ts=1)
    log.become_leader(4)  # elected, then replaced before writing anything
    assert log.leader_epochs.entries() == [(1, 0), (4, 2)]
    assert not log.truncate_to(2)
    assert log.leader_epochs.entries() == [(1, 0)]
