"""Transaction version 2 (KIP-890 part 2): EndTxn v5 bumps the epoch of every transaction,
brokers add partitions implicitly, epochs run out into a new producer id, retries."""

from __future__ import annotations

from typing import Any

from metamorphostreams.coordinator.transaction import (
    CoordinatorRecord,
    TransactionLogValue,
    TransactionMetadata,
    TransactionState,
    encode_key,
)
from metamorphostreams.coordinator.transaction.state import EPOCH_EXHAUSTED_AT, SHORT_MAX
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import FIRST_PID, TIMEOUT, Harness

S = TransactionState
E = ErrorCode
V5 = 5  # EndTxn v5: the client runs transaction version 2
PARTS = [("orders", 0), ("orders", 1)]


def tv2() -> Harness:
    return Harness(transaction_version=2)


def add(h: Harness, pid: int, epoch: int, parts: list[tuple[str, int]] = PARTS) -> set[Any]:
    """What a broker does on a TV_2 producer's first batch (AddPartitionsToTxn v5, add)."""
    result = h.coordinator.add_partitions_implicitly(h.now, "txn", pid, epoch, parts)
    errors: dict[tuple[str, int], ErrorCode] = h.take(result)
    return set(errors.values())


def end(h: Harness, pid: int, epoch: int, commit: bool = True) -> tuple[int, int, int]:
    resp = h.end(pid, epoch, commit=commit, version=V5)
    return resp.error_code, resp.producer_id, resp.producer_epoch


def values(h: Harness) -> list[TransactionLogValue]:
    return [TransactionLogValue.decode(r.value) for r in h.records if r.value is not None]


def test_every_commit_and_abort_bumps_the_epoch() -> None:
    h = tv2()
    resp = h.init()
    pid, epoch = resp.producer_id, resp.producer_epoch
    assert add(h, pid, epoch) == {E.NONE}
    assert h.meta().client_transaction_version == 2
    assert end(h, pid, epoch) == (E.NONE, pid, epoch + 1)
    prepare = values(h)[-1]
    assert prepare.transaction_status == S.PREPARE_COMMIT
    assert prepare.producer_epoch == epoch + 1 and prepare.client_transaction_version == 2
    assert h.meta().last_producer_epoch == epoch
    [markers] = h.markers
    assert (markers.producer_epoch, markers.transaction_version, markers.commit) == (
        epoch + 1,
        2,
        True,
    )
    h.deliver()
    assert (h.meta().state, h.meta().producer_epoch) == (S.COMPLETE_COMMIT, epoch + 1)
    # the next transaction runs at the bumped epoch; the old one is fenced
    assert add(h, pid, epoch) == {E.PRODUCER_FENCED}
    assert add(h, pid, epoch + 1) == {E.NONE}
    assert end(h, pid, epoch + 1, commit=False) == (E.NONE, pid, epoch + 2)
    assert [m.commit for m in h.markers] == [False]
    h.deliver()
    assert (h.meta().state, h.meta().producer_epoch) == (S.COMPLETE_ABORT, epoch + 2)


def test_retries_of_end_txn_after_the_bump() -> None:
    h = tv2()
    pid = h.init().producer_id
    add(h, pid, 0)
    assert end(h, pid, 0) == (E.NONE, pid, 1)
    # markers still going out: the retry (one epoch below) waits
    assert end(h, pid, 0) == (E.CONCURRENT_TRANSACTIONS, -1, -1)
    assert end(h, pid, 0, commit=False) == (E.INVALID_TXN_STATE, -1, -1)
    assert end(h, pid, 1) == (E.PRODUCER_FENCED, -1, -1)  # a retry carries the old epoch
    h.deliver()
    n = len(h.records)
    assert end(h, pid, 0) == (E.NONE, pid, 1)  # the lost answer, again
    assert end(h, pid, 0, commit=False) == (E.INVALID_TXN_STATE, -1, -1)
    assert len(h.records) == n
    # the same epoch is the next EndTxn: a commit without a transaction is refused
    assert end(h, pid, 1) == (E.INVALID_TXN_STATE, -1, -1)
    assert end(h, pid, 5) == (E.PRODUCER_FENCED, -1, -1)
    assert end(h, pid + 1, 1) == (E.INVALID_PRODUCER_ID_MAPPING, -1, -1)


