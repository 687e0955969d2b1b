"""Random clients against the coordinator: the state table's invariants always hold, and a
coordinator rebuilt from the records holds the same table."""

from __future__ import annotations

import dataclasses

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from metamorphostreams.coordinator.transaction import (
    VALID_PREVIOUS_STATES,
    TransactionConfig,
    TransactionLogValue,
    TransactionMetadata,
    TransactionState,
    decode_key,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness

S = TransactionState
IDS = ["t0", "t1", "t2"]
PARTITIONS = [("a", 0), ("a", 1), ("b", 0)]
E = ErrorCode


class TransactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = TransactionConfig(
            transaction_abort_timed_out_transaction_cleanup_interval_ms=1_000,
            transaction_remove_expired_transaction_cleanup_interval_ms=5_000,
            transactional_id_expiration_ms=20_000,
        )
        self.h = Harness(config=config)
        self.known: dict[str, tuple[int, int]] = {}  # what each client was last told
        self.last_states: dict[str, TransactionState] = {}
        self.checked = 0

    def _ids(self, tid: str) -> tuple[int, int]:
        return self.known.get(tid, (999, 0))

    @rule(tid=st.sampled_from(IDS), timeout=st.sampled_from([2_000, 10_000]), kip360=st.booleans())
    def init(self, tid: str, timeout: int, kip360: bool) -> None:
        pid, epoch = self._ids(tid)
        if kip360 and tid in self.known:
            resp = self.h.init(tid, timeout, pid=pid, epoch=epoch)
        else:
            resp = self.h.init(tid, timeout)
        assert resp.error_code in (E.NONE, E.CONCURRENT_TRANSACTIONS, E.PRODUCER_FENCED)
        if resp.error_code == E.NONE:
            self.known[tid] = (resp.producer_id, resp.producer_epoch)
            assert self.h.meta(tid).state is S.EMPTY

    @rule(tid=st.sampled_from(IDS), parts=st.lists(st.sampled_from(PARTITIONS), min_size=1))
    def add(self, tid: str, parts: list[tuple[str, int]]) -> None:
        error = self.h.add_error(parts, *self._ids(tid), tid=tid)
        if error == E.NONE:
            assert set(parts) <= self.h.meta(tid).topic_partitions

    @rule(tid=st.sampled_from(IDS))
    def add_offsets(self, tid: str) -> None:
        self.h.add_offsets(*self._ids(tid), tid=tid)

    @rule(tid=st.sampled_from(IDS), commit=st.booleans())
    def end(self, tid: str, commit: bool) -> None:
        before = self.h.coordinator.transactions.get(tid)
        resp = self.h.end(*self._ids(tid), commit=commit, tid=tid)
        if resp.error_code == E.NONE and before is not None and before.state is S.ONGOING:
            assert self.h.meta(tid).state in (S.PREPARE_COMMIT, S.PREPARE_ABORT, S.COMPLETE_COMMIT)

    @rule(
        error=st.sampled_from(
            [E.NONE, E.NONE, E.NOT_LEADER_OR_FOLLOWER, E.UNKNOWN_TOPIC_OR_PARTITION]
        )
    )
    def deliver_one(self, error: ErrorCode) -> None:
        if self.h.markers:
            m = self.h.markers.pop(0)
            result = self.h.coordinator.markers_written(
                self.h.now, m.marker_id, {tp: error for tp in m.partitions}
            )
            self.h.take(result)

    @rule(ms=st.sampled_from([100, 1_500, 7_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)

    @rule()
    def restart(self) -> None:
        self.h.restart()

    @invariant()
    def table_holds(self) -> None:
        txns = self.h.coordinator.transactions
        for tid, meta in txns.items():
            assert meta.state not in (S.DEAD, S.PREPARE_EPOCH_FENCE)
            if meta.state is S.EMPTY:
                assert not meta.topic_partitions and meta.txn_start_timestamp == -1
            if meta.state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
                assert not meta.topic_partitions
            if meta.state in (S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT):
                assert meta.txn_start_timestamp >= 0
            assert 0 <= meta.producer_epoch <= 2**15 - 1
            before = self.last_states.get(tid)
            if before is not None and before is not meta.state:
                assert before in VALID_PREVIOUS_STATES[meta.state] or (
                    # several moves may happen between two checks (e.g. Ongoing->Prepare->Complete)
                    meta.state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT, S.PREPARE_ABORT, S.EMPTY)
                )
        self.last_states = {tid: m.state for tid, m in txns.items()}

    @invariant()
    def records_rebuild_the_table(self) -> None:
        live = {
            tid: dataclasses.replace(m, last_producer_epoch=-1)
            for tid, m in self.h.coordinator.transactions.items()
        }
        rebuilt = self.h.rebuilt().transactions
        # Prepared transactions shrink in memory as markers land; the log keeps the full set.
        for tid, meta in rebuilt.items():
            if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT) and tid in live:
                assert live[tid].topic_partitions <= meta.topic_partitions
                live[tid] = dataclasses.replace(live[tid], topic_partitions=meta.topic_partitions)
        assert rebuilt == live

    @invariant()
    def every_record_decodes(self) -> None:
        for record in self.h.records[self.checked :]:
            tid = decode_key(record.key)
            assert tid is not None
            assert self.h.coordinator.partition_for(tid) == record.partition
            if record.value is not None:
                meta = TransactionMetadata.from_value(tid, TransactionLogValue.decode(record.value))
                assert meta.state in (
                    S.EMPTY,
                    S.ONGOING,
                    S.PREPARE_COMMIT,
                    S.PREPARE_ABORT,
                    S.COMPLETE_COMMIT,
                    S.COMPLETE_ABORT,
                )
        self.checked = len(self.h.records)


TestTransactionMachine = TransactionMachine.TestCase
TestTransactionMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
