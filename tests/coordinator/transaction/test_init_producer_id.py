"""InitProducerId: new ids, epoch bumps, KIP-360, fencing an ongoing transaction, rotation."""

from __future__ import annotations

import dataclasses

import pytest

from metamorphostreams.coordinator.transaction import TransactionState
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import FIRST_PID, Harness, started

S = TransactionState


def test_new_transactional_id_gets_a_producer_id_at_epoch_0() -> None:
    h = Harness()
    resp = h.init()
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, FIRST_PID, 0)
    meta = h.meta()
    assert meta.state is S.EMPTY and meta.txn_timeout_ms == 60_000
    assert meta.prev_producer_id == FIRST_PID  # Kafka records the id before each transition
    assert len(h.records) == 1 and h.records[0].partition == h.coordinator.partition_for("txn")


def test_again_bumps_the_epoch() -> None:
    h = Harness()
    h.init()
    resp = h.init(timeout=30_000)
    assert (resp.producer_id, resp.producer_epoch) == (FIRST_PID, 1)
    assert h.meta().txn_timeout_ms == 30_000 and h.meta().last_producer_epoch == -1


def test_without_transactional_id_is_idempotent_producer() -> None:
    h = Harness()
    resp = h.init(None)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, FIRST_PID, 0)
    assert h.records == [] and h.coordinator.transactions == {}


@pytest.mark.parametrize(
    ("tid", "timeout", "error"),
    [
        ("", 1000, ErrorCode.INVALID_REQUEST),
        ("t", 0, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
        ("t", 900_001, ErrorCode.INVALID_TRANSACTION_TIMEOUT),
    ],
)
def test_refused(tid: str, timeout: int, error: ErrorCode) -> None:
    h = Harness()
    resp = h.init(tid, timeout)
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (error, -1, -1)
    assert h.records == []


def test_max_timeout_accepted() -> None:
    assert Harness().init(timeout=900_000).error_code == ErrorCode.NONE


@pytest.mark.parametrize(("pid", "epoch"), [(5, -1), (-1, 5)])
def test_kip360_half_given_is_invalid_request(pid: int, epoch: int) -> None:
    h = Harness()
    assert h.init(pid=pid, epoch=epoch, version=3).error_code == ErrorCode.INVALID_REQUEST


def test_kip360_older_versions_ignore_the_fields() -> None:
    h = Harness()
    h.init()
    resp = h.init(pid=5, epoch=9, version=2)  # not read before v3
    assert (resp.error_code, resp.producer_epoch) == (ErrorCode.NONE, 1)


def test_kip360_bump_with_current_epoch_and_retry() -> None:
    h = Harness()
    h.init()
    resp = h.init(pid=FIRST_PID, epoch=0)
    assert (resp.error_code, resp.producer_epoch) == (0, 1)
    assert h.meta().last_producer_epoch == 0
    retry = h.init(pid=FIRST_PID, epoch=0)  # the answer was lost: same epoch again
    assert (retry.error_code, retry.producer_epoch) == (0, 1)
    fenced = h.init(pid=FIRST_PID, epoch=5)
    assert fenced.error_code == ErrorCode.PRODUCER_FENCED


def test_kip360_retry_after_restart_is_fenced_as_in_kafka() -> None:
    h = Harness()
    h.init()
    h.init(pid=FIRST_PID, epoch=0)
    h.restart()
    assert h.init(pid=FIRST_PID, epoch=0).error_code == ErrorCode.PRODUCER_FENCED


def test_kip360_unknown_producer_id_is_fenced_unless_fresh() -> None:
    h = Harness()
    fresh = h.init(pid=77, epoch=3)  # no metadata yet: a new id is safe to hand out
    assert (fresh.error_code, fresh.producer_id, fresh.producer_epoch) == (0, FIRST_PID, 0)
    assert h.init(pid=77, epoch=3).error_code == ErrorCode.PRODUCER_FENCED


def test_fenced_error_for_old_versions_is_invalid_producer_epoch() -> None:
    h = Harness()
    h.init()
    assert h.init(pid=99, epoch=0, version=3).error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    assert h.init(pid=99, epoch=0, version=4).error_code == ErrorCode.PRODUCER_FENCED


def test_ongoing_transaction_is_fenced_and_aborted() -> None:
    h = Harness()
    pid, epoch = started(h)
    resp = h.init()
    assert (resp.error_code, resp.producer_id) == (ErrorCode.CONCURRENT_TRANSACTIONS, -1)
    meta = h.meta()
    assert meta.state is S.PREPARE_ABORT and meta.producer_epoch == epoch + 1
    assert [m.commit for m in h.markers] == [False]
    assert h.markers[0].producer_epoch == epoch + 1
    assert meta.client_transaction_version == 1  # the coordinator's own abort uses the server TV
    # the old producer is fenced out
    assert h.end(pid, epoch).error_code == ErrorCode.PRODUCER_FENCED
    assert h.init().error_code == ErrorCode.CONCURRENT_TRANSACTIONS  # markers still going out
    h.deliver()
    assert h.meta().state is S.COMPLETE_ABORT
    resp = h.init()
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, pid, epoch + 2)


def test_epoch_exhaustion_rotates_the_producer_id() -> None:
    h = Harness()
    h.init()
    meta = h.meta()
    h.coordinator.transactions["txn"] = dataclasses.replace(meta, producer_epoch=32766)
    resp = h.init()
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, FIRST_PID + 1, 0)
    assert h.meta().prev_producer_id == FIRST_PID and h.meta().last_producer_epoch == -1


def test_kip360_retry_of_rotation_with_old_producer_id() -> None:
    h = Harness()
    h.init()
    h.coordinator.transactions["txn"] = dataclasses.replace(h.meta(), producer_epoch=32766)
    resp = h.init(pid=FIRST_PID, epoch=32766)
    assert (resp.producer_id, resp.producer_epoch) == (FIRST_PID + 1, 0)
    assert h.meta().last_producer_epoch == 32766
    # the answer was lost; the client retries with its old id and exhausted epoch
    retry = h.init(pid=FIRST_PID, epoch=32766)  # the same answer again, no new bump
    assert (retry.error_code, retry.producer_id, retry.producer_epoch) == (0, FIRST_PID + 1, 0)


def test_fencing_at_the_last_epoch_then_rotation() -> None:
    h = Harness()
    pid, _ = started(h)
    h.coordinator.transactions["txn"] = dataclasses.replace(h.meta(), producer_epoch=32766)
    assert h.init().error_code == ErrorCode.CONCURRENT_TRANSACTIONS
    assert h.meta().producer_epoch == 32767
    h.deliver()
    resp = h.init()
    assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (0, pid + 1, 0)


def test_v6_two_phase_commit_is_refused() -> None:
    from metamorphostreams.protocol._generated.init_producer_id import InitProducerIdRequest

    h = Harness()
    req = InitProducerIdRequest(transactional_id="t", transaction_timeout_ms=1000, enable2_pc=True)
    resp = h.take(h.coordinator.init_producer_id(h.now, req, 6))
    assert resp.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
