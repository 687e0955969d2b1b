"""A coordinator rebuilt from the records it wrote holds the same table and answers alike."""

from __future__ import annotations

import dataclasses

from metamorphostreams.coordinator.transaction import (
    CoordinatorRecord,
    TransactionMetadata,
    TransactionState,
    encode_key,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness, started

S = TransactionState


def _comparable(txns: dict[str, TransactionMetadata]) -> dict[str, TransactionMetadata]:
    # last_producer_epoch lives in memory only, as in Kafka
    return {tid: dataclasses.replace(m, last_producer_epoch=-1) for tid, m in txns.items()}


def _scenario(h: Harness) -> None:
    pid, epoch = started(h, [("a", 0)])
    h.add_offsets(pid, epoch)
    h.end(pid, epoch)
    h.deliver()
    h.init("second")
    h.add([("b", 1)], pid + 1, 0, tid="second")
    h.init("third")
    h.init("third")


def test_rebuilt_table_equals_live_table() -> None:
    h = Harness()
    _scenario(h)
    assert _comparable(h.rebuilt().transactions) == _comparable(h.coordinator.transactions)


def test_rebuilt_coordinator_answers_the_same() -> None:
    h = Harness()
    _scenario(h)
    twin = Harness(next_pid=h.next_pid, now=h.now)
    twin.coordinator = h.rebuilt()
    for harness in (h, twin):
        harness.take(harness.coordinator.on_loaded(harness.now))
    for harness in (h, twin):
        harness.records.clear()
    answers = []
    for harness in (h, twin):
        out = [
            harness.init("txn").producer_epoch,
            harness.add_error([("c", 0)], 1000, 1),
            harness.end(1000, 1, commit=False).error_code,
            harness.end(1001, 0, tid="second").error_code,
            harness.init("third", pid=1002, epoch=1).producer_epoch,
            harness.add_error([("c", 0)], 1000, 0),
        ]
        answers.append((out, [(r.key, r.value) for r in harness.records]))
    assert answers[0] == answers[1]


def test_restart_reissues_markers_of_prepared_transactions() -> None:
    h = Harness()
    pid, epoch = started(h, [("a", 0), ("a", 1)])
    h.end(pid, epoch, commit=False)
    h.markers.clear()
    result = h.restart(coordinator_epoch=3)
    (m,) = result.markers
    assert (m.commit, m.coordinator_epoch, m.partitions) == (False, 3, (("a", 0), ("a", 1)))
    assert result.records == []
    h.deliver()
    assert h.meta().state is S.COMPLETE_ABORT
    assert _comparable(h.rebuilt().transactions) == _comparable(h.coordinator.transactions)


def test_replay_tombstone_and_foreign_keys() -> None:
    h = Harness()
    h.init()
    fresh = h.rebuilt()
    fresh.replay(CoordinatorRecord(0, b"\x00\x05junk", b"ignored"))  # unknown key version
    assert set(fresh.transactions) == {"txn"}
    fresh.replay(CoordinatorRecord(0, encode_key("txn"), None))
    assert fresh.transactions == {}


def test_value_v0_when_transaction_version_0() -> None:
    h = Harness(transaction_version=0)
    pid, epoch = started(h)
    assert {r.value[:2] for r in h.records if r.value} == {b"\x00\x00"}
    # v0 has no tagged fields: the previous producer id is lost on reload, as in Kafka
    rebuilt = h.rebuilt().transactions["txn"]
    assert rebuilt.prev_producer_id == -1
    assert dataclasses.replace(rebuilt, prev_producer_id=pid) == dataclasses.replace(
        h.meta(), last_producer_epoch=-1
    )
    assert h.end(pid, epoch).error_code == ErrorCode.NONE
