"""Run a real ZooKeeper (Debian's `zookeeper` package) on a free loopback port for the tests.

One standalone server per test session is enough: each test gets a chroot of its own
(``127.0.0.1:PORT/t-<hex>``), so tests never see each other's znodes. The server runs straight
from Debian's jars (``java -cp /usr/share/java/zookeeper.jar ... ZooKeeperServerMain CFG``,
what ``zkServer.sh start-foreground`` runs, minus the JMX flags) with its data in a temp dir, a
short tick so sessions can be made to expire in tests, and the admin HTTP server off (it would
want port 8080). Ready means it answers ``ruok`` with ``imok``.

``ZooKeeperEnsemble`` runs three such servers as one quorum (``QuorumPeerMain``, what
``zkServer.sh`` runs when the config lists ``server.N`` lines), for the tests that kill
ZooKeeper's own leader.

Without Java or the jars the tests skip, and fail when CI=true (tools/install-test-deps.sh
installs the package there).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
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
    """One standalone ZooKeeper process, on loopback unless ``host`` says otherwise (the
    network-partition tests bind it to a bridge address). Not thread-safe; start, then stop
    (a killed server may be started again on the same port and data)."""

    MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"

    def __init__(self, work_dir: Path, port: int = 0, host: str = HOST) -> None:
        self.work_dir = work_dir
        self.host = host
        self.port = port or free_port(host)
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
            "autopurge.purgeInterval=0\n" + self._extra_config(data_dir),
            encoding="utf-8",
        )
        return cfg

    def _extra_config(self, data_dir: Path) -> str:
        """More zoo.cfg lines (an ensemble member's peers); none for a standalone server."""
        return ""

    def _ready(self) -> bool:
        return four_letter_word(self.host, self.port, b"ruok") == b"imok"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ZooKeeperServer:
        """Launch and wait until it serves (ZooKeeperStartError if it never does)."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Start the JVM without waiting (an ensemble's members start side by side)."""
        java, jar = require_zookeeper()
        cfg = self._write_config()
        self._log = open(self.log_path, "ab")  # closed in stop(); appended across restarts
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
                self.MAIN_CLASS,
                str(cfg),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
        )

    def wait_ready(self, limit_s: float = READY_TIMEOUT_S) -> None:
        proc = self._proc
        assert proc is not None, "launch() first"
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop()
                raise ZooKeeperStartError(
                    f"ZooKeeper exited with {proc.returncode}:\n{self._log_tail()}"
                )
            try:
                if self._ready():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ZooKeeperStartError(
            f"ZooKeeper {self.connect_string} was not serving within {limit_s}s:\n"
            + self._log_tail()
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

    def kill(self) -> None:
        """SIGKILL: the crash case, no clean shutdown."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        self.stop()

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a three-node ensemble --------------------------------------------------------------------

ENSEMBLE_SIZE = 3
INIT_LIMIT_TICKS = 50  # 10 s for a follower to sync with a new leader: JVMs are slow on 2 cores
SYNC_LIMIT_TICKS = 15  # 3 s of silence before the leader drops a follower
SERVING_MODES = ("leader", "follower")


def server_mode(host: str, port: int) -> str | None:
    """The ``Mode:`` line of ``srvr`` (leader, follower, standalone), or None when the server
    does not answer or is not serving (no quorum)."""
    try:
        answer = four_letter_word(host, port, b"srvr").decode("utf-8", "replace")
    except OSError:
        return None
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


class EnsembleMember(ZooKeeperServer):
    """One server of a ZooKeeperEnsemble: ``myid`` in its data dir, every peer's quorum and
    election ports in its zoo.cfg. Serving means being the quorum's leader or a follower."""

    MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

    def __init__(self, work_dir: Path, myid: int, port: int, peers: dict[int, str]) -> None:
        super().__init__(work_dir, port)
        self.myid = myid
        self.peers = peers  # myid -> "host:quorumPort:electionPort"

    def _extra_config(self, data_dir: Path) -> str:
        (data_dir / "myid").write_text(f"{self.myid}\n", encoding="ascii")
        servers = "".join(f"server.{n}={address}\n" for n, address in sorted(self.peers.items()))
        return f"initLimit={INIT_LIMIT_TICKS}\nsyncLimit={SYNC_LIMIT_TICKS}\n{servers}"

    def _ready(self) -> bool:
        return self.mode() in SERVING_MODES

    def mode(self) -> str | None:
        return server_mode(self.host, self.port)


class ZooKeeperEnsemble:
    """Three ZooKeeper servers on loopback forming one quorum (server.1..3). Any two of them
    serve; ``leader()`` says which one leads. Not thread-safe: drive it from the test."""

    def __init__(self, work_dir: Path, size: int = ENSEMBLE_SIZE) -> None:
        self.work_dir = work_dir
        peers = {n: f"{HOST}:{free_port()}:{free_port()}" for n in range(1, size + 1)}
        self.members = {
            n: EnsembleMember(work_dir / f"zk{n}", n, free_port(), peers) for n in peers
        }

    @property
    def connect_string(self) -> str:
        """Every member: a client fails over to another when its server goes away."""
        return ",".join(m.connect_string for m in self.members.values())

    def start(self) -> ZooKeeperEnsemble:
        """Launch every member side by side and wait until each serves in the quorum."""
        require_zookeeper()
        for member in self.members.values():
            member.work_dir.mkdir(parents=True, exist_ok=True)
            member.launch()
        try:
            _all_ready(list(self.members.values()))
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self) -> EnsembleMember | None:
        """The member that leads the quorum now, if one does."""
        for member in self.members.values():
            if member.running and member.mode() == "leader":
                return member
        return None

    def serving(self) -> list[EnsembleMember]:
        return [m for m in self.members.values() if m.running and m.mode() in SERVING_MODES]

    def kill(self, member: EnsembleMember) -> None:
        member.kill()

    def restart(self, member: EnsembleMember) -> None:
        """Start a killed member again on its ports and data; back once it rejoined."""
        member.start()

    def stop(self) -> None:
        for member in self.members.values():
            member.stop()

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _all_ready(members: list[EnsembleMember]) -> None:
    """wait_ready() on every member at once; the first failure is raised."""
    errors: list[BaseException] = []

    def wait(member: EnsembleMember) -> None:
        try:
            member.wait_ready()
        except BaseException as e:  # reported below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=wait, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def unique_chroot() -> str:
    """A fresh chroot for one test: '/t-<hex>'."""
    return f"/t-{uuid.uuid4().hex[:12]}"
