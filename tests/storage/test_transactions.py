"""Transactions in the partition log: transactional appends, COMMIT/ABORT markers, the last
stable offset, ``.txnindex`` files, aborted-transaction lookups, and their survival through
snapshots, restarts, recovery, truncation and retention."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.records import (
    ControlRecordType,
    build_batch,
    build_end_txn_marker,
    iter_batches,
    parse_control_key,
    parse_end_txn_marker,
)
from metamorphostreams.storage import (
    AbortedTxn,
    AppendOrigin,
    LogConfig,
    PartitionLog,
    ProducerInfo,
    TransactionIndex,
)

from .helpers import SMALL, batch, read_headers
from .helpers import open_log as _open_log

BIG = SMALL.replace(segment_bytes=1 << 20)
TINY = SMALL.replace(segment_bytes=1_100)  # two or three transactional batches a segment


def open_log(path: Path, config: LogConfig = TINY, **kwargs: Any) -> PartitionLog:
    return _open_log(path, config, **kwargs)


def txn(
    pid: int, seq: int, count: int = 1, *, epoch: int = 0, transactional: bool = True
) -> bytearray:
    records = [(b"k", b"v" * 200, (), 1_000)] * count
    return bytearray(
        build_batch(
            records,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            is_transactional=transactional,
        )
    )


def append(log: PartitionLog, records: bytearray, **kwargs: object) -> int:
    result = log.append_as_leader(records, leader_epoch=0, now_ms=2_000, **kwargs)  # type: ignore[arg-type]
    assert result.error == ErrorCode.NONE, result
    return result.base_offset


def marker(
    log: PartitionLog, pid: int, *, commit: bool, epoch: int = 0, coordinator_epoch: int = 0
) -> int:
    result = log.append_control_marker(
        pid,
        epoch,
        commit=commit,
        coordinator_epoch=coordinator_epoch,
        leader_epoch=0,
        now_ms=3_000,
    )
    assert result.error == ErrorCode.NONE, result
    assert result.base_offset == result.last_offset
    return result.base_offset


def txn_files(log: PartitionLog) -> dict[str, bytes]:
    return {
        name: (log.dir / name).read_bytes()
        for name in sorted(os.listdir(log.dir))
        if name.endswith(".txnindex")
    }


def entries(data: bytes) -> list[tuple[int, ...]]:
    return [struct.unpack_from(">hqqqq", data, pos) for pos in range(0, len(data), 34)]


# -- appends and markers --------------------------------------------------------------


def test_transaction_bounds_the_last_stable_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, batch(2))
    first = append(log, txn(7, 0, 3))
    assert first == 2
    append(log, txn(7, 3, 2))
    assert log.high_watermark == 7
    assert log.last_stable_offset == 2
    assert log.read(0, 1 << 20, max_offset=7, min_one_message=False).last_stable_offset == 2
    assert log.producer_state.last_entry(7).current_txn_first_offset == 2  # type: ignore[union-attr]
    end = marker(log, 7, commit=True)
    assert end == 7
    assert log.last_stable_offset == log.high_watermark == 8
    assert txn_files(log) == {}  # a commit leaves no index entry
    assert log.collect_aborted_transactions(0, 8) == []


def test_marker_batch_is_kafkas_control_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0))
    offset = log.append_control_marker(
        7, 3, commit=False, coordinator_epoch=11, leader_epoch=4, now_ms=5_000
    ).base_offset
    raw = log.read(offset, 1 << 20, max_offset=log.high_watermark, min_one_message=True)
    ((header, records),) = list(iter_batches(raw.read_bytes()))
    assert header.is_control and header.is_transactional
    assert (header.base_offset, header.producer_id, header.producer_epoch) == (1, 7, 3)
    assert (header.partition_leader_epoch, header.base_sequence) == (4, -1)
    assert len(records) == 1 and records[0].timestamp == 5_000
    assert parse_control_key(records[0].key) is ControlRecordType.ABORT
    assert parse_end_txn_marker(records[0].value) == 11


def test_abort_writes_a_kafka_txnindex_entry(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0, 2))  # 0-1
    append(log, txn(8, 0, 1))  # 2, still open when 7 aborts
    end = marker(log, 7, commit=False)  # 3
    assert log.last_stable_offset == 2
    files = txn_files(log)
    assert list(files) == ["00000000000000000000.txnindex"]
    # version 0, producer 7, first 0, last = the marker, LSO = producer 8's first offset
    assert files["00000000000000000000.txnindex"] == struct.pack(">hqqqq", 0, 7, 0, end, 2)
    assert log.collect_aborted_transactions(0, 4) == [(7, 0)]
    assert log.collect_aborted_transactions(2, 4) == [(7, 0)]
    assert log.collect_aborted_transactions(4, 5) == []
    marker(log, 8, commit=False)  # 4; no other transaction: LSO just past the marker
    assert entries(txn_files(log)["00000000000000000000.txnindex"])[1] == (0, 8, 2, 4, 5)
    assert log.last_stable_offset == 5
    assert log.collect_aborted_transactions(0, 5) == [(7, 0), (8, 2)]


def test_marker_without_a_transaction_is_written_without_an_entry(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    assert marker(log, 7, commit=False, coordinator_epoch=2) == 0
    assert marker(log, 7, commit=True, coordinator_epoch=2) == 1
    assert txn_files(log) == {}
    assert log.last_stable_offset == 2
    assert [h.is_control for h in read_headers(log)] == [True, True]
    assert log.active_producers() == [ProducerInfo(7, 0, -1, 3_000, 2, -1)]


def test_non_transactional_write_during_a_transaction(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0))
    result = log.append_as_leader(txn(7, 1, transactional=False), leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.INVALID_TXN_STATE
    assert log.log_end_offset == 1
    marker(log, 7, commit=True)
    append(log, txn(7, 1, transactional=False))  # fine once the transaction is over
    # a second request starting a new transaction: the same producer, the next sequence
    assert append(log, txn(7, 2)) == 3
    assert log.last_stable_offset == 3


def test_one_request_may_start_a_transaction_and_continue_it(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    both = txn(7, 0, 2) + txn(7, 2, 1)
    assert append(log, both) == 0
    assert log.last_stable_offset == 0
    mixed = txn(8, 0, 1) + txn(8, 1, 1, transactional=False)
    result = log.append_as_leader(mixed, leader_epoch=0, now_ms=1)
    assert result.error == ErrorCode.INVALID_TXN_STATE
    assert log.log_end_offset == 3 and log.producer_state.last_entry(8) is None


def test_clients_may_not_write_control_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    raw = bytearray(
        build_end_txn_marker(
            commit=True, producer_id=7, producer_epoch=0, coordinator_epoch=0, timestamp=1
        )
    )
    for origin in AppendOrigin:
        result = log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=1, origin=origin)
        assert result.error == ErrorCode.INVALID_RECORD, origin
    assert log.log_end_offset == 0


def test_duplicate_transactional_batch_is_answered_not_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    raw = txn(7, 0, 2)
    append(log, bytearray(raw))
    again = log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=1)
    assert (again.error, again.base_offset, again.last_offset) == (ErrorCode.NONE, 0, 1)
    assert log.log_end_offset == 2 and list(log.producer_state.ongoing_txns) == [0]


def test_stale_marker_epochs(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0, epoch=3))
    stale = log.append_control_marker(
        7, 2, commit=True, coordinator_epoch=0, leader_epoch=0, now_ms=1
    )
    assert stale.error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.log_end_offset == 1 and log.last_stable_offset == 0
    # a newer epoch (the coordinator bumped it to abort a timed-out transaction) is fine
    marker(log, 7, commit=False, epoch=4, coordinator_epoch=1)
    assert log.active_producers()[0].producer_epoch == 4
    assert log.collect_aborted_transactions(0, 2) == [(7, 0)]
    fenced = log.append_control_marker(
        7, 4, commit=True, coordinator_epoch=0, leader_epoch=0, now_ms=1
    )
    assert fenced.error == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    # a data batch of the old epoch is fenced too
    old = log.append_as_leader(txn(7, 1, epoch=3), leader_epoch=0, now_ms=1)
    assert old.error == ErrorCode.INVALID_PRODUCER_EPOCH


def test_transaction_version_2_markers_need_a_bumped_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0, epoch=3))

    def write(epoch: int) -> ErrorCode:
        return log.append_control_marker(
            7, epoch, commit=True, coordinator_epoch=0, leader_epoch=0, now_ms=1,
            transaction_version=2,
        ).error  # fmt: skip

    assert write(3) == ErrorCode.INVALID_PRODUCER_EPOCH  # same epoch, transaction ongoing
    assert write(4) == ErrorCode.NONE
    assert write(4) == ErrorCode.NONE  # a retry of the marker just written
    assert write(3) == ErrorCode.INVALID_PRODUCER_EPOCH


def test_coordinator_origin_skips_sequences(tmp_path: Path) -> None:
    log = open_log(tmp_path / "__consumer_offsets-0", BIG)
    commit = txn(7, -1)
    assert (
        log.append_as_leader(bytearray(commit), leader_epoch=0, now_ms=1).error
        == ErrorCode.INVALID_RECORD
    )  # from a client, a producer id needs a sequence
    first = append(log, bytearray(commit), origin=AppendOrigin.COORDINATOR)
    second = append(log, bytearray(commit), origin=AppendOrigin.COORDINATOR)  # no dedup
    assert (first, second) == (0, 1)
    assert log.last_stable_offset == 0
    plain = txn(7, -1, transactional=False)
    result = log.append_as_leader(plain, leader_epoch=0, now_ms=1, origin=AppendOrigin.COORDINATOR)
    assert result.error == ErrorCode.INVALID_TXN_STATE
    marker(log, 7, commit=True, epoch=1)
    older = txn(7, -1, epoch=0)
    result = log.append_as_leader(older, leader_epoch=0, now_ms=1, origin=AppendOrigin.COORDINATOR)
    assert result.error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.last_stable_offset == log.log_end_offset == 3
    assert log.active_producers() == [ProducerInfo(7, 1, -1, 3_000, 0, -1)]


def test_last_stable_offset_is_capped_by_the_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    log.hw_follows_leo = False
    append(log, batch(3))
    append(log, txn(7, 0, 2))  # 3-4
    assert log.high_watermark == 0 and log.last_stable_offset == 0
    log.update_high_watermark(2)
    assert log.last_stable_offset == 2
    log.update_high_watermark(5)
    assert log.last_stable_offset == 3
    end = marker(log, 7, commit=True)  # 5: complete, but not below the high watermark yet
    assert log.last_stable_offset == 3
    log.update_high_watermark(end)
    assert log.last_stable_offset == 3
    log.update_high_watermark(end + 1)
    assert log.last_stable_offset == end + 1


def test_active_producers(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, batch(1, pid=5, epoch=1, seq=0, ts=1_500))
    append(log, txn(7, 0, 3, epoch=2))
    marker(log, 5, commit=True, epoch=1, coordinator_epoch=9)
    assert sorted(log.active_producers()) == [
        ProducerInfo(5, 1, 0, 3_000, 9, -1),
        ProducerInfo(7, 2, 2, 1_000, -1, 1),
    ]


# -- aborted transactions across segments ---------------------------------------------


def build_aborts(log: PartitionLog) -> list[AbortedTxn]:
    """Three producers with interleaved transactions over several small segments."""
    seqs = {1: 0, 2: 0, 3: 0}

    def data(pid: int) -> int:
        offset = append(log, txn(pid, seqs[pid], 2))
        seqs[pid] += 2
        return offset

    data(1)
    data(2)
    for _ in range(6):
        data(1)
    marker(log, 1, commit=False)
    data(3)
    for _ in range(6):
        data(2)
    marker(log, 2, commit=False)
    marker(log, 3, commit=True)
    data(1)
    for _ in range(4):
        data(3)
    marker(log, 1, commit=False)
    marker(log, 3, commit=False)
    out = []
    for segment in log.segments:
        out.extend(segment.txn_index.entries)
    return out


def expected(aborts: list[AbortedTxn], start: int, upper: int) -> list[tuple[int, int]]:
    return [
        (a.producer_id, a.first_offset)
        for a in aborts
        if a.last_offset >= start and a.first_offset < upper
    ]


def test_collect_aborted_transactions_across_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    aborts = build_aborts(log)
    assert len(log.segments) > 4
    assert [a.producer_id for a in aborts] == [1, 2, 1, 3]
    assert len(txn_files(log)) >= 2  # only segments holding an ABORT have a file
    end = log.log_end_offset
    for start in range(end + 1):
        for upper in range(start + 1, end + 2):
            got = log.collect_aborted_transactions(start, upper)
            assert got == expected(aborts, start, upper), (start, upper)


def test_txnindex_survives_a_clean_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    build_aborts(log)
    append(log, txn(2, 14, 1))  # ongoing at shutdown
    before = txn_files(log)
    lso = log.last_stable_offset
    log.close()
    log = open_log(tmp_path / "t-0")
    assert txn_files(log) == before
    assert log.last_stable_offset == lso < log.log_end_offset
    assert log.producer_state.last_entry(2).current_txn_first_offset == lso  # type: ignore[union-attr]
    marker(log, 2, commit=False)
    assert log.last_stable_offset == log.log_end_offset
    assert log.collect_aborted_transactions(lso, log.log_end_offset)[-1] == (2, lso)


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_txnindex_rebuilt_by_recovery(tmp_path: Path, damage: str) -> None:
    log = open_log(tmp_path / "t-0")
    build_aborts(log)
    append(log, txn(2, 14, 1))
    before = txn_files(log)
    lso = log.last_stable_offset
    log.close()
    for name in before:
        path = log.dir / name
        if damage == "delete":
            path.unlink()
        elif damage == "truncate":
            os.truncate(path, 40)  # one entry and a torn one
        else:
            path.write_bytes(b"\x00\x05" + bytes(32))  # unknown version
    log = open_log(tmp_path / "t-0", clean=False, recovery_point=0)
    assert txn_files(log) == before
    assert log.last_stable_offset == lso


def test_corrupt_txnindex_after_clean_shutdown_is_rebuilt(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    build_aborts(log)
    before = txn_files(log)
    log.close()
    name = sorted(before)[-1]
    (log.dir / name).write_bytes(before[name] + b"\x00" * 5)  # a torn entry
    log = open_log(tmp_path / "t-0")
    assert txn_files(log) == before


def test_recovery_from_a_later_segment_replays_from_an_older_snapshot(tmp_path: Path) -> None:
    """A transaction begun in an earlier segment and aborted in a recovered one: the
    rebuild needs the producer state at the recovered segment's base."""
    log = open_log(tmp_path / "t-0")
    append(log, txn(1, 0, 2))
    for i in range(1, 12):
        append(log, txn(2, 2 * (i - 1), 2, transactional=False))
    end = marker(log, 1, commit=False)
    holder = [s for s in log.segments if s.base_offset <= end][-1]
    assert holder.base_offset > 0
    before = txn_files(log)
    assert list(before) == [f"{holder.base_offset:020d}.txnindex"]
    log.close()
    for name in before:
        (log.dir / name).unlink()
    log = open_log(tmp_path / "t-0", clean=False, recovery_point=holder.base_offset)
    assert txn_files(log) == before
    assert log.collect_aborted_transactions(0, end + 1) == [(1, 0)]


