"""The log cleaner and transactions: aborted data removed, markers kept while needed then
removed after their delete horizon, the last batch of each producer kept, the last stable
offset respected, idempotent producer state intact."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.records import ControlRecordType, parse_control_key
from metamorphostreams.storage import PartitionLog

from .cleaner_helpers import COMPACT, T0, all_batches, keyed, new_cleaner, open_manager, put


def txn_put(
    log: PartitionLog, pid: int, seq: int, pairs: list[tuple[bytes, bytes]], now: int = T0
) -> int:
    records = keyed(pairs, ts=now, pid=pid, epoch=0, seq=seq, transactional=True)
    result = log.append_as_leader(records, leader_epoch=0, now_ms=now)
    assert result.error == ErrorCode.NONE, result
    return result.base_offset


def end_txn(log: PartitionLog, pid: int, *, commit: bool, now: int = T0) -> int:
    result = log.append_control_marker(
        pid, 0, commit=commit, coordinator_epoch=0, leader_epoch=0, now_ms=now
    )
    assert result.error == ErrorCode.NONE, result
    return result.base_offset


def markers(log: PartitionLog) -> list[tuple[int, int, ControlRecordType | None, bool]]:
    """(offset, producer id, type or None when emptied, has delete horizon) of control batches."""
    out = []
    for header, records in all_batches(log):
        if header.is_control:
            kind = parse_control_key(records[0].key) if records else None
            out.append((header.base_offset, header.producer_id, kind, header.has_delete_horizon))
    return out


def test_aborted_data_is_removed_and_markers_expire(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    put(log, [(b"k1", b"plain")])
    aborted_at = txn_put(log, 7, 0, [(b"k1", b"aborted"), (b"k2", b"aborted")])
    abort_marker = end_txn(log, 7, commit=False)
    txn_put(log, 7, 2, [(b"k3", b"committed")])
    commit_marker = end_txn(log, 7, commit=True)
    for i in range(10):
        put(log, [(b"filler-%d" % i, b"x" * 100)])
    log.roll()
    assert log.segments[0].txn_index.entries  # the ABORT has its .txnindex entry
    cleaner = new_cleaner(manager)

    assert cleaner.clean_once(T0)
    values = {(r.key, r.value) for h, recs in all_batches(log) if not h.is_control for r in recs}
    assert (b"k1", b"aborted") not in values and (b"k2", b"aborted") not in values
    assert (b"k1", b"plain") in values and (b"k3", b"committed") in values
    assert all(h.base_offset != aborted_at for h, _ in all_batches(log))
    # both markers kept: their transactions had batches in this cleaning; the horizon is
    # only set on the next one, once the ABORT's data is gone
    kinds = {offset: (kind, horizon) for offset, _, kind, horizon in markers(log)}
    assert kinds[abort_marker] == (ControlRecordType.ABORT, False)
    assert kinds[commit_marker] == (ControlRecordType.COMMIT, False)
    entries = [e for s in log.segments for e in s.txn_index.entries]
    assert [(e.producer_id, e.first_offset, e.last_offset) for e in entries] == [
        (7, aborted_at, abort_marker)
    ]
    assert log.collect_aborted_transactions(0, log.log_end_offset) == [(7, aborted_at)]

    # next cleaning: the ABORT has no data left: it gets a delete horizon
    for i in range(10):
        put(log, [(b"filler-%d" % i, b"y" * 100)], T0 + 1)
    log.roll()
    assert cleaner.clean_once(T0 + 1)
    kinds = {offset: (kind, horizon) for offset, _, kind, horizon in markers(log)}
    assert kinds[abort_marker] == (ControlRecordType.ABORT, True)
    assert kinds[commit_marker] == (ControlRecordType.COMMIT, False)  # its data is still there
    assert not [e for s in log.segments for e in s.txn_index.entries]

    # after delete.retention.ms: the ABORT marker is gone, the COMMIT stays (data + last
    # batch of its producer)
    later = T0 + COMPACT.delete_retention_ms + 5
    for i in range(10):
        put(log, [(b"filler-%d" % i, b"z" * 100)], later)
    log.roll()
    assert cleaner.clean_once(later)
    offsets = [offset for offset, _, _, _ in markers(log)]
    assert abort_marker not in offsets
    assert commit_marker in offsets
    # producer state still works: the next sequence is accepted, a duplicate is detected
    again = keyed([(b"k4", b"v")], pid=7, epoch=0, seq=3, transactional=True)
    assert log.append_as_leader(again, leader_epoch=0, now_ms=later).error == ErrorCode.NONE
    manager.close()


def test_last_batch_of_a_producer_is_kept_empty(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    idem = keyed([(b"k", b"old")], pid=5, epoch=0, seq=0)
    assert log.append_as_leader(idem, leader_epoch=0, now_ms=T0).error == ErrorCode.NONE
    for i in range(15):
        put(log, [(b"k", b"new-%d" % i)])
    log.roll()
    assert new_cleaner(manager).clean_once(T0)
    pid_batches = [(h, recs) for h, recs in all_batches(log) if h.producer_id == 5]
    assert len(pid_batches) == 1
    header, records = pid_batches[0]
    assert records == [] and header.records_count == 0
    assert header.base_sequence == 0 and header.last_offset == 0
    # after a restart the producer's sequence is known: a duplicate is answered as such
    manager.close()
    manager = open_manager(tmp_path)
    log2 = manager.get_log("t", 0)
    assert log2 is not None
    dup = log2.append_as_leader(
        keyed([(b"k", b"old")], pid=5, epoch=0, seq=0), leader_epoch=0, now_ms=T0
    )
    assert dup.error == ErrorCode.NONE and dup.base_offset == 0
    manager.close()


def test_open_transaction_bounds_the_cleaning(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    for i in range(10):
        put(log, [(b"k", b"%d" % i)])
    log.roll()
    open_at = txn_put(log, 9, 0, [(b"k", b"pending")])
    for i in range(10):
        put(log, [(b"k", b"after-%d" % i)])
    log.roll()
    assert log.last_stable_offset == open_at
    assert new_cleaner(manager).clean_once(T0)
    # nothing at or after the open transaction was touched
    survivors = [
        r for h, recs in all_batches(log) if not h.is_control for r in recs if r.offset >= open_at
    ]
    assert len(survivors) == 11
    manager.close()
