"""Shared tools of the robustness tests: process figures from /proc, on-disk checks of Kafka
segment and index files (independent of the storage code under test), stderr slicing."""

from __future__ import annotations

import os
import resource
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

import crc32c
import pytest
from helpers.broker_process import BrokerProcess

BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # the 61-byte magic-2 batch header
LOG_OVERHEAD = 12  # baseOffset + batchLength
CRC_FROM = 21  # the CRC-32C covers attributes .. end of batch
OFFSET_ENTRY = struct.Struct(">ii")  # .index: relative offset, position
TIME_ENTRY = struct.Struct(">qi")  # .timeindex: timestamp, relative offset

# Wanted for the 1,000-connection test plus the broker's own files; the hard limit here is
# far above it. The broker subprocess inherits the limit from the test process.
NOFILE_WANTED = 8192


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally; on CI (CI=true) a missing capability is a failure, not a skip."""
    if in_ci():
        pytest.fail(reason + "; CI=true, so this is a failure, not a skip")
    pytest.skip(reason)


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# --------------------------------------------------------------------------- /proc figures


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of /proc/<pid>/status (VmRSS, VmHWM, ...) in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[name] = int(parts[0])
    return out


def rss_mib(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the highest resident set size the process has had."""
    return proc_status(pid)["VmHWM"] / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def broker_pid(broker: BrokerProcess) -> int:
    pid = broker.pid
    assert pid is not None and broker.running, "the broker is not running"
    return pid


# --------------------------------------------------------------------------- broker logs


def last_start_log(broker: BrokerProcess) -> str:
    """The broker's stderr since its latest start (BrokerProcess writes a marker per start)."""
    text = broker.stderr_text()
    marker = f"===== start #{broker.starts}:"
    at = text.rfind(marker)
    return text[at:] if at >= 0 else text


# --------------------------------------------------------------------------- on-disk checks


@dataclass
class Batch:
    position: int
    base_offset: int
    last_offset: int
    size: int
    record_count: int


@dataclass
class SegmentScan:
    """What an independent reader finds in one ``.log`` file."""

    path: Path
    batches: list[Batch] = field(default_factory=list)
    size: int = 0
    problem: str | None = None  # why the scan stopped before the end of the file

    @property
    def clean(self) -> bool:
        return self.problem is None


def scan_segment(path: Path) -> SegmentScan:
    """Walk the batches of a segment file, checking lengths, magic, CRC-32C and offsets."""
    data = path.read_bytes()
    scan = SegmentScan(path, size=len(data))
    pos = 0
    prev_last = -1
    while pos < len(data):
        if len(data) - pos < BATCH_HEADER.size:
            scan.problem = f"{len(data) - pos} trailing bytes at {pos}"
            break
        (base, length, _epoch, magic, crc, _attrs, last_delta, *_rest, count) = (
            BATCH_HEADER.unpack_from(data, pos)
        )
        end = pos + LOG_OVERHEAD + length
        if magic != 2 or length < BATCH_HEADER.size - LOG_OVERHEAD or end > len(data):
            scan.problem = f"bad or torn batch at {pos} (magic {magic}, length {length})"
            break
        if crc32c.crc32c(data[pos + CRC_FROM : end]) != crc:
            scan.problem = f"CRC mismatch at {pos}"
            break
        if base <= prev_last:
            scan.problem = f"offset {base} at {pos} is not above {prev_last}"
            break
        scan.batches.append(Batch(pos, base, base + last_delta, end - pos, count))
        prev_last = base + last_delta
        pos = end
    return scan


def segment_files(partition_dir: Path) -> list[Path]:
    return sorted(partition_dir.glob("*.log"))


def scan_partition(partition_dir: Path) -> list[SegmentScan]:
    return [scan_segment(p) for p in segment_files(partition_dir)]


def index_problems(log_path: Path, scan: SegmentScan) -> list[str]:
    """Check ``.index`` and ``.timeindex`` against the batches actually in the segment: every
    offset entry must point at the start of the batch whose last offset it names; time
    entries must increase and name offsets inside the segment."""
    problems: list[str] = []
    base = int(log_path.stem)
    starts = {b.position: b for b in scan.batches}
    index = log_path.with_suffix(".index")
    if not index.exists():
        problems.append(f"{index.name} is missing")
    else:
        raw = index.read_bytes()
        if len(raw) % OFFSET_ENTRY.size:
            problems.append(f"{index.name} has a partial entry ({len(raw)} bytes)")
        prev = (-1, -1)
        for i in range(len(raw) // OFFSET_ENTRY.size):
            relative, position = OFFSET_ENTRY.unpack_from(raw, i * OFFSET_ENTRY.size)
            batch = starts.get(position)
            if batch is None or batch.last_offset != base + relative:
                problems.append(f"{index.name} entry {i} ({relative}, {position}) is wrong")
                break
            if (relative, position) <= prev:
                problems.append(f"{index.name} entry {i} is not increasing")
                break
            prev = (relative, position)
    time_index = log_path.with_suffix(".timeindex")
    if not time_index.exists():
        problems.append(f"{time_index.name} is missing")
    else:
        raw = time_index.read_bytes()
        if len(raw) % TIME_ENTRY.size:
            problems.append(f"{time_index.name} has a partial entry ({len(raw)} bytes)")
        last_offset = scan.batches[-1].last_offset if scan.batches else base
        prev_ts, prev_off = -(1 << 63), -1
        for i in range(len(raw) // TIME_ENTRY.size):
            ts, relative = TIME_ENTRY.unpack_from(raw, i * TIME_ENTRY.size)
            offset = base + relative
            if ts <= prev_ts or offset < prev_off or not base <= offset <= last_offset:
                problems.append(f"{time_index.name} entry {i} ({ts}, {offset}) is wrong")
                break
            prev_ts, prev_off = ts, offset
    return problems


# --------------------------------------------------------------------------- sockets


def connect(port: int, *, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A blocking loopback connection, optionally from another 127.x source address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the peer closed (EOF or reset), reading and discarding whatever comes."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 16):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True
