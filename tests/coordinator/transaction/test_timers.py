"""Timed-out transactions are fenced and aborted; idle transactional ids expire."""

from __future__ import annotations

from metamorphostreams.coordinator.transaction import TransactionConfig, TransactionState
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import TIMEOUT, Harness, started

S = TransactionState
CLEANUP = 10_000  # transaction.abort.timed.out.transaction.cleanup.interval.ms default


def test_deadlines_are_kafkas_periodic_tasks() -> None:
    h = Harness()
    h.init()
    assert h.coordinator.next_deadline_ms() == h.now + CLEANUP


def test_timed_out_transaction_is_fenced_and_aborted() -> None:
    h = Harness()
    start = h.now
    pid, epoch = started(h)
    # checked every 10 s: still running at its timeout, aborted at the first check past it
    while h.now + CLEANUP <= start + TIMEOUT:
        h.advance(CLEANUP)
    assert h.meta().state is S.ONGOING
    h.advance(CLEANUP)
    meta = h.meta()
    assert meta.state is S.PREPARE_ABORT and meta.producer_epoch == epoch + 1
    assert meta.last_producer_epoch == -1
    (m,) = h.markers
    assert (m.commit, m.producer_epoch) == (False, epoch + 1)
    h.deliver()
    assert h.meta().state is S.COMPLETE_ABORT
    # the producer learns it was fenced
    assert h.end(pid, epoch).error_code == ErrorCode.PRODUCER_FENCED
    assert h.add_error([("a", 0)], pid, epoch) == ErrorCode.PRODUCER_FENCED
    resp = h.init(pid=pid, epoch=epoch)  # KIP-360 recovery with the fenced epoch
    assert resp.error_code == ErrorCode.PRODUCER_FENCED


def test_timer_runs_before_a_late_request() -> None:
    h = Harness()
    pid, epoch = started(h)
    h.now += TIMEOUT + 2 * CLEANUP  # no poll in between: the request itself runs the timer
    assert h.end(pid, epoch).error_code == ErrorCode.PRODUCER_FENCED
    assert h.meta().state is S.PREPARE_ABORT


def test_prepared_transactions_are_not_timed_out() -> None:
    h = Harness()
    pid, epoch = started(h)
    h.end(pid, epoch)
    h.advance(TIMEOUT + 2 * CLEANUP)
    assert h.meta().state is S.PREPARE_COMMIT and h.meta().producer_epoch == epoch


def test_idle_transactional_ids_expire_with_a_tombstone() -> None:
    config = TransactionConfig(
        transactional_id_expiration_ms=50_000,
        transaction_remove_expired_transaction_cleanup_interval_ms=20_000,
    )
    h = Harness(config=config)
    h.init("idle")
    pid, epoch = started(h)  # "txn" stays Ongoing: never expired
    h.end(pid, epoch)
    h.deliver()  # CompleteCommit, last updated now
    h.init("young")
    h.advance(40_000)
    h.init("young")  # touched: its expiry moves
    h.advance(20_000)  # t=60 s: idle and txn (updated at 0) expire
    assert set(h.coordinator.transactions) == {"young"}
    tombstones = [r for r in h.records if r.value is None]
    assert len(tombstones) == 2
    assert h.rebuilt().transactions.keys() == {"young"}
    # an expired id starts afresh with a new producer id
    assert h.init("idle").producer_epoch == 0


def test_ongoing_transactions_never_expire() -> None:
    config = TransactionConfig(
        transactional_id_expiration_ms=1_000,
        transaction_remove_expired_transaction_cleanup_interval_ms=1_000,
        transaction_max_timeout_ms=10_000_000,
    )
    h = Harness(config=config)
    resp = h.init(timeout=10_000_000)
    h.add([("a", 0)], resp.producer_id, 0)
    h.advance(5_000)
    assert h.meta().state is S.ONGOING


def test_unload_forgets_everything() -> None:
    h = Harness()
    pid, epoch = started(h)
    h.end(pid, epoch)
    result = h.coordinator.unload(h.now)
    assert result.records == [] and result.response is None
    assert h.coordinator.transactions == {} and h.coordinator.next_deadline_ms() is None
    m = h.markers[0]
    assert h.coordinator.markers_written(h.now, m.marker_id, {}).records == []
