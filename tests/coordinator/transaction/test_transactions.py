"""AddPartitionsToTxn, AddOffsetsToTxn, verification, EndTxn and the markers."""

from __future__ import annotations

import pytest

from metamorphostreams.coordinator.transaction import TransactionState
from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import OFFSETS_PARTITION, Harness, started, topics

S = TransactionState
E = ErrorCode


def test_add_partitions_starts_and_grows_the_transaction() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0)])
    meta = h.meta()
    assert meta.state is S.ONGOING and meta.txn_start_timestamp == h.now
    n = len(h.records)
    h.now += 5
    assert h.add_error([("a", 0)], pid, epoch) == E.NONE
    assert len(h.records) == n  # already there: nothing written
    assert h.add_error([("b", 1)], pid, epoch) == E.NONE
    assert h.meta().topic_partitions == {("a", 0), ("b", 1)}
    assert h.meta().txn_start_timestamp == h.now - 5


@pytest.mark.parametrize(
    ("tid", "pid_delta", "epoch_delta", "version", "error"),
    [
        ("", 0, 0, 3, E.INVALID_REQUEST),
        ("other", 0, 0, 3, E.INVALID_PRODUCER_ID_MAPPING),
        ("txn", 1, 0, 3, E.INVALID_PRODUCER_ID_MAPPING),
        ("txn", 0, 1, 3, E.PRODUCER_FENCED),
        ("txn", 0, -1, 2, E.PRODUCER_FENCED),
        ("txn", 0, 1, 1, E.INVALID_PRODUCER_EPOCH),
    ],
)
def test_add_partitions_refused(
    tid: str, pid_delta: int, epoch_delta: int, version: int, error: E
) -> None:
    h = Harness()
    resp = h.init()
    h.init()  # epoch 1, so that epoch - 1 exists
    pid, epoch = resp.producer_id, 1
    got = h.add(
        [("a", 0), ("a", 1)], pid + pid_delta, epoch + epoch_delta, tid=tid, version=version
    )
    assert got == {("a", 0): error, ("a", 1): error}


def test_add_partitions_internal_topic_and_unknown_partition() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0)])
    got = h.add([("__consumer_offsets", 3), ("a", 1)], pid, epoch)
    assert got == {
        ("__consumer_offsets", 3): E.TOPIC_AUTHORIZATION_FAILED,
        ("a", 1): E.OPERATION_NOT_ATTEMPTED,
    }
    h.coordinator._partition_exists = lambda t, p: p < 2
    assert h.add([("a", 1), ("a", 2)], pid, epoch) == {
        ("a", 1): E.OPERATION_NOT_ATTEMPTED,
        ("a", 2): E.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert h.meta().topic_partitions == {("a", 0)}


def test_add_offsets_adds_the_group_partition() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0)])
    assert h.add_offsets(pid, epoch) == E.NONE
    assert ("__consumer_offsets", OFFSETS_PARTITION) in h.meta().topic_partitions
    assert h.add_offsets(pid, epoch + 1) == E.PRODUCER_FENCED
    assert h.add_offsets(pid, epoch + 1, version=1) == E.INVALID_PRODUCER_EPOCH
    assert h.add_offsets(pid + 5, epoch) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.add_offsets(pid, epoch, tid="") == E.INVALID_REQUEST


@pytest.mark.parametrize("commit", [True, False])
def test_end_txn_prepares_answers_and_completes_after_markers(commit: bool) -> None:
    h = Harness()
    pid, epoch = started(h)
    n = len(h.records)
    resp = h.end(pid, epoch, commit)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, pid, epoch)
    assert len(h.records) == n + 1  # the Prepare record, written before the answer
    assert h.meta().state is (S.PREPARE_COMMIT if commit else S.PREPARE_ABORT)
    (m,) = h.markers
    assert (m.producer_id, m.producer_epoch, m.commit) == (pid, epoch, commit)
    assert m.partitions == (("orders", 0), ("orders", 1))
    # retried EndTxn while markers go out; the opposite outcome is refused
    assert h.end(pid, epoch, commit).error_code == E.CONCURRENT_TRANSACTIONS
    assert h.end(pid, epoch, not commit).error_code == E.INVALID_TXN_STATE
    assert h.add_error([("x", 0)], pid, epoch) == E.CONCURRENT_TRANSACTIONS
    h.deliver()
    meta = h.meta()
    assert meta.state is (S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT)
    assert meta.topic_partitions == frozenset() and len(h.records) == n + 2
    # a retry after completion succeeds; the opposite outcome is refused
    again = h.end(pid, epoch, commit)
    assert (again.error_code, again.producer_id, again.producer_epoch) == (0, pid, epoch)
    assert h.end(pid, epoch, not commit).error_code == E.INVALID_TXN_STATE
    # the next transaction starts from the completed one
    assert h.add_error([("x", 0)], pid, epoch) == E.NONE
    assert h.meta().state is S.ONGOING and h.meta().topic_partitions == {("x", 0)}


@pytest.mark.parametrize(
    ("tid", "pid_delta", "epoch_delta", "version", "error"),
    [
        ("", 0, 0, 3, E.INVALID_REQUEST),
        ("nope", 0, 0, 3, E.INVALID_PRODUCER_ID_MAPPING),
        ("txn", 1, 0, 3, E.INVALID_PRODUCER_ID_MAPPING),
        ("txn", 0, 1, 3, E.PRODUCER_FENCED),
        ("txn", 0, 1, 1, E.INVALID_PRODUCER_EPOCH),
    ],
)
def test_end_txn_refused(
    tid: str, pid_delta: int, epoch_delta: int, version: int, error: E
) -> None:
    h = Harness()
    pid, epoch = started(h)
    resp = h.end(pid + pid_delta, epoch + epoch_delta, tid=tid, version=version)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (error, -1, -1)
    assert h.meta().state is S.ONGOING


