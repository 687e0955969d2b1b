"""Small, exact checks of the pieces the robustness tests lean on: connection quotas and
their config keys, the flush job's hand-over of descriptors, and the segment and loader
behaviour after a roll that failed half way."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from metamorphostreams.server.config import BrokerConfig, ConfigError
from metamorphostreams.server.connection import Connection, ConnectionQuotas
from metamorphostreams.storage import FlushJob, LogConfig, LogSegment, PartitionLog


class _Peer:
    """What ConnectionQuotas reads of a connection."""

    def __init__(self, host: str) -> None:
        self.peer_host = host
        self.peer = f"{host}:1234"
        self.admitted = False


def _admit(quotas: ConnectionQuotas, peer: _Peer) -> bool:
    peer.admitted = quotas.admit(cast(Connection, peer))
    return peer.admitted


def test_connection_quotas_per_ip_overrides_and_total() -> None:
    quotas = ConnectionQuotas(4, 2, {"127.0.0.3": 0, "::ffff:127.0.0.4": 3})
    a = [_Peer("127.0.0.1") for _ in range(3)]
    assert [_admit(quotas, p) for p in a] == [True, True, False]
    assert not _admit(quotas, _Peer("127.0.0.3"))  # override 0: never
    b = [_Peer("127.0.0.4") for _ in range(3)]  # IPv4-mapped override applies to IPv4
    assert [_admit(quotas, p) for p in b] == [True, True, False]  # max.connections = 4
    quotas.release(cast(Connection, a[0]))
    quotas.release(cast(Connection, a[2]))  # never admitted: no effect
    assert quotas.total == 3
    assert _admit(quotas, _Peer("127.0.0.4"))
    assert quotas.rejected == 3


def test_connection_config_keys_follow_kafka() -> None:
    defaults = BrokerConfig.from_props({})
    assert defaults["max.connections"] == (1 << 31) - 1
    assert defaults["max.connections.per.ip"] == (1 << 31) - 1
    assert defaults["max.connections.per.ip.overrides"] == {}
    config = BrokerConfig.from_props(
        {"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "h1:5, 10.0.0.1:7"}
    )
    assert config["max.connections.per.ip.overrides"] == {"h1": 5, "10.0.0.1": 7}
    with pytest.raises(ConfigError, match=r"only if max\.connections\.per\.ip\.overrides"):
        BrokerConfig.from_props({"max.connections.per.ip": "0"})
    for bad in ("h1", "h1:x", ":3", "h1:-1"):
        with pytest.raises(ConfigError):
            BrokerConfig.from_props({"max.connections.per.ip.overrides": bad})
    with pytest.raises(ConfigError):
        BrokerConfig.from_props({"max.connections": "-1"})


def test_flush_job_closed_while_running_leaves_its_descriptors_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    job = FlushJob([fd], 10)
    inside, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(n: Any) -> None:
        inside.set()
        release.wait(10)
        real_fsync(n)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    worker = threading.Thread(target=job.run)
    worker.start()
    assert inside.wait(10)
    job.close()  # what a cancelled flush task does on the loop thread
    os.fstat(fd)  # still open: the fsync in the worker is using it
    release.set()
    worker.join(10)
    assert job.done
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by run, once, when it was done


def test_failed_segment_creation_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def failing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".timeindex"):
            raise OSError(24, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(OSError):
        LogSegment.create(tmp_path, 42, index_interval_bytes=4096, max_index_size=1 << 20, now_ms=0)
    assert list(tmp_path.iterdir()) == []


def test_empty_segment_overlapping_the_previous_one_is_dropped_at_load(tmp_path: Path) -> None:
    """What an interrupted roll used to leave: an empty ``<log end offset>.log`` while later
    batches went on into the previous segment. Loading must not end the log there."""
    from metamorphostreams.protocol.records import build_batch

    directory = tmp_path / "t-0"

    def open_log(clean_shutdown: bool) -> PartitionLog:
        return PartitionLog.open(
            directory,
            "t",
            0,
            LogConfig(),
            now_ms=0,
            recovery_point=0,
            log_start_offset=None,
            clean_shutdown=clean_shutdown,
            fsync=False,
        )

    log = open_log(True)
    for n in range(3):
        batch = bytearray(build_batch([(None, b"v%d" % n, (), 0)]))
        assert log.append_as_leader(batch, leader_epoch=0, now_ms=0).error == 0
    log.close()
    (directory / f"{1:020d}.log").touch()  # inside offsets 0..2 of segment 0
    for clean in (True, False):
        log = open_log(clean)
        assert log.log_end_offset == 3
        assert [s.base_offset for s in log.segments] == [0]
        log.close()