def test_abort_without_partitions_bumps_the_epoch() -> None:
    h = tv2()
    pid = h.init().producer_id
    assert end(h, pid, 0, commit=True) == (E.INVALID_TXN_STATE, -1, -1)  # Empty
    h.now += 7
    assert end(h, pid, 0, commit=False) == (E.NONE, pid, 1)
    assert not h.markers  # nothing to mark: complete at once
    meta = h.meta()
    assert (meta.state, meta.producer_epoch, meta.txn_start_timestamp) == (
        S.COMPLETE_ABORT,
        1,
        h.now,
    )
    # a retry of that abort, then an abort of the (empty) next transaction
    assert end(h, pid, 0, commit=False) == (E.NONE, pid, 1)
    assert end(h, pid, 1, commit=False) == (E.NONE, pid, 2)
    assert [v.transaction_status for v in values(h)[-2:]] == [S.PREPARE_ABORT, S.COMPLETE_ABORT]


def _ongoing_at(h: Harness, epoch: int, pid: int = 42) -> None:
    """Load an Ongoing TV_2 transaction of ``pid`` at ``epoch`` (as replayed from the log)."""
    meta = TransactionMetadata(
        "txn", pid, epoch, TIMEOUT, S.ONGOING, frozenset(PARTS), h.now, h.now
    )
    value = meta.to_value()
    value = TransactionLogValue(**{**value.__dict__, "client_transaction_version": 2})
    record = CoordinatorRecord(
        h.coordinator.partition_for("txn"), encode_key("txn"), value.encode()
    )
    h.records.append(record)
    h.coordinator.replay(record)
    h.take(h.coordinator.on_loaded(h.now, 0))


def test_exhausted_epoch_moves_to_the_next_producer_id() -> None:
    h = tv2()
    _ongoing_at(h, EPOCH_EXHAUSTED_AT)
    assert end(h, 42, EPOCH_EXHAUSTED_AT) == (E.NONE, FIRST_PID, 0)
    prepare = values(h)[-1]
    assert (prepare.producer_id, prepare.producer_epoch, prepare.next_producer_id) == (
        42,
        SHORT_MAX,
        FIRST_PID,
    )
    [markers] = h.markers
    assert (markers.producer_id, markers.producer_epoch) == (42, SHORT_MAX)
    # a retry while the markers go out; then after completion, answered with the new id
    assert end(h, 42, EPOCH_EXHAUSTED_AT) == (E.CONCURRENT_TRANSACTIONS, -1, -1)
    h.deliver()
    complete = values(h)[-1]
    assert (complete.producer_id, complete.producer_epoch) == (FIRST_PID, 0)
    assert (complete.previous_producer_id, complete.next_producer_id) == (42, -1)
    assert end(h, 42, EPOCH_EXHAUSTED_AT) == (E.NONE, FIRST_PID, 0)
    assert end(h, 42, EPOCH_EXHAUSTED_AT, commit=False) == (E.INVALID_TXN_STATE, -1, -1)
    assert end(h, 42, 3) == (E.INVALID_PRODUCER_ID_MAPPING, -1, -1)
    # the new producer id goes on at epoch 0
    assert add(h, FIRST_PID, 0) == {E.NONE}
    assert end(h, FIRST_PID, 0) == (E.NONE, FIRST_PID, 1)


