"""Kafka's checkpoint text formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from metamorphostreams.storage import (
    CheckpointError,
    LeaderEpochCheckpointFile,
    OffsetCheckpointFile,
)


def test_offset_checkpoint_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-offset-checkpoint"
    OffsetCheckpointFile(path).write({("orders", 1): 99, ("orders", 0): 1234, ("a.b-c", 7): 0})
    assert path.read_text() == "0\n3\na.b-c 7 0\norders 0 1234\norders 1 99\n"
    assert OffsetCheckpointFile(path).read() == {
        ("orders", 0): 1234,
        ("orders", 1): 99,
        ("a.b-c", 7): 0,
    }
    assert not (tmp_path / "recovery-point-offset-checkpoint.tmp").exists()


def test_offset_checkpoint_reads_kafka_written_file(tmp_path: Path) -> None:
    path = tmp_path / "log-start-offset-checkpoint"
    path.write_text("0\n2\n__consumer_offsets 12 0\nt 0 42\n")
    assert OffsetCheckpointFile(path).read() == {("__consumer_offsets", 12): 0, ("t", 0): 42}


def test_missing_and_empty_checkpoints(tmp_path: Path) -> None:
    assert OffsetCheckpointFile(tmp_path / "nope").read() == {}
    empty = tmp_path / "leader-epoch-checkpoint"
    empty.write_bytes(b"")
    assert LeaderEpochCheckpointFile(empty).read() == []


@pytest.mark.parametrize(
    "text",
    ["1\n0\n", "0\n2\nt 0 1\n", "0\n1\nt 0\n", "0\n1\nt x 1\n", "garbage", "0\n"],
)
def test_malformed_checkpoints(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cp"
    path.write_text(text)
    with pytest.raises(CheckpointError):
        OffsetCheckpointFile(path).read()


def test_leader_epoch_checkpoint_text(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    LeaderEpochCheckpointFile(path).write([(0, 0), (3, 120)])
    assert path.read_text() == "0\n2\n0 0\n3 120\n"
    assert LeaderEpochCheckpointFile(path).read() == [(0, 0), (3, 120)]
