"""Loading after clean and unclean stops: torn tails, corruption, lost indexes, producer
state rebuilt from snapshots plus the log."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.storage import PartitionLog

from .helpers import SMALL, batch, open_log, read_headers, read_records

PID = 9


def fill(log: PartitionLog, count: int, *, value: bytes = b"x" * 300, epoch: int = 0) -> None:
    for _ in range(count):
        assert log.append_as_leader(batch(1, value=value), leader_epoch=epoch, now_ms=1).error == 0


def seg_file(log: PartitionLog, base: int, suffix: str = ".log") -> Path:
    return log.dir / f"{base:020d}{suffix}"


def test_torn_tail_is_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20))
    fill(log, 10)
    path = seg_file(log, 0)
    full = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(full - 100)  # the last batch lost its end
    with caplog.at_level(logging.WARNING, logger="metamorphostreams.storage"):
        log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20), clean=False)
    assert log.log_end_offset == 9
    assert path.stat().st_size < full - 100
    assert "torn batch" in caplog.text
    assert [h.base_offset for h in read_headers(log)] == list(range(9))
    assert log.append_as_leader(batch(1), leader_epoch=0, now_ms=2).base_offset == 9


@pytest.mark.parametrize("tail", [b"\x00" * 7, b"\xff" * 100, b"\x00" * 4096])
def test_garbage_tail_is_truncated(tmp_path: Path, tail: bytes) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20))
    fill(log, 5)
    path = seg_file(log, 0)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(tail)
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20), clean=False)
    assert log.log_end_offset == 5
    assert path.stat().st_size == size


def test_flipped_byte_drops_the_batch_and_everything_after(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    fill(log, 30)
    bases = [s.base_offset for s in log.segments]
    assert len(bases) >= 3
    victim = bases[1]
    path = seg_file(log, victim)
    with open(path, "r+b") as f:  # inside the third batch of the second segment
        third = 2 * (path.stat().st_size // (log.segments[1].read_next_offset() - victim))
        f.seek(third + 70)
        byte = f.read(1)
        f.seek(third + 70)
        f.write(bytes([byte[0] ^ 0x01]))
    log = open_log(tmp_path / "topic-0", clean=False)
    assert log.log_end_offset == victim + 2
    assert [s.base_offset for s in log.segments] == bases[:2]
    assert not seg_file(log, bases[2]).exists()
    assert [h.base_offset for h in read_headers(log)] == list(range(victim + 2))


def test_recovery_starts_at_the_recovery_point(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    fill(log, 30)
    bases = [s.base_offset for s in log.segments]
    path = seg_file(log, bases[0])
    with open(path, "r+b") as f:  # corrupt a record in the first segment
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    # the first segment is below the recovery point: trusted, not rescanned
    trusting = open_log(tmp_path / "topic-0", clean=False, recovery_point=bases[1])
    assert trusting.log_end_offset == 30
    # from zero, recovery finds it and drops everything from that batch on
    log = open_log(tmp_path / "topic-0", clean=False, recovery_point=0)
    assert log.log_end_offset == 0
    assert [s.base_offset for s in log.segments] == [0]


def test_clean_shutdown_skips_recovery(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    fill(log, 3)
    log.close()
    path = seg_file(log, 0)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    assert open_log(tmp_path / "topic-0", clean=True).log_end_offset == 3
    assert open_log(tmp_path / "topic-0", clean=False).log_end_offset == 0


@pytest.mark.parametrize("damage", ["delete", "garbage", "zero-tail", "truncate-odd"])
@pytest.mark.parametrize("suffix", [".index", ".timeindex"])
def test_missing_or_corrupt_indexes_are_rebuilt(tmp_path: Path, damage: str, suffix: str) -> None:
    config = SMALL.replace(segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config)
    for i in range(40):
        log.append_as_leader(batch(2, ts=1000 + i), leader_epoch=0, now_ms=1)
    log.close()
    path = seg_file(log, 0, suffix)
    original = path.read_bytes()
    assert len(original) > 24
    if damage == "delete":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\xff" * len(original))
    elif damage == "zero-tail":
        path.write_bytes(original + bytes(len(original)))
    else:
        path.write_bytes(original[:-3])
    log = open_log(tmp_path / "topic-0", config, clean=True)
    assert path.read_bytes() == original  # rebuilt exactly as written
    assert log.fetch_offset_by_timestamp(1020) == (40, 1020, 0)
    assert [r.offset for r in read_records(log, 57)] == list(range(57, 80))


def test_index_files_are_not_preallocated(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20))
    fill(log, 5)
    index = seg_file(log, 0, ".index")
    assert index.stat().st_size == 8 * log.segments[0].offset_index.entries
    assert index.stat().st_size % 8 == 0 and seg_file(log, 0, ".timeindex").stat().st_size % 12 == 0


def test_stale_files_are_cleaned_on_open(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    fill(log, 3)
    log.close()
    (log.dir / f"{0:020d}.log.deleted").write_bytes(b"old")
    (log.dir / f"{500:020d}.index").write_bytes(b"")  # orphan index
    (log.dir / "recovery-point-offset-checkpoint.tmp").write_bytes(b"")
    open_log(tmp_path / "topic-0")
    names = os.listdir(log.dir)
    assert not any(n.endswith((".deleted", ".tmp")) for n in names)
    assert f"{500:020d}.index" not in names


def test_leader_epochs_follow_recovery(tmp_path: Path) -> None:
    config = SMALL.replace(segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config)
    fill(log, 3, epoch=1)
    fill(log, 3, epoch=2)
    path = seg_file(log, 0)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 10)  # lose offset 5: epoch 2 still starts at 3
    log = open_log(tmp_path / "topic-0", config, clean=False)
    assert log.leader_epochs.entries() == [(1, 0), (2, 3)]
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1000)
    log = open_log(tmp_path / "topic-0", config, clean=False)
    assert log.log_end_offset < 3
    assert log.leader_epochs.entries() == [(1, 0)]
    # recovery also rebuilds a lost epoch checkpoint from the batches
    (log.dir / "leader-epoch-checkpoint").unlink()
    log = open_log(tmp_path / "topic-0", config, clean=False)
    assert log.leader_epochs.entries() == [(1, 0)]


def test_log_start_offset_checkpoint(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0")
    fill(log, 30)
    assert open_log(tmp_path / "topic-0", log_start_offset=7).log_start_offset == 7
    assert open_log(tmp_path / "topic-0", log_start_offset=None).log_start_offset == 0
    # a start beyond the end (everything was deleted before a crash): start over there
    log = open_log(tmp_path / "topic-0", log_start_offset=100)
    assert (log.log_start_offset, log.log_end_offset) == (100, 100)
    assert [s.base_offset for s in log.segments] == [100]


def idempotent(seq: int, count: int = 1, epoch: int = 0) -> bytearray:
    return batch(count, pid=PID, epoch=epoch, seq=seq)


@pytest.mark.parametrize("clean", [True, False])
def test_producer_state_survives_restart(tmp_path: Path, clean: bool) -> None:
    log = open_log(tmp_path / "topic-0")
    for seq in range(0, 60, 2):  # rolls several segments (snapshots at each roll)
        assert log.append_as_leader(idempotent(seq, 2), leader_epoch=0, now_ms=1).error == 0
    if clean:
        log.close()
    log = open_log(tmp_path / "topic-0", clean=clean)
    # the last five batches are still recognised, with their original offsets
    for seq in (50, 58):
        result = log.append_as_leader(idempotent(seq, 2), leader_epoch=0, now_ms=2)
        assert (result.error, result.base_offset, result.last_offset) == (0, seq, seq + 1)
    assert log.log_end_offset == 60
    bad = log.append_as_leader(idempotent(61), leader_epoch=0, now_ms=2)
    assert bad.error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.append_as_leader(idempotent(60), leader_epoch=0, now_ms=2).base_offset == 60


def test_producer_state_without_any_snapshot(tmp_path: Path) -> None:
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20))
    for seq in range(5):
        log.append_as_leader(idempotent(seq), leader_epoch=0, now_ms=1)
    assert not any(p.suffix == ".snapshot" for p in log.dir.iterdir())
    log = open_log(tmp_path / "topic-0", SMALL.replace(segment_bytes=1 << 20), clean=False)
    assert log.append_as_leader(idempotent(2), leader_epoch=0, now_ms=1).base_offset == 2
    assert log.append_as_leader(idempotent(5), leader_epoch=0, now_ms=1).base_offset == 5
    # the rebuilt state was snapshotted at the log end
    assert (log.dir / f"{5:020d}.snapshot").exists()


def test_truncated_tail_forgets_its_producer_batches(tmp_path: Path) -> None:
    config = SMALL.replace(segment_bytes=1 << 20)
    log = open_log(tmp_path / "topic-0", config)
    for seq in range(4):
        log.append_as_leader(idempotent(seq), leader_epoch=0, now_ms=1)
    log.close()  # snapshot at 4
    path = seg_file(log, 0)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 5)
    log = open_log(tmp_path / "topic-0", config, clean=False)
    assert log.log_end_offset == 3
    assert not (log.dir / f"{4:020d}.snapshot").exists()  # beyond the log end: dropped
    # seq 3 was lost with the tail, so it is appended again rather than deduplicated
    assert log.append_as_leader(idempotent(3), leader_epoch=0, now_ms=1).base_offset == 3