def test_replay_of_values_carrying_the_tv2_fields() -> None:
    h = tv2()
    _ongoing_at(h, EPOCH_EXHAUSTED_AT)
    end(h, 42, EPOCH_EXHAUSTED_AT)
    # a restart between PrepareCommit and the markers: the markers go out again with the
    # bumped epoch, and completion moves to the next producer id recorded in the value
    h.restart()
    meta = h.meta()
    assert (meta.state, meta.producer_epoch, meta.next_producer_id) == (
        S.PREPARE_COMMIT,
        SHORT_MAX,
        FIRST_PID,
    )
    assert meta.client_transaction_version == 2
    [markers] = h.markers
    assert (markers.producer_id, markers.producer_epoch, markers.transaction_version) == (
        42,
        SHORT_MAX,
        2,
    )
    h.deliver()
    assert (h.meta().producer_id, h.meta().producer_epoch) == (FIRST_PID, 0)
    rebuilt = h.rebuilt().transactions["txn"]
    assert rebuilt == h.meta()
    assert (rebuilt.prev_producer_id, rebuilt.client_transaction_version) == (42, 2)
    # after a reload the retry is still recognised (it needs no in-memory state)
    h.restart()
    assert end(h, 42, EPOCH_EXHAUSTED_AT) == (E.NONE, FIRST_PID, 0)


def test_tv2_client_adding_partitions_with_old_api_versions() -> None:
    """AddPartitionsToTxn v0-3 records TV_0, as Kafka does; EndTxn v5 still bumps."""
    h = tv2()
    pid = h.init().producer_id
    assert h.add_error(PARTS, pid, 0, version=3) == E.NONE
    assert h.meta().client_transaction_version == 0
    assert end(h, pid, 0) == (E.NONE, pid, 1)
    assert h.meta().client_transaction_version == 2


def test_tv1_end_txn_keeps_the_epoch_on_a_tv2_cluster() -> None:
    h = tv2()
    pid = h.init().producer_id
    h.add_error(PARTS, pid, 0)
    resp = h.end(pid, 0, version=4)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (E.NONE, pid, 0)
    assert h.markers[0].producer_epoch == 0 and h.markers[0].transaction_version == 0
    h.deliver()
    assert h.end(pid, 0, version=4).error_code == E.NONE  # TV_1 retry of the commit


def test_implicit_add_errors() -> None:
    h = tv2()
    pid = h.init().producer_id
    assert add(h, pid + 1, 0) == {E.INVALID_PRODUCER_ID_MAPPING}
    assert add(h, pid, 1) == {E.PRODUCER_FENCED}
    add(h, pid, 0)
    end(h, pid, 0)
    assert add(h, pid, 1) == {E.CONCURRENT_TRANSACTIONS}  # markers of the last one pending
    h.deliver()
    assert add(h, pid, 1, [("__consumer_offsets", 3)]) == {E.NONE}  # TxnOffsetCommit v5


def test_coordinator_abort_on_a_tv2_cluster() -> None:
    """Timeouts and InitProducerId fencing abort at the server's version: the epoch is
    bumped once (the fence), the markers carry it, and the next InitProducerId bumps again."""
    h = tv2()
    pid = h.init().producer_id
    h.add_error(PARTS, pid, 0)  # a TV_1 client's transaction
    resp = h.init()
    assert resp.error_code == E.CONCURRENT_TRANSACTIONS
    meta = h.meta()
    assert (meta.state, meta.producer_epoch, meta.last_producer_epoch) == (S.PREPARE_ABORT, 1, 0)
    assert meta.client_transaction_version == 2
    assert (h.markers[0].producer_epoch, h.markers[0].transaction_version) == (1, 2)
    h.deliver()
    resp = h.init()
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (E.NONE, pid, 2)
    # a TV_2 transaction that times out
    add(h, pid, 2)
    h.advance(TIMEOUT + h.config.transaction_abort_timed_out_transaction_cleanup_interval_ms)
    meta = h.meta()
    assert (meta.state, meta.producer_epoch) == (S.PREPARE_ABORT, 3)
    h.deliver()
    assert end(h, pid, 2, commit=False) == (E.NONE, pid, 3)  # the client's abort: a retry
    assert end(h, pid, 2) == (E.INVALID_TXN_STATE, -1, -1)