def test_end_txn_without_transaction_is_invalid_txn_state() -> None:
    h = Harness()
    resp = h.init()
    assert h.end(resp.producer_id, 0).error_code == E.INVALID_TXN_STATE
    assert h.end(resp.producer_id, 0, commit=False).error_code == E.INVALID_TXN_STATE


def test_markers_retry_and_deleted_partitions() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0), ("a", 1), ("gone", 0)])
    h.end(pid, epoch)
    (m,) = h.markers
    h.markers.clear()
    errors = {
        ("a", 0): E.NONE,
        ("a", 1): E.NOT_LEADER_OR_FOLLOWER,
        ("gone", 0): E.UNKNOWN_TOPIC_OR_PARTITION,
    }
    result = h.coordinator.markers_written(h.now, m.marker_id, errors)
    assert result.records == []
    (retry,) = result.markers
    assert retry.partitions == (("a", 1),) and retry.marker_id != m.marker_id
    assert h.meta().topic_partitions == {("a", 1)}  # Kafka shrinks the prepared set in memory
    # the superseded marker id is ignored
    assert h.coordinator.markers_written(h.now, m.marker_id, {("a", 1): E.NONE}).records == []
    result = h.coordinator.markers_written(h.now, retry.marker_id, {})  # nothing reported
    (again,) = result.markers
    result = h.coordinator.markers_written(h.now, again.marker_id, {("a", 1): E.NONE})
    assert len(result.records) == 1 and h.meta().state is S.COMPLETE_COMMIT


def test_markers_fenced_leave_the_transaction_prepared() -> None:
    h = Harness()
    pid, epoch = started(h)
    h.end(pid, epoch)
    h.deliver(E.INVALID_PRODUCER_EPOCH)
    assert h.meta().state is S.PREPARE_COMMIT and h.markers == []
    result = h.restart()  # a reload sends them again
    assert len(result.markers) == 1 and result.markers[0].coordinator_epoch == 1


def test_markers_of_an_older_coordinator_epoch_are_ignored() -> None:
    h = Harness()
    pid, epoch = started(h)
    h.end(pid, epoch)
    (old,) = h.markers
    h.take(h.coordinator.on_loaded(h.now, 5))
    assert [m.coordinator_epoch for m in h.markers] == [0, 5]
    assert (
        h.coordinator.markers_written(
            h.now, old.marker_id, {tp: E.NONE for tp in old.partitions}
        ).records
        == []
    )
    assert h.meta().state is S.PREPARE_COMMIT


def test_empty_transaction_completes_without_markers() -> None:
    h = Harness()
    resp = h.init()
    assert h.add([], resp.producer_id, 0) == {}  # AddPartitions without partitions
    assert h.meta().state is S.ONGOING
    h.end(resp.producer_id, 0)
    assert h.markers == [] and h.meta().state is S.COMPLETE_COMMIT


def test_verify_partitions() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0)])
    verify = h.coordinator.verify_partitions
    assert verify("txn", pid, epoch, [("a", 0), ("a", 1)]) == {
        ("a", 0): E.NONE,
        ("a", 1): E.TRANSACTION_ABORTABLE,
    }
    assert verify("txn", pid + 1, epoch, [("a", 0)]) == {("a", 0): E.INVALID_PRODUCER_ID_MAPPING}
    assert verify("other", pid, epoch, [("a", 0)]) == {("a", 0): E.INVALID_PRODUCER_ID_MAPPING}
    assert verify("txn", pid, epoch + 1, [("a", 0)]) == {("a", 0): E.PRODUCER_FENCED}
    assert verify("", pid, epoch, [("a", 0)]) == {("a", 0): E.INVALID_REQUEST}
    h.end(pid, epoch)
    assert verify("txn", pid, epoch, [("a", 0)]) == {("a", 0): E.CONCURRENT_TRANSACTIONS}
    h.deliver()
    assert verify("txn", pid, epoch, [("a", 0)]) == {("a", 0): E.TRANSACTION_ABORTABLE}


def test_add_partitions_v4_batched_verify_and_add() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0)])
    h.init("second")
    T = AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
    req = AddPartitionsToTxnRequest(
        transactions=[
            T(
                transactional_id="txn",
                producer_id=pid,
                producer_epoch=epoch,
                verify_only=True,
                topics=topics([("a", 0), ("a", 1)]),
            ),
            T(
                transactional_id="second",
                producer_id=pid + 1,
                producer_epoch=0,
                verify_only=False,
                topics=topics([("__consumer_offsets", 1)]),
            ),
            T(
                transactional_id="missing",
                producer_id=1,
                producer_epoch=0,
                verify_only=True,
                topics=topics([("a", 0)]),
            ),
        ]
    )
    resp = h.take(h.coordinator.add_partitions_to_txn(h.now, req, 5))
    assert resp.error_code == 0 and resp.results_by_topic_v3_and_below == []
    got = {
        r.transactional_id: {
            (t.name, p.partition_index): p.partition_error_code
            for t in r.topic_results
            for p in t.results_by_partition
        }
        for r in resp.results_by_transaction
    }
    assert got == {
        "txn": {("a", 0): E.NONE, ("a", 1): E.TRANSACTION_ABORTABLE},
        "second": {("__consumer_offsets", 1): E.NONE},  # brokers may add internal topics
        "missing": {("a", 0): E.INVALID_PRODUCER_ID_MAPPING},
    }
    assert h.meta("second").state is S.ONGOING
    assert h.meta().topic_partitions == {("a", 0)}  # verification writes nothing
