"""Producer state: Kafka's ProducerAppendInfo sequence/epoch rules and snapshot files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import BatchHeader
from metamorphostreams.storage import ProducerStateManager, SnapshotError
from metamorphostreams.storage.producer_state import read_snapshot, write_snapshot

from .helpers import batch

PID = 4000


def header(count: int, *, epoch: int = 0, seq: int, pid: int = PID, ts: int = 1000) -> BatchHeader:
    return BatchHeader.parse(batch(count, pid=pid, epoch=epoch, seq=seq, ts=ts))


class Log:
    """A producer state manager plus a running log end offset."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = ProducerStateManager(tmp_path, sync=False)
        self.leo = 0

    def append(self, *headers: BatchHeader) -> tuple[ErrorCode, int | None]:
        pairs = []
        offset = self.leo
        for h in headers:
            pairs.append((h, offset))
            offset += h.last_offset_delta + 1
        check = self.state.check_append(pairs)
        if check.duplicate is not None:
            return ErrorCode.NONE, check.duplicate.first_offset
        if check.error != ErrorCode.NONE:
            return check.error, None
        self.state.apply(check, offset)
        first = self.leo
        self.leo = offset
        return ErrorCode.NONE, first


def test_in_sequence_appends_and_duplicates(tmp_path: Path) -> None:
    log = Log(tmp_path)
    assert log.append(header(3, seq=0)) == (ErrorCode.NONE, 0)
    assert log.append(header(2, seq=3)) == (ErrorCode.NONE, 3)
    assert log.append(header(3, seq=0)) == (ErrorCode.NONE, 0)  # retry of the first batch
    assert log.append(header(2, seq=3)) == (ErrorCode.NONE, 3)
    assert log.leo == 5
    assert log.append(header(1, seq=6))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # gap
    assert log.append(header(1, seq=4))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # overlap
    assert log.append(header(1, seq=5)) == (ErrorCode.NONE, 5)


def test_only_last_five_batches_are_remembered(tmp_path: Path) -> None:
    log = Log(tmp_path)
    for seq in range(7):
        assert log.append(header(1, seq=seq)) == (ErrorCode.NONE, seq)
    assert log.append(header(1, seq=2)) == (ErrorCode.NONE, 2)
    assert log.append(header(1, seq=1))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_unknown_producer_may_start_at_any_sequence(tmp_path: Path) -> None:
    # Kafka 2.x+: no UNKNOWN_PRODUCER_ID from produce; a producer with no state is accepted
    log = Log(tmp_path)
    assert log.append(header(2, seq=17)) == (ErrorCode.NONE, 0)
    assert log.append(header(1, seq=19)) == (ErrorCode.NONE, 2)


def test_epochs(tmp_path: Path) -> None:
    log = Log(tmp_path)
    assert log.append(header(2, epoch=3, seq=0))[0] == ErrorCode.NONE
    assert log.append(header(1, epoch=2, seq=2))[0] == ErrorCode.INVALID_PRODUCER_EPOCH
    # a new epoch must restart at sequence 0
    assert log.append(header(1, epoch=4, seq=2))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.append(header(1, epoch=4, seq=0)) == (ErrorCode.NONE, 2)
    # the old epoch's batches are forgotten: its retry is stale, not a duplicate
    assert log.append(header(2, epoch=3, seq=0))[0] == ErrorCode.INVALID_PRODUCER_EPOCH


def test_sequence_wraps_at_int32_max(tmp_path: Path) -> None:
    log = Log(tmp_path)
    top = 2**31 - 1
    assert log.append(header(2, seq=top - 1))[0] == ErrorCode.NONE  # seqs top-1, top
    assert log.append(header(3, seq=0)) == (ErrorCode.NONE, 2)
    wrapping = header(3, seq=top - 1)  # top-1, top, 0
    assert wrapping.last_sequence == 0
    log2 = Log(tmp_path / "b")
    (tmp_path / "b").mkdir()
    assert log2.append(header(1, seq=top - 2))[0] == ErrorCode.NONE
    assert log2.append(wrapping) == (ErrorCode.NONE, 1)
    assert log2.append(header(1, seq=1)) == (ErrorCode.NONE, 4)
    assert log2.append(wrapping) == (ErrorCode.NONE, 1)


