"""Run a real ZooKeeper (Debian's `zookeeper` package) on a free loopback port for the tests.

One standalone server per test session is enough: each test gets a chroot of its own
(``127.0.0.1:PORT/t-<hex>``), so tests never see each other's znodes. The server runs straight
from Debian's jars (``java -cp /usr/share/java/zookeeper.jar ... ZooKeeperServerMain CFG``,
what ``zkServer.sh start-foreground`` runs, minus the JMX flags) with its data in a temp dir, a
short tick so sessions can be made to expire in tests, and the admin HTTP server off (it would
want port 8080). Ready means it answers ``ruok`` with ``imok``.

Without Java or the jars the tests skip, and fail when CI=true (tools/install-test-deps.sh
installs the package there).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO

import pytest

from .broker_process import HOST, free_port

ZOOKEEPER_JAR_ENV = "MMS_ZOOKEEPER_JAR"
"""Overrides where zookeeper.jar is (its manifest's Class-Path must name its dependencies)."""
DEBIAN_ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
READY_TIMEOUT_S = 30.0  # a JVM start is ~1-3 s here; this is a hang
STOP_TIMEOUT_S = 10.0
TICK_TIME_MS = 200  # sessions may be as short as 2 ticks: tests expire them in well under 1 s
MAX_SESSION_TIMEOUT_MS = 60_000


class ZooKeeperStartError(AssertionError):
    """ZooKeeper exited or never answered `ruok`."""


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(reason + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def require_zookeeper() -> tuple[str, Path]:
    """(java, zookeeper.jar); skips the test without them, or fails it when CI=true."""
    java = shutil.which("java")
    jar = Path(os.environ.get(ZOOKEEPER_JAR_ENV, "") or DEBIAN_ZOOKEEPER_JAR)
    if java is None:
        _skip_or_fail("ZooKeeper needs Java: 'java' is not on PATH")
    if not jar.is_file():
        _skip_or_fail(
            f"ZooKeeper is not installed ({jar} is missing): apt-get install zookeeper, "
            "or run tools/install-test-deps.sh"
        )
    assert java is not None
    return java, jar


def four_letter_word(host: str, port: int, word: bytes, timeout_s: float = 1.0) -> bytes:
    """Send one of ZooKeeper's four-letter commands and read the answer to EOF."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(word)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


class ZooKeeperServer:
    """One standalone ZooKeeper process on loopback. Not thread-safe; start once, stop once."""

    def __init__(self, work_dir: Path, port: int = 0) -> None:
        self.work_dir = work_dir
        self.port = port or free_port()
        self.host = HOST
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def connect_string(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "zookeeper.log"

    def _write_config(self) -> Path:
        data_dir = self.work_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.work_dir / "zoo.cfg"
        cfg.write_text(
            f"tickTime={TICK_TIME_MS}\n"
            f"minSessionTimeout={2 * TICK_TIME_MS}\n"
            f"maxSessionTimeout={MAX_SESSION_TIMEOUT_MS}\n"
            f"dataDir={data_dir}\n"
            f"clientPort={self.port}\n"
            f"clientPortAddress={self.host}\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat\n"
            # Tests create and drop a chroot per test; no snapshots or purges needed for that.
            "autopurge.purgeInterval=0\n",
            encoding="utf-8",
        )
        return cfg

    def start(self) -> ZooKeeperServer:
        java, jar = require_zookeeper()
        cfg = self._write_config()
        self._log = open(self.log_path, "wb")  # closed in stop()
        self._proc = subprocess.Popen(
            [
                java,
                "-Xms32m",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",  # C1 only: a faster start, and plenty for tests
                f"-Dzookeeper.log.dir={self.work_dir}",
                "-cp",
                str(jar),
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(cfg),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise ZooKeeperStartError(
                    f"ZooKeeper exited with {self._proc.returncode}:\n{self._log_tail()}"
                )
            try:
                if four_letter_word(self.host, self.port, b"ruok") == b"imok":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ZooKeeperStartError(
            f"ZooKeeper did not answer ruok within {READY_TIMEOUT_S}s:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unique_chroot() -> str:
    """A fresh chroot for one test: '/t-<hex>'."""
    return f"/t-{uuid.uuid4().hex[:12]}"
