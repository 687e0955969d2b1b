"""LogManager's ``replication-offset-checkpoint``: the high watermarks of its logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from metamorphostreams.storage import LogManager

from .helpers import SMALL, batch

CHECKPOINT = "replication-offset-checkpoint"


def open_manager(data: Path) -> LogManager:
    return LogManager.open(data, SMALL, now_ms=1_000, fsync=False)


def test_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    orders = manager.create_log("orders", 0)
    manager.create_log("orders", 1)
    manager.create_log("my.topic-x", 12)
    orders.hw_follows_leo = False
    for i in range(5):
        orders.append_as_leader(batch(2), leader_epoch=0, now_ms=1_000 + i)
    assert orders.update_high_watermark(6) == 6
    assert not (data / CHECKPOINT).exists()  # written only when asked
    manager.checkpoint_high_watermarks()
    assert (data / CHECKPOINT).read_text() == ("0\n3\nmy.topic-x 12 0\norders 0 6\norders 1 0\n")
    manager.close()

    manager = open_manager(data)
    assert manager.checkpointed_high_watermark("orders", 0) == 6
    assert manager.checkpointed_high_watermark("orders", 1) == 0
    assert manager.checkpointed_high_watermark("my.topic-x", 12) == 0
    assert manager.checkpointed_high_watermark("orders", 2) is None
    reopened = manager.get_log("orders", 0)
    assert reopened is not None
    assert (
        reopened.update_high_watermark(manager.checkpointed_high_watermark("orders", 0) or 0) == 6
    )
    reopened.append_as_leader(batch(1), leader_epoch=0, now_ms=2_000)
    manager.checkpoint_high_watermarks()
    assert "orders 0 11\n" in (data / CHECKPOINT).read_text()  # hw_follows_leo again


def test_entries_of_missing_logs_are_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    manager.create_log("orders", 0)
    manager.close()
    (data / CHECKPOINT).write_text("0\n2\norders 0 0\ngone 3 42\n")
    manager = open_manager(data)
    assert manager.checkpointed_high_watermark("orders", 0) == 0
    assert manager.checkpointed_high_watermark("gone", 3) is None
    manager.checkpoint_high_watermarks()
    assert (data / CHECKPOINT).read_text() == "0\n1\norders 0 0\n"


def test_missing_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    manager.create_log("orders", 0)
    manager.close()
    manager = open_manager(data)
    assert manager.checkpointed_high_watermark("orders", 0) is None


@pytest.mark.parametrize(
    "content",
    [b"0\n3\norders 0 5\n", b"1\n1\norders 0 5\n", b"0\n1\norders zero 5\n", b"\xff\xfe\x00"],
)
def test_corrupt_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    data = tmp_path / "data"
    manager = open_manager(data)
    manager.create_log("orders", 0).append_as_leader(batch(1), leader_epoch=0, now_ms=1)
    manager.close()
    (data / CHECKPOINT).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="metamorphostreams.storage"):
        manager = open_manager(data)
    assert manager.checkpointed_high_watermark("orders", 0) is None
    assert any(CHECKPOINT in r.getMessage() for r in caplog.records)
    orders = manager.get_log("orders", 0)
    assert orders is not None and orders.high_watermark == 1  # the log itself is fine
    manager.checkpoint_high_watermarks()
    assert (data / CHECKPOINT).read_text() == "0\n1\norders 0 1\n"
