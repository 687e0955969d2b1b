"""Failing system calls under the partition log: every write, fsync, truncate, open and
rename the storage layer makes may fail (a full disk, an I/O error). Hypothesis picks the
operations and which call fails; afterwards the log must hold exactly what was acknowledged,
never a partial batch, and keep taking appends once the calls succeed again.

This is the in-process, deterministic companion of the tmpfs test: a real full disk fails
whichever write happens to cross the limit, here each kind of call gets its turn.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol.records import build_batch, iter_records
from metamorphostreams.storage import LogConfig, PartitionLog

from .conftest import Figures
from .support import index_problems, scan_segment

KAFKA_STORAGE_ERROR = 56
FAULT_KINDS = ("pwrite", "fsync", "ftruncate", "open", "replace")
CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=256, file_delete_delay_ms=0)


@dataclass
class Faults:
    """Counts storage system calls by kind; makes the ``fail_at``-th call of ``kind`` (and,
    when ``sticky``, every later one: a disk that stays full) raise."""

    root: str
    kind: str | None = None
    fail_at: int = 0
    sticky: bool = False
    calls: dict[str, int] = field(default_factory=dict)
    fired: int = 0

    def arm(self, kind: str | None, fail_at: int, sticky: bool) -> None:
        self.kind, self.fail_at, self.sticky = kind, fail_at, sticky
        self.calls = {}

    def check(self, kind: str) -> None:
        n = self.calls.get(kind, 0)
        self.calls[kind] = n + 1
        if kind == self.kind and (n == self.fail_at or (self.sticky and n > self.fail_at)):
            self.fired += 1
            code = errno.ENOSPC if kind in ("pwrite", "open", "replace") else errno.EIO
            raise OSError(code, os.strerror(code))


@contextmanager
def injected(faults: Faults) -> Iterator[None]:
    """Wrap the ``os`` functions the storage layer calls (only for paths under our root,
    where a path is given)."""
    real = {name: getattr(os, name) for name in ("pwrite", "fsync", "ftruncate", "open", "replace")}

    def wrap(name: str, kind: str, by_path: bool) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not by_path or str(args[0]).startswith(faults.root):
                faults.check(kind)
            return real[name](*args, **kwargs)

        return call

    os.pwrite = wrap("pwrite", "pwrite", False)
    os.fsync = wrap("fsync", "fsync", False)
    os.ftruncate = wrap("ftruncate", "ftruncate", False)
    os.open = wrap("open", "open", True)
    os.replace = wrap("replace", "replace", True)
    try:
        yield
    finally:
        for name, fn in real.items():
            setattr(os, name, fn)


def _batch(values: list[bytes]) -> bytearray:
    return bytearray(build_batch([(None, v, (), 1_000 + i) for i, v in enumerate(values)]))


def _open(path: Path, config: LogConfig, clean: bool) -> PartitionLog:
    return PartitionLog.open(
        path,
        "t",
        0,
        config,
        now_ms=1_000,
        recovery_point=0,
        log_start_offset=None,
        clean_shutdown=clean,
        fsync=True,
    )


def _values(log: PartitionLog) -> list[bytes]:
    out: list[bytes] = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        result = log.read(offset, 1 << 20, max_offset=log.high_watermark, min_one_message=True)
        assert result.error == 0 and result.size > 0, result
        records = [r for r in iter_records(result.read_bytes()) if r.offset >= offset]
        assert records and records[0].offset == offset, f"gap at {offset}"
        out.extend(bytes(r.value or b"") for r in records)
        offset = records[-1].offset + 1
    return out


def _check(log: PartitionLog, model: list[bytes]) -> None:
    assert log.log_end_offset == len(model), (log.log_end_offset, len(model))
    assert _values(log) == model
    for segment in log.segments:
        scan = scan_segment(segment.log_path)
        whole = sum(b.size for b in scan.batches)
        # bytes past ``size`` may only linger when cutting them back failed (ftruncate)
        assert whole >= segment.size, f"{segment}: {scan.problem}"


Op = tuple[str, int, int, str | None, int, bool]  # name, records, value size, fault...

ops = st.lists(
    st.tuples(
        st.sampled_from(["append"] * 6 + ["flush", "roll", "reopen"]),
        st.integers(1, 8),
        st.integers(0, 400),  # 8 records of 400 bytes: a batch still fits a 4 KiB segment
        st.one_of(st.none(), st.sampled_from(FAULT_KINDS)),
        st.integers(0, 3),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)

STATS: dict[str, int] = {"examples": 0, "operations": 0, "faults fired": 0, "failed appends": 0}


@settings(
    max_examples=150,
    deadline=None,
    database=None,  # keep the shared work tree free of example databases
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=ops, flush_each=st.booleans())
def _run_with_faults(ops: list[Op], flush_each: bool) -> None:
    config = CONFIG.replace(flush_messages=1) if flush_each else CONFIG
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t-0"
        faults = Faults(root=tmp)
        log = _open(path, config, clean=True)
        model: list[bytes] = []
        STATS["examples"] += 1
        with injected(faults):
            for name, count, size, kind, fail_at, sticky in ops:
                STATS["operations"] += 1
                values = [b"%d:" % (len(model) + i) + b"v" * size for i in range(count)]
                faults.arm(kind, fail_at, sticky)
                if name == "append":
                    result = log.append_as_leader(_batch(values), leader_epoch=0, now_ms=2_000)
                    if result.error == 0:
                        model.extend(values)
                    else:
                        assert result.error == KAFKA_STORAGE_ERROR, result
                        assert faults.fired, "an append failed without a fault"
                        STATS["failed appends"] += 1
                elif name == "flush":
                    try:
                        log.flush()
                    except OSError:
                        assert faults.fired
                elif name == "roll":
                    try:
                        log.roll(2_000)
                    except OSError:
                        assert faults.fired
                else:
                    clean = True
                    try:
                        log.close()
                    except OSError:
                        clean = False
                    faults.arm(None, 0, False)
                    log = _open(path, config, clean=clean)
                faults.arm(None, 0, False)
                _check(log, model)
                # the disk is fine again: the next append must work
                if name == "append" and kind is not None:
                    more = [b"%d:after" % len(model)]
                    result = log.append_as_leader(_batch(more), leader_epoch=0, now_ms=2_000)
                    assert result.error == 0, f"no recovery from the fault: {result}"
                    model.extend(more)
                    _check(log, model)
            STATS["faults fired"] += faults.fired
        log.close()
        for clean in (True, False):  # a clean reopen, and a full recovery, keep it all
            log = _open(path, config, clean=clean)
            _check(log, model)
            log.close()
        for segment_path in sorted(path.glob("*.log")):
            scan = scan_segment(segment_path)
            assert scan.clean, f"{segment_path}: {scan.problem}"
            assert not index_problems(segment_path, scan), index_problems(segment_path, scan)


@pytest.mark.timeout(240)
def test_failed_writes_fsyncs_and_rolls_leave_a_usable_log(figures: Figures) -> None:
    _run_with_faults()
    for name, value in STATS.items():
        figures(name, value)
