"""Stateful property test: PartitionLog against a list-of-batches model, through appends
(plain and idempotent, with retries), reads, rolls, DeleteRecords, size retention, and
clean or unclean restarts that may tear the active segment's tail."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import CompressionType, iter_batch_headers
from metamorphostreams.protocol.records import build_batch, iter_records
from metamorphostreams.storage import LogConfig, PartitionLog

CONFIG = LogConfig(
    segment_bytes=3000,
    index_interval_bytes=200,
    retention_bytes=6000,
    file_delete_delay_ms=0,
    segment_index_bytes=96,  # 12 offset or 8 time entries: index-full rolls happen too
)
PID = 31


@dataclass
class ModelBatch:
    base: int
    values: list[bytes]
    size: int
    seq: int = -1  # first sequence for idempotent batches

    @property
    def last(self) -> int:
        return self.base + len(self.values) - 1


@dataclass
class Model:
    batches: list[ModelBatch] = field(default_factory=list)
    log_start: int = 0
    next_offset: int = 0
    next_seq: int = 0

    def records_from(self, offset: int) -> list[tuple[int, bytes]]:
        return [
            (b.base + i, v)
            for b in self.batches
            for i, v in enumerate(b.values)
            if b.base + i >= offset
        ]


batch_values = st.lists(st.binary(max_size=400), min_size=1, max_size=4)


class PartitionLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="mms-stateful-"))
        self.path = self.root / "topic-0"
        self.clock = 1_000
        self.model = Model()
        self.last_idempotent: tuple[bytearray, int, int] | None = None
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
            log_start_offset=self.model.log_start,
            clean_shutdown=clean,
            fsync=False,
        )

    def _tick(self) -> int:
        self.clock += 7
        return self.clock

    @initialize()
    def start(self) -> None:
        assert self.log.log_end_offset == 0

    @rule(
        batches=st.lists(batch_values, min_size=1, max_size=3),
        compression=st.sampled_from([CompressionType.NONE, CompressionType.GZIP]),
    )
    def append(self, batches: list[list[bytes]], compression: CompressionType) -> None:
        now = self._tick()
        encoded = [
            build_batch([(None, v, (), now) for v in values], compression=compression)
            for values in batches
        ]
        request = bytearray(b"".join(encoded))
        result = self.log.append_as_leader(request, leader_epoch=0, now_ms=now)
        if len(request) > CONFIG.segment_bytes:
            assert result.error == ErrorCode.RECORD_LIST_TOO_LARGE
            return
        assert result.error == ErrorCode.NONE, result
        assert result.base_offset == self.model.next_offset
        for values, raw in zip(batches, encoded, strict=True):
            self.model.batches.append(ModelBatch(self.model.next_offset, values, len(raw)))
            self.model.next_offset += len(values)
        assert result.last_offset == self.model.next_offset - 1

    @rule(values=batch_values)
    def append_idempotent(self, values: list[bytes]) -> None:
        now = self._tick()
        seq = self.model.next_seq
        raw = build_batch(
            [(None, v, (), now) for v in values],
            producer_id=PID,
            producer_epoch=0,
            base_sequence=seq,
        )
        result = self.log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=now)
        assert result.error == ErrorCode.NONE, result
        assert result.base_offset == self.model.next_offset
        self.model.batches.append(ModelBatch(self.model.next_offset, values, len(raw), seq))
        self.model.next_offset += len(values)
        self.model.next_seq = seq + len(values)
        self.last_idempotent = (bytearray(raw), result.base_offset, result.last_offset)

    @precondition(lambda self: self.last_idempotent is not None)
    @rule()
    def retry_last_idempotent(self) -> None:
        assert self.last_idempotent is not None
        raw, base, last = self.last_idempotent
        result = self.log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=self._tick())
        got = (result.error, result.base_offset, result.last_offset)
        assert got == (ErrorCode.NONE, base, last), (got, base, last)

    @rule()
    def out_of_order(self) -> None:
        seq = self.model.next_seq + 1
        raw = build_batch([(None, b"x")], producer_id=PID, producer_epoch=0, base_sequence=seq)
        known = self._producer_known()
        result = self.log.append_as_leader(bytearray(raw), leader_epoch=0, now_ms=self._tick())
        if known and self.model.next_seq > 0:
            assert result.error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
            return
        assert result.error == ErrorCode.NONE
        if result.base_offset == self.model.next_offset:
            # a producer the log does not know may start at any sequence
            self.model.batches.append(ModelBatch(self.model.next_offset, [b"x"], len(raw), seq))
            self.model.next_offset += 1
            self.model.next_seq = seq + 1
        else:
            # a batch it still remembers (its data may be gone): answered as a duplicate
            assert result.base_offset < self.model.next_offset

    def _producer_known(self) -> bool:
        return self.log.producer_state.last_entry(PID) is not None

    @rule(data=st.data(), max_bytes=st.integers(0, 5000), min_one=st.booleans())
    def read(self, data: st.DataObject, max_bytes: int, min_one: bool) -> None:
        model = self.model
        offset = data.draw(st.integers(model.log_start, model.next_offset))
        result = self.log.read(
            offset, max_bytes, max_offset=self.log.high_watermark, min_one_message=min_one
        )
        assert result.error == ErrorCode.NONE
        raw = result.read_bytes()
        assert len(raw) == result.size
        headers = [h for _, h in iter_batch_headers(raw)]
        assert sum(h.size for h in headers) == len(raw)  # whole batches only
        if not headers:
            must_have = min_one or any(
                b.last >= offset and b.size <= max_bytes for b in model.batches[:1]
            )
            assert offset == model.next_offset or not min_one or not must_have
            return
        assert headers[0].base_offset <= offset <= headers[0].last_offset
        if len(raw) > max_bytes:
            assert min_one and len(headers) == 1
        for a, b in itertools.pairwise(headers):
            assert b.base_offset == a.next_offset
        got = [(r.offset, r.value or b"") for r in iter_records(raw) if r.offset >= offset]
        assert got == model.records_from(offset)[: len(got)]

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        target = data.draw(st.integers(0, self.model.next_offset + 2))
        error = self.log.delete_records_before(target)
        if target > self.model.next_offset:
            assert error == ErrorCode.OFFSET_OUT_OF_RANGE
            return
        assert error == ErrorCode.NONE
        self._sync_start(max(self.model.log_start, target))

    @rule()
    def retention(self) -> None:
        before = self.log.size_in_bytes
        deleted = self.log.enforce_retention(self._tick())
        if deleted:
            assert (
                self.log.size_in_bytes >= CONFIG.retention_bytes or before >= CONFIG.retention_bytes
            )
        self._sync_start(self.log.log_start_offset)

    def _sync_start(self, start: int) -> None:
        assert self.log.log_start_offset == start
        self.model.log_start = start
        self.model.batches = [b for b in self.model.batches if b.last >= start]

    @rule()
    def restart_clean(self) -> None:
        self.log.close()
        self.log = self._open(clean=True, recovery_point=self.log.recovery_point)

    @rule(cut=st.integers(0, 500))
    def crash(self, cut: int) -> None:
        """Reopen without closing, after losing the last ``cut`` bytes of the active segment."""
        point = self.log.recovery_point
        active = self.log.segments[-1]
        layout = [(pos + h.size, h.next_offset) for pos, h in active.iter_headers()]
        path = active.log_path
        self.log.close_handlers()
        size = path.stat().st_size
        cut = min(cut, size)
        if cut:
            with open(path, "r+b") as f:
                f.truncate(size - cut)
        self.log = self._open(clean=False, recovery_point=point)
        survivors_end = active.base_offset
        for end, next_offset in layout:
            if end > size - cut:
                break
            survivors_end = next_offset
        model = self.model
        if survivors_end < model.next_offset:
            model.batches = [b for b in model.batches if b.base < survivors_end]
            model.next_offset = survivors_end
            self.last_idempotent = None
        entry = self.log.producer_state.last_entry(PID)
        model.next_seq = entry.last_seq + 1 if entry is not None and not entry.is_empty else 0
        if model.log_start > model.next_offset:
            # Kafka: a log start offset beyond the recovered end restarts the log there
            model.next_offset = model.log_start
            model.batches = []

    @invariant()
    def offsets_agree(self) -> None:
        log, model = self.log, self.model
        assert log.log_end_offset == model.next_offset
        assert log.high_watermark == log.log_end_offset
        assert log.log_start_offset == model.log_start
        assert log.recovery_point <= log.log_end_offset
        assert sum(s.size for s in log.segments) == log.size_in_bytes
        bases = [s.base_offset for s in log.segments]
        assert bases == sorted(bases) and bases[0] <= log.log_start_offset

    @invariant()
    def everything_reads_back(self) -> None:
        offset = self.model.log_start
        got: list[tuple[int, bytes]] = []
        while offset < self.log.high_watermark:
            result = self.log.read(
                offset, 4096, max_offset=self.log.high_watermark, min_one_message=True
            )
            assert result.error == ErrorCode.NONE and result.size > 0
            records = [r for r in iter_records(result.read_bytes()) if r.offset >= offset]
            got.extend((r.offset, r.value or b"") for r in records)
            offset = records[-1].offset + 1
        want = self.model.records_from(self.model.log_start)
        assert got == want, (
            got,
            want,
            [(b.base, b.last, b.size) for b in self.model.batches],
            [(s.base_offset, s.size) for s in self.log.segments],
        )


PartitionLogMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPartitionLog = PartitionLogMachine.TestCase
