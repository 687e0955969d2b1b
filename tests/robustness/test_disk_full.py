"""A full disk: the data directory is a small tmpfs (mounted here, as root). Produce must fail
with KAFKA_STORAGE_ERROR (56) while reads go on; once space is freed, writes work again; a
broker stopped while the disk is full exits cleanly and comes back; nothing acknowledged is
lost and no partial batch is ever left in a segment file.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerProcess
from helpers.confluent import consume_all, create_topic, offset_of, value_of

from .conftest import Figures
from .support import (
    broker_pid,
    index_problems,
    last_start_log,
    peak_rss_mib,
    scan_partition,
    skip_or_fail,
)

KAFKA_STORAGE_ERROR = 56
TMPFS_MIB = 24
FILLER_MIB = 6  # placed before the broker starts; deleting it is how space gets freed
SECOND_FILLER_MIB = 3  # placed before the second fill, deleted while the broker is down
RECORDS_PER_BATCH = 8
VALUE_BYTES = 8 * 1024  # 64 KiB batches: a few hundred fill the disk
MAX_ATTEMPTS = 2_000  # a bound, far above what 24 MiB holds
SETTINGS = {
    "offsets.topic.num.partitions": 1,
    "group.initial.rebalance.delay.ms": 0,
    "log.segment.bytes": 1024 * 1024,  # many rolls on the way to full: they must fail well
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m,mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


class Stream:
    """Numbered records produced in 64 KiB batches on one connection; remembers the acks."""

    def __init__(self, broker: BrokerProcess, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self.next_id = 0
        self.acked: list[tuple[int, list[int]]] = []  # (base offset, ids)
        self.errors: dict[int, int] = {}

    def produce(self, conn: wire.WireConnection) -> int:
        ids = list(range(self.next_id, self.next_id + RECORDS_PER_BATCH))
        self.next_id += RECORDS_PER_BATCH
        records = [
            wire.Record(None, b"id-%08d-" % i + bytes([i % 251]) * VALUE_BYTES, (), n)
            for n, i in enumerate(ids)
        ]
        batch = wire.build_record_batch(records, base_timestamp=1_700_000_000_000)
        response = wire.produce_partition_response(
            conn.request(wire.produce_request(self.topic, 0, batch))
        )
        code = int(response.error_code)
        if code == wire.NONE:
            self.acked.append((int(response.base_offset), ids))
        else:
            self.errors[code] = self.errors.get(code, 0) + 1
        return code

    def fill(self) -> int:
        """Produce until three attempts in a row fail; returns the batches acknowledged."""
        before = len(self.acked)
        failures_in_a_row = 0
        with wire.WireConnection(self.broker.bootstrap) as conn:
            for _ in range(MAX_ATTEMPTS):
                code = self.produce(conn)
                if code == wire.NONE:
                    failures_in_a_row = 0
                    continue
                assert code == KAFKA_STORAGE_ERROR, f"produce on a full disk: error {code}"
                failures_in_a_row += 1
                if failures_in_a_row == 3:
                    return len(self.acked) - before
        raise AssertionError(f"{MAX_ATTEMPTS} batches and the disk never filled")

    @property
    def end_offset(self) -> int:
        base, ids = self.acked[-1]
        return base + len(ids)

    def check_log(self) -> int:
        """Every acknowledged record once, in order, at the offset it was acknowledged at,
        and nothing else (a failed produce left nothing behind). Returns records read."""
        expected = [(base + n, i) for base, ids in self.acked for n, i in enumerate(ids)]
        got = [
            (offset_of(m), int(value_of(m)[3:11]))
            for m in consume_all(self.broker.bootstrap, self.topic, [0])[0]
        ]
        if got != expected:
            pairs = zip(got, expected, strict=False)
            same = min(len(got), len(expected))
            first = next((n for n, (a, b) in enumerate(pairs) if a != b), same)
            raise AssertionError(
                f"{self.topic}: {len(got)} records read, {len(expected)} acknowledged; "
                f"they differ from record {first} on"
            )
        offsets = [o for o, _ in got]
        assert offsets == list(range(len(offsets))), f"{self.topic}: offsets not contiguous"
        return len(got)


def _check_files(data_dir: Path, topic: str) -> int:
    scans = scan_partition(data_dir / f"{topic}-0")
    for scan in scans:
        assert scan.clean, f"partial or corrupt batch left behind: {scan.path}: {scan.problem}"
        problems = index_problems(scan.path, scan)
        assert not problems, problems
    return len(scans)


@pytest.mark.timeout(150)
def test_full_disk_fails_produce_keeps_reads_and_recovers(
    small_disk: Path, tmp_path: Path, figures: Figures
) -> None:
    filler = small_disk / "filler.bin"
    filler.write_bytes(bytes(FILLER_MIB * 1024 * 1024))
    broker = BrokerProcess(small_disk / "data", tmp_path / "broker", settings=SETTINGS)
    try:
        broker.start()
        create_topic(broker.bootstrap, "steady", 1)
        create_topic(broker.bootstrap, "full", 1)
        steady = Stream(broker, "steady")
        with wire.WireConnection(broker.bootstrap) as conn:
            for _ in range(4):
                assert steady.produce(conn) == wire.NONE
        stream = Stream(broker, "full")

        # Phase 1: fill the disk while running; reads go on; free space; writes resume.
        acked_first = stream.fill()
        assert stream.errors.get(KAFKA_STORAGE_ERROR), stream.errors
        wire.assert_broker_serves(broker.bootstrap)
        stream.check_log()
        steady.check_log()
        end_when_full = stream.end_offset
        filler.unlink()
        with wire.WireConnection(broker.bootstrap) as conn:
            assert stream.produce(conn) == wire.NONE, "produce after space was freed"
            assert stream.acked[-1][0] == end_when_full, "a failed produce left a gap"
            for _ in range(20):  # past a segment roll
                assert stream.produce(conn) == wire.NONE
        stream.check_log()

        # Phase 2: fill it again and stop the broker while the disk is full.
        second_filler = small_disk / "filler-2.bin"
        second_filler.write_bytes(bytes(SECOND_FILLER_MIB * 1024 * 1024))
        acked_second = stream.fill()
        stream.check_log()
        peak_rss = peak_rss_mib(broker_pid(broker))
        broker.stop()  # SIGTERM: must still exit 0
        stop_log = last_start_log(broker)
        assert re.search(r"append failed: .*No space left on device", stop_log), stop_log[-3000:]
        for path in small_disk.glob("data/*/*.tmp"):
            raise AssertionError(f"a partial checkpoint file was left behind: {path}")

        # Space comes back; the broker starts, keeps everything, and takes writes.
        second_filler.unlink()
        broker.start()
        stream.check_log()
        steady.check_log()
        with wire.WireConnection(broker.bootstrap) as conn:
            for _ in range(3):
                assert stream.produce(conn) == wire.NONE, "produce after the restart"
        records = stream.check_log()
        broker.stop()
        segments = _check_files(small_disk / "data", "full")
        _check_files(small_disk / "data", "steady")
    finally:
        broker.close()

    figures("tmpfs MiB", TMPFS_MIB)
    figures("batches acked until full (1st, 2nd)", (acked_first, acked_second))
    figures("storage errors (56) answered", stream.errors.get(KAFKA_STORAGE_ERROR, 0))
    figures("other errors", {k: v for k, v in stream.errors.items() if k != 56})
    figures("records checked", records)
    figures("segment files checked", segments)
    figures("stderr lines about the full disk", stop_log.count("No space left on device"))
    figures("peak RSS MiB", round(peak_rss, 1))