def test_several_batches_of_one_request(tmp_path: Path) -> None:
    log = Log(tmp_path)
    assert log.append(header(1, seq=0), header(2, seq=1), header(1, seq=3)) == (ErrorCode.NONE, 0)
    assert log.append(header(1, seq=4), header(1, seq=9))[0] == (
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )
    assert log.leo == 4  # nothing of the failed request was applied
    assert log.append(header(1, seq=4)) == (ErrorCode.NONE, 4)
    other = header(1, seq=0, pid=PID + 1)
    assert log.append(other, header(1, seq=5)) == (ErrorCode.NONE, 5)


def test_snapshot_round_trip_keeps_five_batches(tmp_path: Path) -> None:
    log = Log(tmp_path)
    for seq in range(0, 14, 2):
        log.append(header(2, seq=seq, ts=5000 + seq))
    log.append(header(1, seq=0, pid=77, epoch=9))
    path = log.state.take_snapshot()
    assert path is not None and path.name == "00000000000000000015.snapshot"
    assert log.state.take_snapshot() is None  # nothing new
    restored = ProducerStateManager(tmp_path, sync=False)
    assert restored.load(0, 15, now_ms=6000) == 15
    entry = restored.last_entry(PID)
    assert entry is not None
    original = log.state.last_entry(PID)
    assert original is not None
    assert list(entry.batches) == list(original.batches)
    assert len(entry.batches) == 5
    assert entry.last_timestamp == 5012
    other = restored.last_entry(77)
    assert other is not None and other.producer_epoch == 9


def test_snapshot_is_kafka_layout(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.append(header(3, seq=10, ts=777))
    data = write_snapshot(log.state.producers.values())
    version, crc, count = struct.unpack_from(">hIi", data)
    assert (version, count) == (1, 1)
    assert crc == crc32c(data[6:])
    fields = struct.unpack_from(">qhiqiqiq", data, 10)
    assert fields == (PID, 0, 12, 2, 2, 777, -1, -1)
    assert len(data) == 10 + 46


def test_corrupt_snapshot_falls_back(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.append(header(1, seq=0))
    log.state.take_snapshot()
    log.append(header(1, seq=1))
    newest = log.state.take_snapshot()
    assert newest is not None
    raw = bytearray(newest.read_bytes())
    raw[-1] ^= 0xFF
    newest.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError):
        read_snapshot(bytes(raw))
    restored = ProducerStateManager(tmp_path, sync=False)
    assert restored.load(0, 2, now_ms=0) == 1
    assert not newest.exists()
    entry = restored.last_entry(PID)
    assert entry is not None and entry.last_seq == 0


def test_load_ignores_snapshots_past_the_log_end_and_expired_producers(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.append(header(1, seq=0, ts=1000))
    log.state.take_snapshot()
    restored = ProducerStateManager(tmp_path, sync=False, producer_id_expiration_ms=500)
    assert restored.load(0, 1, now_ms=1499) == 1
    assert restored.last_entry(PID) is not None
    restored = ProducerStateManager(tmp_path, sync=False, producer_id_expiration_ms=500)
    assert restored.load(0, 1, now_ms=1500) == 1
    assert restored.last_entry(PID) is None
    restored = ProducerStateManager(tmp_path, sync=False)
    assert restored.load(0, 0, now_ms=0) == 0  # the snapshot at 1 is beyond the log end
    assert restored.snapshot_offsets() == []


def test_remove_expired_producers(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.state.producer_id_expiration_ms = 100
    log.append(header(1, seq=0, ts=1000))
    log.append(header(1, seq=0, pid=5, ts=1050))
    assert log.state.remove_expired_producers(1100) == 1
    assert set(log.state.producers) == {5}