def test_ongoing_transaction_survives_an_unclean_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, batch(3))
    append(log, txn(7, 0, 2))
    for i in range(10):
        append(log, txn(8, i, 1, transactional=False))
    log.close_handlers()  # no snapshot at the end: replay from the last roll
    log = open_log(tmp_path / "t-0", clean=False)
    assert log.last_stable_offset == 3
    marker(log, 7, commit=True)
    assert log.last_stable_offset == log.log_end_offset


# -- truncation, retention, renames ---------------------------------------------------


def test_truncation_removes_entries_and_reopens_transactions(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0, 2))  # 0-1
    append(log, txn(8, 0, 1))  # 2
    end7 = marker(log, 7, commit=False)  # 3
    end8 = marker(log, 8, commit=False)  # 4
    assert len(entries(txn_files(log)["00000000000000000000.txnindex"])) == 2
    assert log.truncate_to(end8)
    assert entries(txn_files(log)["00000000000000000000.txnindex"]) == [(0, 7, 0, 3, 2)]
    assert log.last_stable_offset == 2  # producer 8's transaction is open again
    assert log.collect_aborted_transactions(0, 5) == [(7, 0)]
    assert log.truncate_to(end7)
    assert txn_files(log) == {"00000000000000000000.txnindex": b""}
    assert log.last_stable_offset == 0
    assert list(log.producer_state.ongoing_txns.items()) == [(0, 7), (2, 8)]
    marker(log, 7, commit=True)
    assert log.last_stable_offset == 2
    log.truncate_fully_and_start_at(10)
    assert log.last_stable_offset == 10 and list(log.producer_state.ongoing_txns) == []
    assert log.collect_aborted_transactions(10, 11) == []


