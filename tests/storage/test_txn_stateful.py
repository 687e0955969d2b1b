"""Stateful property test of transactions: transactional and plain appends of a few
producers, COMMIT/ABORT markers, rolls, truncations and restarts (clean, or after a crash
that may tear the active segment and lose transaction indexes), against a model that
replays its list of batches. Checks the last stable offset, the ongoing transactions, every
``.txnindex`` entry and ``collect_aborted_transactions``."""

from __future__ import annotations

import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.records import build_batch
from metamorphostreams.storage import LogConfig, PartitionLog

CONFIG = LogConfig(
    segment_bytes=900,
    index_interval_bytes=150,
    file_delete_delay_ms=0,
    segment_index_bytes=96,
)
PIDS = (1, 2, 3)


@dataclass(frozen=True)
class Batch:
    base: int
    last: int
    pid: int  # -1: no producer
    kind: str  # "txn", "plain" or "marker"
    commit: bool = False
    seq: int = -1  # first sequence of data batches with a producer

    @property
    def count(self) -> int:
        return self.last - self.base + 1


@dataclass
class Derived:
    ongoing: dict[int, int]  # producer id -> first offset
    aborted: list[tuple[int, int, int, int]]  # (pid, first, last, last stable offset)
    next_seq: dict[int, int]
    end: int


def derive(batches: list[Batch]) -> Derived:
    """What the log must know after exactly these batches (Kafka's rules, from scratch)."""
    ongoing: dict[int, int] = {}
    aborted: list[tuple[int, int, int, int]] = []
    next_seq = dict.fromkeys(PIDS, 0)
    for b in batches:
        if b.kind == "marker":
            if b.pid in ongoing:
                first = ongoing.pop(b.pid)
                if not b.commit:
                    others = sorted(ongoing.values())
                    aborted.append((b.pid, first, b.base, others[0] if others else b.base + 1))
        elif b.pid >= 0:
            next_seq[b.pid] = b.seq + b.count
            if b.kind == "txn" and b.pid not in ongoing:
                ongoing[b.pid] = b.base
    end = batches[-1].last + 1 if batches else 0
    return Derived(ongoing, aborted, next_seq, end)


class TransactionsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="mms-txn-stateful-"))
        self.path = self.root / "topic-0"
        self.clock = 1_000
        self.batches: list[Batch] = []
        self.log = self._open(clean=True, recovery_point=0)

    def teardown(self) -> None:
        self.log.close_handlers()
        shutil.rmtree(self.root, ignore_errors=True)

    def _open(self, *, clean: bool, recovery_point: int) -> PartitionLog:
        return PartitionLog.open(
            self.path,
            "topic",
            0,
            CONFIG,
            now_ms=self.clock,
            recovery_point=recovery_point,
            log_start_offset=0,
            clean_shutdown=clean,
            fsync=False,
        )

    def _tick(self) -> int:
        self.clock += 5
        return self.clock

    @property
    def state(self) -> Derived:
        return derive(self.batches)

    def _data(self, pid: int, count: int, *, transactional: bool) -> None:
        state = self.state
        seq = state.next_seq[pid] if pid >= 0 else -1
        now = self._tick()
        raw = build_batch(
            [(b"k", b"v" * 60, (), now)] * count,
            producer_id=pid,
            producer_epoch=0 if pid >= 0 else -1,
            base_sequence=seq,
            is_transactional=transactional,
        )
        result = self.log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=now)
        if not transactional and pid in state.ongoing:
            assert result.error == ErrorCode.INVALID_TXN_STATE, result
            return
        assert result.error == ErrorCode.NONE, result
        assert result.base_offset == state.end
        kind = "txn" if transactional else "plain"
        self.batches.append(Batch(state.end, state.end + count - 1, pid, kind, seq=seq))

    @rule(pid=st.sampled_from(PIDS), count=st.integers(1, 3))
    def append_transactional(self, pid: int, count: int) -> None:
        self._data(pid, count, transactional=True)

    @rule(pid=st.sampled_from((-1, *PIDS)), count=st.integers(1, 3))
    def append_plain(self, pid: int, count: int) -> None:
        self._data(pid, count, transactional=False)

    @rule(data=st.data(), commit=st.booleans())
    def end_transaction(self, data: st.DataObject, commit: bool) -> None:
        ongoing = sorted(self.state.ongoing)
        # mostly a producer in a transaction; sometimes one without (a marker all the same)
        pool = ongoing if ongoing and data.draw(st.integers(0, 3)) else list(PIDS)
        pid = data.draw(st.sampled_from(pool))
        end = self.state.end
        result = self.log.append_control_marker(
            pid, 0, commit=commit, coordinator_epoch=0, leader_epoch=0, now_ms=self._tick()
        )
        assert (result.error, result.base_offset) == (ErrorCode.NONE, end), result
        self.batches.append(Batch(end, end, pid, "marker", commit=commit))

    @rule()
    def roll(self) -> None:
        self.log.roll(self._tick())

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        end = self.state.end
        offset = data.draw(st.integers(max(0, end - 12), end) | st.integers(0, end))
        assert self.log.truncate_to(offset) == (offset < end)
        self.batches = [b for b in self.batches if b.last < offset]
        self.log.delete_expired_files(self._tick())

    @rule()
    def restart_clean(self) -> None:
        self.log.close()
        self.log = self._open(clean=True, recovery_point=self.log.recovery_point)

    @rule(data=st.data(), cut=st.integers(0, 300))
    def crash(self, data: st.DataObject, cut: int) -> None:
        """Reopen without closing: the active segment may lose its last ``cut`` bytes, and
        the segments to recover lose their ``.txnindex`` (recovery must rebuild them)."""
        log = self.log
        point = data.draw(st.integers(0, log.log_end_offset))
        recovered_from = max(s.base_offset for s in log.segments if s.base_offset <= point)
        active = log.segments[-1]
        layout = [(pos + h.size, h.next_offset) for pos, h in active.iter_headers()]
        path = active.log_path
        log.close_handlers()
        size = path.stat().st_size
        cut = min(cut, size)
        if cut:
            with open(path, "r+b") as f:
                f.truncate(size - cut)
        for txn_path in self.path.glob("*.txnindex"):
            if int(txn_path.name[:20]) >= recovered_from:
                txn_path.unlink()
        self.log = self._open(clean=False, recovery_point=point)
        survivors_end = active.base_offset
        for end, next_offset in layout:
            if end > size - cut:
                break
            survivors_end = next_offset
        self.batches = [b for b in self.batches if b.last < survivors_end]

    @rule(data=st.data())
    def collect(self, data: st.DataObject) -> None:
        end = self.state.end
        start = data.draw(st.integers(0, end))
        upper = data.draw(st.integers(start, end + 1))
        want = [
            (pid, first)
            for pid, first, last, _ in self.state.aborted
            if last >= start and first < upper
        ]
        assert self.log.collect_aborted_transactions(start, upper) == want

    @invariant()
    def offsets_agree(self) -> None:
        state, log = self.state, self.log
        assert log.log_end_offset == log.high_watermark == state.end
        first_unstable = min(state.ongoing.values(), default=state.end)
        assert log.last_stable_offset == first_unstable
        assert dict(log.producer_state.ongoing_txns) == {f: p for p, f in state.ongoing.items()}
        starts = {p.producer_id: p.current_txn_start_offset for p in log.active_producers()}
        for pid, first in state.ongoing.items():
            assert starts[pid] == first

    @invariant()
    def txn_indexes_agree(self) -> None:
        on_disk: list[tuple[int, int, int, int]] = []
        cached: list[tuple[int, int, int, int]] = []
        for segment in self.log.segments:
            cached.extend(tuple(t) for t in segment.txn_index.entries)
            path = segment.txn_index.path
            if path.exists():
                raw = path.read_bytes()
                assert len(raw) % 34 == 0
                for pos in range(0, len(raw), 34):
                    version, *fields = struct.unpack_from(">hqqqq", raw, pos)
                    assert version == 0
                    on_disk.append((fields[0], fields[1], fields[2], fields[3]))
                    assert segment.base_offset <= fields[2]
        assert on_disk == cached == self.state.aborted


TransactionsMachine.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTransactions = TransactionsMachine.TestCase
