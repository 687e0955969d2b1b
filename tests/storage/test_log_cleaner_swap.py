"""The swap of cleaned segments: a crash at each step recovers to a consistent log, appends
go on while a thread cleans, the log changing under the cleaner discards its work, and a
Hypothesis model of the latest value per key."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metamorphostreams.storage import LogManager, PartitionLog
from metamorphostreams.storage._segment_swap import SWAP_FILE_SUFFIX

from .cleaner_helpers import T0, data_records, latest_values, new_cleaner, open_manager, put


def fill(
    log: PartitionLog, rounds: int = 3, keys: int = 6, *, roll_each_round: bool = True
) -> dict[bytes, bytes]:
    model: dict[bytes, bytes] = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = b"k%d" % k, b"v%d-%d" % (r, k) * 8
            put(log, [(key, value)])
            model[key] = value
        if roll_each_round:
            log.roll()
    log.roll()
    return model


def check_consistent(log: PartitionLog, model: dict[bytes, bytes]) -> None:
    records = data_records(log)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets)), "offsets must strictly increase"
    assert latest_values(records) == model
    names = os.listdir(log.dir)
    assert not [n for n in names if n.endswith((".cleaned", ".swap", ".deleted"))], names
    ends = [s.read_next_offset() for s in log.segments]
    bases = [s.base_offset for s in log.segments]
    assert all(end <= nxt for end, nxt in zip(ends, bases[1:], strict=False))


def _rename_one(path: Path, old: str, new: str) -> None:
    os.replace(path, Path(str(path)[: -len(old)] + new) if old else Path(str(path) + new))


# Each stage leaves the files as a crash right after it would; True: the swap must complete.
STAGES: dict[str, tuple[bool, Callable[[PartitionLog, object], None]]] = {}


def _stage(name: str, completes: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        STAGES[name] = (completes, fn)
        return fn

    return register


@_stage("cleaned-written", False)
def _cleaned_written(log: PartitionLog, group: object) -> None:
    pass


@_stage("log-renamed-to-swap", False)
def _log_to_swap(log: PartitionLog, group: object) -> None:
    cleaned = group.cleaned  # type: ignore[attr-defined]
    _rename_one(cleaned.log_path, ".cleaned", SWAP_FILE_SUFFIX)


@_stage("all-swap", True)
def _all_swap(log: PartitionLog, group: object) -> None:
    group.cleaned.change_suffix(SWAP_FILE_SUFFIX)  # type: ignore[attr-defined]


@_stage("first-old-log-deleted", True)
def _first_old_deleted(log: PartitionLog, group: object) -> None:
    _all_swap(log, group)
    old = group.old[0].segment  # type: ignore[attr-defined]
    _rename_one(old.log_path, "", ".deleted")


@_stage("all-old-deleted", True)
def _all_old_deleted(log: PartitionLog, group: object) -> None:
    _all_swap(log, group)
    for source in group.old:  # type: ignore[attr-defined]
        source.segment.mark_deleted()


@_stage("log-renamed-final", True)
def _log_final(log: PartitionLog, group: object) -> None:
    _all_old_deleted(log, group)
    cleaned = group.cleaned  # type: ignore[attr-defined]
    _rename_one(cleaned.log_path, SWAP_FILE_SUFFIX, "")


@pytest.mark.parametrize("stage", list(STAGES))
def test_crash_during_the_swap_recovers(tmp_path: Path, stage: str) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log)
    before = len(data_records(log))
    cleaner = new_cleaner(manager)
    task = cleaner.grab(T0)
    assert task is not None
    task.run()
    assert len(task.groups) == 1 and len(task.groups[0].old) > 1
    completes, crash = STAGES[stage]
    crash(log, task.groups[0])
    # the process dies here: no close, no clean-shutdown marker
    reopened = LogManager.open(tmp_path, manager.default_config, now_ms=T0, fsync=False)
    log2 = reopened.get_log("t", 0)
    assert log2 is not None
    check_consistent(log2, model)
    after = len(data_records(log2))
    assert (after < before) == completes
    # and the cleaner can go on from there
    new_cleaner(reopened).clean_once(T0)
    log2.delete_expired_files(T0 + 1)  # the replaced segments, after file.delete.delay.ms
    check_consistent(log2, model)
    reopened.close()


def test_appends_while_a_thread_cleans(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log, rounds=30, keys=10, roll_each_round=False)
    cleaner = new_cleaner(manager)
    task = cleaner.grab(T0)
    assert task is not None
    worker = threading.Thread(target=task.run)
    worker.start()
    for i in range(300):  # the loop's side: appends and rolls go on
        key, value = b"k%d" % (i % 13), b"live-%d" % i
        put(log, [(key, value)])
        model[key] = value
        if i % 50 == 0:
            log.roll()
    worker.join()
    assert cleaner.complete(task)
    log.delete_expired_files(T0 + 1)
    check_consistent(log, model)
    assert log.log_end_offset == 600
    manager.close()


def test_log_changed_under_the_cleaner_discards_it(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log)
    cleaner = new_cleaner(manager)
    task = cleaner.grab(T0)
    assert task is not None
    task.run()
    log.truncate_to(5)  # a follower's truncation: the old segments are gone
    assert not cleaner.complete(task)
    assert not list(log.dir.glob("*.cleaned"))
    assert len(data_records(log)) == 5
    del model
    manager.close()


def test_aborted_task_leaves_nothing(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    fill(log)
    cleaner = new_cleaner(manager)
    task = cleaner.grab(T0)
    assert task is not None
    for t in cleaner.shutdown():
        t.abort()
    with pytest.raises(Exception, match="t-0"):
        task.run()
    assert not list(log.dir.glob("*.cleaned"))
    manager.close()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7), st.binary(min_size=1, max_size=30)),
        st.tuples(st.just("delete"), st.integers(0, 7), st.just(b"")),
        st.tuples(st.just("roll"), st.just(0), st.just(b"")),
        st.tuples(st.just("clean"), st.integers(0, 3000), st.just(b"")),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_compacted_log_matches_a_model(ops: list[tuple[str, int, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        manager = open_manager(Path(tmp))
        log = manager.create_log("t", 0)
        cleaner = new_cleaner(manager)
        model: dict[bytes, bytes] = {}
        now = T0
        for op, arg, value in ops:
            if op == "put":
                put(log, [(b"key-%d" % arg, value)], now)
                model[b"key-%d" % arg] = value
            elif op == "delete":
                put(log, [(b"key-%d" % arg, None)], now)
                model.pop(b"key-%d" % arg, None)
            elif op == "roll":
                log.roll()
            else:
                now += arg
                cleaner.clean_once(now)
        log.roll()
        cleaner.clean_once(now + 10_000)
        log.delete_expired_files(now + 10_000)
        records = data_records(log)
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets))
        assert latest_values(records) == model
        below = [r for r in records if r.offset < log.active_segment.base_offset]
        assert len({r.key for r in below}) == len(below)
        manager.close()
