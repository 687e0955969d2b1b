"""LogManager: data-dir files, clean/unclean restarts, deletion, periodic work."""

from __future__ import annotations

import os
from pathlib import Path

from metamorphostreams.storage import LogConfig, LogManager

from .helpers import SMALL, batch


def open_manager(data: Path, **kw: object) -> LogManager:
    return LogManager.open(data, SMALL, now_ms=1_000, fsync=False, **kw)  # type: ignore[arg-type]


def test_layout_and_clean_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    assert not manager.had_clean_shutdown
    orders = manager.create_log("orders", 0)
    manager.create_log("orders", 1)
    manager.create_log("my.topic-x", 12)
    assert manager.create_log("orders", 0) is orders
    for i in range(30):
        orders.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1_000 + i)
    orders.delete_records_before(12)
    manager.close()
    names = sorted(os.listdir(data))
    assert names == [
        ".kafka_cleanshutdown",
        "log-start-offset-checkpoint",
        "my.topic-x-12",
        "orders-0",
        "orders-1",
        "recovery-point-offset-checkpoint",
    ]
    assert (data / "recovery-point-offset-checkpoint").read_text() == (
        "0\n3\nmy.topic-x 12 0\norders 0 30\norders 1 0\n"
    )
    assert (data / "log-start-offset-checkpoint").read_text() == (
        "0\n3\nmy.topic-x 12 0\norders 0 12\norders 1 0\n"
    )
    assert "leader-epoch-checkpoint" in os.listdir(data / "orders-1")

    manager = open_manager(data)
    assert manager.had_clean_shutdown
    assert not (data / ".kafka_cleanshutdown").exists()  # removed right after loading
    assert {(log.topic, log.partition) for log in manager.all_logs()} == {
        ("orders", 0),
        ("orders", 1),
        ("my.topic-x", 12),
    }
    orders = manager.get_log("orders", 0)
    assert orders is not None
    assert (orders.log_start_offset, orders.log_end_offset) == (12, 30)
    assert manager.get_log("orders", 7) is None


def test_unclean_restart_recovers_from_checkpoints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    log = manager.create_log("t", 0)
    for _ in range(30):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1_000)
    assert log.recovery_point == 0  # rolled segments are flushed later, off the append path
    assert manager.flush_dirty(1_000) == 1
    manager.checkpoint_recovery_points()
    point = log.recovery_point
    assert point == log.segments[-1].base_offset
    active = data / "t-0" / f"{log.segments[-1].base_offset:020d}.log"
    with open(active, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00junk")
    # no close(): the process "died"
    manager = open_manager(data)
    assert not manager.had_clean_shutdown
    log2 = manager.get_log("t", 0)
    assert log2 is not None
    assert log2.log_end_offset == 30
    assert log2.recovery_point == point


def test_missing_and_corrupt_checkpoints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    log = manager.create_log("t", 0)
    for _ in range(10):
        log.append_as_leader(batch(1, value=b"x" * 300), leader_epoch=0, now_ms=1_000)
    log.delete_records_before(4)
    manager.close()
    (data / "recovery-point-offset-checkpoint").write_text("this is not a checkpoint")
    (data / "log-start-offset-checkpoint").unlink()
    manager = open_manager(data)
    log = manager.get_log("t", 0)
    assert log is not None
    assert log.log_end_offset == 10
    assert log.log_start_offset == log.segments[0].base_offset  # back to the first segment


def test_delete_log_renames_then_removes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    log = manager.create_log("gone", 3, SMALL.replace(file_delete_delay_ms=5_000))
    log.append_as_leader(batch(1), leader_epoch=0, now_ms=1_000)
    assert manager.delete_log("gone", 3, now_ms=2_000)
    assert manager.get_log("gone", 3) is None
    (pending,) = [n for n in os.listdir(data) if n.startswith("gone-3.")]
    assert pending.endswith("-delete") and len(pending) == len("gone-3.") + 32 + len("-delete")
    manager.run_retention(6_999)
    assert (data / pending).exists()
    manager.run_retention(7_000)
    assert not (data / pending).exists()
    assert not manager.delete_log("gone", 3)
    manager.create_log("now", 0)
    assert manager.delete_log("now", 0)
    assert not any(n.startswith("now-0") for n in os.listdir(data))


def test_unfinished_deletions_are_finished_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "old-0.0123456789abcdef0123456789abcdef-delete").mkdir(parents=True)
    (data / "old-0.0123456789abcdef0123456789abcdef-delete" / "x.log").write_bytes(b"x")
    (data / "not a partition").mkdir()
    manager = open_manager(data)
    assert manager.all_logs() == []
    assert not (data / "old-0.0123456789abcdef0123456789abcdef-delete").exists()


def test_topic_configs_and_periodic_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    short = SMALL.replace(retention_ms=1_000, flush_ms=500, segment_ms=100)
    manager = LogManager.open(
        data, LogConfig(), now_ms=0, topic_configs={"short": short}, fsync=False
    )
    log = manager.create_log("short", 0, now_ms=0)
    other = manager.create_log("long", 0, now_ms=0)
    assert log.config == short and other.config == LogConfig()
    for t in (0, 200, 400):
        log.append_as_leader(batch(1, ts=t), leader_epoch=0, now_ms=t)
    assert len(log.segments) == 3
    assert log.recovery_point == 0
    assert manager.flush_dirty(499) == 1  # the rolled segments
    assert log.recovery_point == 2
    assert manager.flush_dirty(499) == 0
    assert manager.flush_dirty(500) == 1  # flush.ms: everything
    assert log.recovery_point == 3
    assert manager.run_retention(1_101) == 1
    assert log.log_start_offset == 1
    manager.close()
    manager = LogManager.open(data, LogConfig(), now_ms=0, topic_configs=lambda t: short)
    reopened = manager.get_log("short", 0)
    assert reopened is not None and reopened.config == short
    assert reopened.log_start_offset == 1
