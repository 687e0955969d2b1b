"""Torn and corrupt files: the broker is stopped (killed or cleanly), its files are damaged
the ways disks and crashes damage them, and it must start, keep every intact batch before the
damage, truncate from the first bad batch, rebuild indexes, say what it did in its log, and
then serve reads and writes.

Each case runs one broker with several topics, one kind of damage per topic, so one restart
checks many damages. Segments are small (``log.segment.bytes``) so every topic has several,
and index entries are dense (``log.index.interval.bytes``) so lookups go through them.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import consume_all, create_topic, offset_of, value_of

from .conftest import Figures
from .support import (
    OFFSET_ENTRY,
    SegmentScan,
    index_problems,
    last_start_log,
    scan_partition,
    segment_files,
)

BATCHES = 300  # per topic: about 5 MB, so 5 segments of Kafka's minimum size
RECORDS_PER_BATCH = 4
SETTINGS = {
    "log.segment.bytes": 1024 * 1024,  # Kafka's minimum: several segments per topic
    "log.index.interval.bytes": 40_000,  # an index entry every few batches
    "offsets.topic.num.partitions": 1,
    "group.initial.rebalance.delay.ms": 0,
}


@dataclass
class Written:
    """What was acknowledged for one topic: (base offset, ids) per batch."""

    topic: str
    batches: list[tuple[int, list[int]]]

    @property
    def ids(self) -> list[int]:
        return [i for _, ids in self.batches for i in ids]

    def ids_below(self, offset: int) -> list[int]:
        return [i for base, ids in self.batches for n, i in enumerate(ids) if base + n < offset]


def _batch(ids: list[int]) -> bytes:
    """Batches of varied sizes (1-7 KB values), so damage lands at varied places."""
    records = [
        wire.Record(None, b"id-%06d-" % i + b"." * (1000 * (i % 7 + 1)), (), n)
        for n, i in enumerate(ids)
    ]
    return wire.build_record_batch(records, base_timestamp=int(time.time() * 1000))


def _produce(conn: wire.WireConnection, topic: str, ids: list[int]) -> int:
    response = wire.produce_partition_response(
        conn.request(wire.produce_request(topic, 0, _batch(ids)))
    )
    assert response.error_code == wire.NONE, f"produce to {topic}: {response}"
    return int(response.base_offset)


def _write_topic(broker: BrokerProcess, topic: str) -> Written:
    create_topic(broker.bootstrap, topic, 1)
    written = Written(topic, [])
    with wire.WireConnection(broker.bootstrap) as conn:
        for b in range(BATCHES):
            ids = list(range(b * RECORDS_PER_BATCH, (b + 1) * RECORDS_PER_BATCH))
            written.batches.append((_produce(conn, topic, ids), ids))
    return written


# --------------------------------------------------------------------------- damages

# A damage edits one partition directory and returns the log end offset the broker must
# come back with (everything below it intact, nothing at or above it).
Damage = Callable[[Path, random.Random], int]


def _active(partition_dir: Path) -> SegmentScan:
    scans = scan_partition(partition_dir)
    assert all(s.clean for s in scans), f"damaged before the damage: {scans}"
    return scans[-1] if scans[-1].batches else scans[-2]


def torn_tail(partition_dir: Path, rng: random.Random) -> int:
    """The last batch of the active segment loses its second half (a torn write)."""
    scan = _active(partition_dir)
    last = scan.batches[-1]
    with open(scan.path, "r+b") as f:
        f.truncate(last.position + rng.randrange(1, last.size))
    return last.base_offset


def garbage_tail(partition_dir: Path, rng: random.Random) -> int:
    """Random bytes after the last batch (preallocated or recycled blocks)."""
    scan = _active(partition_dir)
    with open(scan.path, "ab") as f:
        f.write(rng.randbytes(1500))
    return scan.batches[-1].last_offset + 1


def zero_tail(partition_dir: Path, rng: random.Random) -> int:
    """Zeros after the last batch (a file extended but never written)."""
    scan = _active(partition_dir)
    with open(scan.path, "ab") as f:
        f.write(bytes(4096))
    return scan.batches[-1].last_offset + 1


def _flip_in(scan: SegmentScan, index: int, rng: random.Random) -> int:
    batch = scan.batches[index]
    at = batch.position + rng.randrange(61, batch.size)  # inside the records: CRC-covered
    with open(scan.path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ (1 << rng.randrange(8))]))
    return batch.base_offset


def flipped_byte_active(partition_dir: Path, rng: random.Random) -> int:
    """One bit flipped inside a batch in the middle of the active segment."""
    scan = _active(partition_dir)
    return _flip_in(scan, len(scan.batches) // 2, rng)


def flipped_byte_older(partition_dir: Path, rng: random.Random) -> int:
    """One bit flipped inside the second segment: it and every later segment must go."""
    scans = scan_partition(partition_dir)
    assert len(scans) >= 4, f"expected several segments, got {len(scans)}"
    return _flip_in(scans[1], 2, rng)


def indexes_deleted(partition_dir: Path, rng: random.Random) -> int:
    for path in [*partition_dir.glob("*.index"), *partition_dir.glob("*.timeindex")]:
        path.unlink()
    return _active(partition_dir).batches[-1].last_offset + 1


def indexes_corrupt(partition_dir: Path, rng: random.Random) -> int:
    """Every way an index can be bad: random bytes, a partial entry, zeros, and entries
    that look fine (increasing, inside the file) but point into the middle of batches."""
    logs = segment_files(partition_dir)
    assert len(logs) >= 5, f"expected several segments, got {len(logs)}"
    end = _active(partition_dir).batches[-1].last_offset + 1
    first, second, third, fourth = logs[0], logs[1], logs[2], logs[3]  # not the active one
    first.with_suffix(".index").write_bytes(rng.randbytes(64))
    raw = second.with_suffix(".index").read_bytes()
    second.with_suffix(".index").write_bytes(raw + b"\x01\x02\x03")
    third.with_suffix(".timeindex").write_bytes(bytes(36))
    third.with_suffix(".index").write_bytes(bytes(32))
    # shift the positions of all but the last entry into the batches they name: still
    # increasing, inside the file, with a last entry that checks out
    entries = bytearray(fourth.with_suffix(".index").read_bytes())
    assert len(entries) >= 3 * OFFSET_ENTRY.size, "expected several index entries"
    for at in range(0, len(entries) - OFFSET_ENTRY.size, OFFSET_ENTRY.size):
        relative, position = OFFSET_ENTRY.unpack_from(entries, at)
        OFFSET_ENTRY.pack_into(entries, at, relative, position + 100)
    fourth.with_suffix(".index").write_bytes(bytes(entries))
    logs[-1].with_suffix(".timeindex").write_bytes(rng.randbytes(24))
    return end


# --------------------------------------------------------------------------- checks


def _check_served(broker: BrokerProcess, written: Written, end: int) -> None:
    """Reads at every offset go through the (rebuilt) indexes; the log ends at ``end``."""
    topic = written.topic
    assert wire.latest_offset(broker.bootstrap, topic, 0) == end, f"{topic}: log end offset"
    messages = consume_all(broker.bootstrap, topic, [0])[0]
    got = [(offset_of(m), int(value_of(m).split(b"-")[1])) for m in messages]
    want_ids = written.ids_below(end)
    assert [i for _, i in got] == want_ids, f"{topic}: wrong messages after recovery"
    assert [o for o, _ in got] == list(range(len(want_ids))), f"{topic}: offsets not contiguous"
    with wire.WireConnection(broker.bootstrap) as conn:
        for offset in range(0, end, 3):
            partition = wire.fetch_partition_response(
                conn.request(wire.fetch_request(topic, 0, offset, max_bytes=1024))
            )
            assert partition.error_code == wire.NONE, f"{topic} fetch at {offset}: {partition}"
            headers = wire.batch_headers(partition.records or b"")
            assert headers, f"{topic} fetch at {offset}: no whole batch"
            first = headers[0]
            assert first.base_offset <= offset <= first.base_offset + first.last_offset_delta, (
                f"{topic} fetch at {offset} started at batch {first.base_offset}"
            )
        # and writes continue right where the log now ends
        more = [10_000 + n for n in range(RECORDS_PER_BATCH)]
        assert _produce(conn, topic, more) == end, f"{topic}: append after recovery"


def _check_files(data_dir: Path, topics: list[str]) -> None:
    for topic in topics:
        for scan in scan_partition(data_dir / f"{topic}-0"):
            assert scan.clean, f"{scan.path}: {scan.problem}"
            assert not index_problems(scan.path, scan), index_problems(scan.path, scan)


@dataclass(frozen=True)
class Case:
    name: str
    clean_stop: bool
    damages: dict[str, Damage]
    data_dir_damage: Callable[[Path, random.Random], None] | None
    # regular expressions the broker's stderr must match after the restart
    expected_logs: tuple[str, ...]


def remove_checkpoints(data_dir: Path, rng: random.Random) -> None:
    for name in (
        "recovery-point-offset-checkpoint",
        "log-start-offset-checkpoint",
        ".kafka_cleanshutdown",
    ):
        (data_dir / name).unlink(missing_ok=True)
    for path in data_dir.glob("*-0/leader-epoch-checkpoint"):
        path.unlink()
    for path in data_dir.glob("*-0/*.snapshot"):
        path.unlink()


def corrupt_checkpoints(data_dir: Path, rng: random.Random) -> None:
    for name in ("recovery-point-offset-checkpoint", "log-start-offset-checkpoint"):
        (data_dir / name).write_bytes(b"0\n7\ngarbage here\n" + rng.randbytes(40))
    for path in data_dir.glob("*-0/leader-epoch-checkpoint"):
        path.write_bytes(b"1\n1\n0 0\n")  # an unknown version
    for path in data_dir.glob("*-0/*.snapshot"):
        path.write_bytes(rng.randbytes(50))


CASES = [
    Case(
        "after-kill",
        clean_stop=False,
        damages={
            "torn": torn_tail,
            "garbage": garbage_tail,
            "zeros": zero_tail,
            "flip-active": flipped_byte_active,
        },
        data_dir_damage=None,
        expected_logs=(
            r"\(unclean shutdown\)",
            r"torn batch at byte \d+; truncating \d+ bytes",
            r"truncating 1500 bytes",
            r"truncating 4096 bytes",
            r"CRC mismatch at byte \d+; truncating \d+ bytes",
        ),
    ),
    Case(
        "after-clean-stop",
        clean_stop=True,
        damages={
            "torn": torn_tail,
            "garbage": garbage_tail,
            "indexes-gone": indexes_deleted,
            "indexes-bad": indexes_corrupt,
        },
        data_dir_damage=None,
        expected_logs=(
            r"\(clean shutdown\)",
            r"torn batch at byte \d+; truncating \d+ bytes",
            r"truncating 1500 bytes",
            r"missing index file .*rebuilding the indexes",
            r"is corrupt.*rebuilding the indexes",
            r"does not point at the batch it names; rebuilding the indexes",
        ),
    ),
    Case(
        "checkpoints-removed",
        clean_stop=True,
        damages={"flip-older": flipped_byte_older, "intact": lambda d, r: _whole(d)},
        data_dir_damage=remove_checkpoints,
        expected_logs=(
            r"\(unclean shutdown\)",
            r"recovering unflushed segment 0\b",
            r"CRC mismatch at byte \d+; truncating \d+ bytes",
            r"deleting \d+ later segments",
        ),
    ),
    Case(
        "checkpoints-corrupt",
        clean_stop=False,
        damages={"torn": torn_tail, "intact": lambda d, r: _whole(d)},
        data_dir_damage=corrupt_checkpoints,
        expected_logs=(
            r"ignoring unreadable .*recovery-point-offset-checkpoint",
            r"ignoring unreadable .*log-start-offset-checkpoint",
            r"ignoring unreadable leader epoch checkpoint",
            r"deleting unreadable producer snapshot",
            r"torn batch at byte \d+",
        ),
    ),
]


def _whole(partition_dir: Path) -> int:
    return _active(partition_dir).batches[-1].last_offset + 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broker_recovers_from_damaged_files(
    case: Case, broker_factory: BrokerFactory, figures: Figures
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = broker_factory(SETTINGS)
    written = {name: _write_topic(broker, f"{case.name}-{name}") for name in case.damages}
    if case.clean_stop:
        broker.stop()
    else:
        broker.kill()

    data_dir = broker.data_dir
    ends: dict[str, int] = {}
    for name, damage in case.damages.items():
        ends[name] = damage(data_dir / f"{written[name].topic}-0", rng)
    if case.data_dir_damage is not None:
        case.data_dir_damage(data_dir, rng)

    broker.start()
    for name, w in written.items():
        _check_served(broker, w, ends[name])
    log = last_start_log(broker)
    missing = [p for p in case.expected_logs if not re.search(p, log)]
    assert not missing, f"broker log lacks {missing} (seed {seed}):\n{log[-6000:]}"
    assert "Traceback" not in log, f"a traceback in the broker log (seed {seed}):\n{log}"
    broker.stop()
    _check_files(data_dir, [w.topic for w in written.values()])

    lost = {n: len(written[n].ids) - len(written[n].ids_below(e)) for n, e in ends.items()}
    figures("damaged topics", len(case.damages))
    figures("records dropped from the damage on", lost)
    figures("records checked", sum(len(w.ids_below(ends[n])) for n, w in written.items()))
    figures(
        "segment files",
        sum(len(segment_files(data_dir / f"{w.topic}-0")) for w in written.values()),
    )