def test_truncation_drops_later_segments_with_their_txnindex(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    build_aborts(log)
    later = log.segments[-1].base_offset
    assert log.truncate_to(later - 1)
    log.delete_expired_files(10**12)
    names = sorted(os.listdir(log.dir))
    assert not [n for n in names if n.endswith(".deleted")]
    bases = {s.base_offset for s in log.segments}
    assert {int(n[:20]) for n in names if n.endswith(".txnindex")} <= bases


def test_retention_and_renames_carry_the_txnindex(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", TINY.replace(file_delete_delay_ms=1_000))
    build_aborts(log)
    first = sorted(txn_files(log))[0]
    holder = int(first[:20])
    cut = next(s.base_offset for s in log.segments if s.base_offset > holder)
    assert log.delete_records_before(cut) == ErrorCode.NONE
    assert first not in txn_files(log)
    assert (log.dir / (first + ".deleted")).exists()
    new_dir = tmp_path / "t-0.moved"
    log.rename_dir(new_dir)
    log.delete_expired_files(10**12)
    assert not (new_dir / (first + ".deleted")).exists()
    assert not [n for n in os.listdir(new_dir) if n.endswith(".deleted")]
    remaining = txn_files(log)
    assert remaining and all(int(n[:20]) >= cut for n in remaining)
    assert all(a[1] != 1 or a[2] >= cut for n in remaining for a in entries(remaining[n]))


def test_orphan_txnindex_is_removed_on_open(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, batch(1))
    log.close()
    orphan = log.dir / f"{5:020d}.txnindex"
    orphan.write_bytes(AbortedTxn(1, 5, 6, 7).encode())
    open_log(tmp_path / "t-0", BIG)
    assert not orphan.exists()


def test_failed_txnindex_write_undoes_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "t-0", BIG)
    append(log, txn(7, 0))
    real = os.pwrite

    def failing(fd: int, data: bytes, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".txnindex"):
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)
    result = log.append_control_marker(
        7, 0, commit=False, coordinator_epoch=0, leader_epoch=0, now_ms=1
    )
    assert result.error == ErrorCode.KAFKA_STORAGE_ERROR
    assert log.log_end_offset == 1 and log.last_stable_offset == 0
    assert [h.base_offset for h in read_headers(log)] == [0]
    assert log.segments[0].size == len(txn(7, 0))
    assert txn_files(log) == {"00000000000000000000.txnindex": b""}
    monkeypatch.setattr(os, "pwrite", real)
    assert marker(log, 7, commit=False) == 1
    assert entries(txn_files(log)["00000000000000000000.txnindex"]) == [(0, 7, 0, 1, 2)]


def test_transaction_index_unit(tmp_path: Path) -> None:
    path = tmp_path / f"{100:020d}.txnindex"
    index = TransactionIndex(path, 100)
    assert not index.exists and index.entries == [] and not path.exists()
    index.append(AbortedTxn(1, 90, 100, 101))
    index.append(AbortedTxn(2, 95, 104, 105))
    with pytest.raises(ValueError):
        index.append(AbortedTxn(3, 95, 104, 105))
    assert path.stat().st_size == 68
    assert TransactionIndex(path, 100).entries == index.entries
    assert index.collect(101, 200) == ([AbortedTxn(2, 95, 104, 105)], False)
    assert index.collect(0, 101) == ([AbortedTxn(1, 90, 100, 101)], True)
    index.truncate_to(104)
    assert path.stat().st_size == 34
    with pytest.raises(Exception, match="before"):
        TransactionIndex(path, 101).sanity_check()
    index.reset()
    assert path.stat().st_size == 0 and index.entries == []
