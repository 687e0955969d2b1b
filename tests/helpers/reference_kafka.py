"""Apache Kafka itself, the reference broker: start it, use it, stop it.

Four ways in:

* `ReferenceKafka(root).start()`: one KRaft node (broker and controller in one JVM) on free
  loopback ports, its store formatted under `root`; `.bootstrap`, `.stop()`. Reusable by the
  benchmarks (`jvm_options=BENCH_JVM_OPTIONS`, `settings={...}`).
* `ReferenceKafkaCluster(root).start()`: three such nodes forming one cluster (a static
  three-voter KRaft quorum, internal topics with replication factor 3), for the tests that
  compare our replicated cluster with Kafka's (tests/reference/test_cluster_differential.py).
* The pytest fixture `reference_kafka` (session scope; the conftests of tests/reference and
  tests/interop import it): one Kafka shared by every test of the session, so tests
  use unique topic names. Without Java or the jars it skips, and fails when CI=true.
* As a command implementing the `mms broker` contract, so the end-to-end suite can run
  against Kafka to tell a wrong test from a wrong broker:

      MMS_E2E_LAUNCHER="python tests/helpers/reference_kafka.py" pytest tests/e2e

  (`--libs DIR` before `broker` picks another folder of jars.) It prints `ready` once Metadata
  lists the node and exits 0 after SIGTERM/SIGINT.

The jars come from Maven Central through tools/reference-kafka (`fetch.sh`), into
tools/reference-kafka/target/lib; `$MMS_REFERENCE_KAFKA_LIBS` points elsewhere.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence, Set
from pathlib import Path
from typing import IO, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO_ROOT / "tools" / "reference-kafka" / "fetch.sh"
DEFAULT_LIBS = REPO_ROOT / "tools" / "reference-kafka" / "target" / "lib"
LIBS_ENV = "MMS_REFERENCE_KAFKA_LIBS"
HOST = "127.0.0.1"

READY_LIMIT_S = 90.0  # formatting plus a JVM boot take ~8 s here; 90 s means it is stuck
STOP_LIMIT_S = 30.0  # a controlled shutdown of one idle node takes a second or two
FORMAT_LIMIT_S = 60.0
FETCH_LIMIT_S = 900.0  # a first download of ~45 MB of jars from Maven Central
JVM_SIGTERM_EXIT = 143  # 128 + SIGTERM: how a JVM reports a normal SIGTERM shutdown
JVM_SIGINT_EXIT = 130
LOG_TAIL_LINES = 80

# Small and quick to start: what tests need. C1 only and the serial collector cut boot time
# and CPU on a 2-core box; they would also cut throughput, hence BENCH_JVM_OPTIONS.
TEST_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss1m",
)
# What kafka-server-start.sh gives a broker by default (1 GiB heap, G1 with short pauses).
BENCH_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms1g",
    "-Xmx1g",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
)

# A node of the three-node cluster: three JVMs share two cores here, so a smaller heap each.
CLUSTER_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss1m",
)
# What a replicated cluster keeps from Kafka's defaults, over BASE_PROPERTIES' single-node
# settings: internal topics replicated three ways with Kafka's default min ISR (2);
# min.insync.replicas stays 1.
CLUSTER_PROPERTIES: dict[str, str] = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    # 30 s by default: a follower that stopped fetching leaves the ISR within 5 s instead.
    "replica.lag.time.max.ms": "5000",
    # Heartbeats every 2 s by default; a controlled shutdown waits for a few of them.
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "6000",
    # Fewer threads than a production broker's 3 + 8: the answers are the same.
    "num.network.threads": "2",
    "num.io.threads": "4",
}

BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "3",  # 50 by default: slow to create, pointless here
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "3",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDERR
"""


class ReferenceKafkaUnavailable(RuntimeError):
    """Java or Kafka's jars are not available here (a skip locally, a failure in CI)."""


# --------------------------------------------------------------------------- the jars


def java_executable() -> str:
    """`$JAVA_HOME/bin/java`, else `java` on PATH."""
    home = os.environ.get("JAVA_HOME", "").strip()
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ReferenceKafkaUnavailable("no Java runtime: 'java' is not on PATH")
    return found


def libs_dir() -> Path:
    """Where Kafka's jars are expected ($MMS_REFERENCE_KAFKA_LIBS or the fetch.sh folder)."""
    override = os.environ.get(LIBS_ENV, "").strip()
    return Path(override) if override else DEFAULT_LIBS


def _has_kafka_jars(folder: Path) -> bool:
    return any(folder.glob("kafka_2.13-*.jar")) and any(folder.glob("kafka-clients-*.jar"))


def ensure_libs(project_dir: Path | None = None) -> Path:
    """The folder of jars for a Maven project fetch.sh knows, fetching it first if needed.

    Without `project_dir`: Kafka's broker jars (honouring $MMS_REFERENCE_KAFKA_LIBS).
    A no-op costing one `bash` start when the jars are there already.
    """
    if project_dir is None:
        override = os.environ.get(LIBS_ENV, "").strip()
        if override:
            if not _has_kafka_jars(Path(override)):
                raise ReferenceKafkaUnavailable(f"${LIBS_ENV}={override} holds no Kafka jars")
            return Path(override)
        project_dir = FETCH_SCRIPT.parent
    java_executable()
    if shutil.which("mvn") is None and not (project_dir / "target" / "lib" / ".fetched").exists():
        raise ReferenceKafkaUnavailable(
            f"no Maven ('mvn' not on PATH) to fetch the jars of {project_dir}"
        )
    try:
        done = subprocess.run(
            ["bash", str(FETCH_SCRIPT), str(project_dir)],
            capture_output=True,
            text=True,
            timeout=FETCH_LIMIT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ReferenceKafkaUnavailable(f"fetch.sh took over {FETCH_LIMIT_S:.0f} s") from exc
    if done.returncode != 0:
        raise ReferenceKafkaUnavailable(
            f"fetch.sh {project_dir} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return Path(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- readiness


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def metadata_lists_node(host: str, port: int, node_id: int) -> bool:
    """Metadata v1 on a fresh connection lists `node_id` and a controller."""
    return metadata_lists_nodes(host, port, {node_id})


def metadata_lists_nodes(host: str, port: int, node_ids: Set[int]) -> bool:
    """Metadata v1 on a fresh connection lists every one of `node_ids` and a controller.

    Hand-rolled (no client library) so the launcher runs with a bare interpreter too.
    """
    request = struct.pack(">hhih", 3, 1, 1, 3) + b"ref" + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            body = _recv_exact(sock, size)
    except OSError:
        return False
    pos = 4  # correlation id
    (count,) = struct.unpack_from(">i", body, pos)
    pos += 4
    nodes = []
    for _ in range(count):
        (node,) = struct.unpack_from(">i", body, pos)
        pos += 4
        (host_len,) = struct.unpack_from(">h", body, pos)
        pos += 2 + host_len + 4  # host, port
        (rack_len,) = struct.unpack_from(">h", body, pos)
        pos += 2 + max(rack_len, 0)
        nodes.append(node)
    (controller,) = struct.unpack_from(">i", body, pos)
    return set(node_ids) <= set(nodes) and controller >= 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("EOF")
        data += chunk
    return bytes(data)


def cluster_id() -> str:
    """Kafka's cluster id format: a random UUID, base64url without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def read_properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------- the broker


class ReferenceKafka:
    """One Apache Kafka node in KRaft combined mode on loopback, with its store under `root`.

    `root` holds `kafka-logs/` (data and the metadata log), `server.properties`, and `kafka.log`
    (the JVM's stdout and stderr, appended across restarts; with `log_to_stderr`, they go to
    this process's stderr instead). The controller port is chosen (or given as
    `controller_port`) once and kept in `root/controller-port`, so a restart on the same root
    finds its quorum. Alone it is its own quorum; `quorum_voters` (Kafka's static
    `controller.quorum.voters`, `id@host:port,...`) and a shared `cluster_id` make it one
    node of a `ReferenceKafkaCluster`. Not thread-safe: drive it from one thread.
    """

    def __init__(
        self,
        root: Path,
        *,
        libs: Path | None = None,
        host: str = HOST,
        port: int | None = None,
        node_id: int = 0,
        settings: Mapping[str, object] | None = None,
        jvm_options: Sequence[str] = TEST_JVM_OPTIONS,
        log_level: str = "info",
        log_to_stderr: bool = False,
        ready_timeout: float = READY_LIMIT_S,
        controller_port: int | None = None,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.libs = Path(libs) if libs is not None else None
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.node_id = node_id
        self.settings = {k: _config_value(v) for k, v in (settings or {}).items()}
        self.jvm_options = list(jvm_options)
        self.log_level = log_level
        self.log_to_stderr = log_to_stderr
        self.ready_timeout = ready_timeout
        self.controller_port = controller_port
        self.quorum_voters = quorum_voters
        self.cluster_id = cluster_id
        self.log_path = self.root / "kafka.log"
        self.properties_path = self.root / "server.properties"
        self.startup_s: float | None = None  # from process start to Metadata listing the node
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = 0.0  # time.monotonic() of the last launch

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "kafka-logs"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _controller_port(self) -> int:
        path = self.root / "controller-port"
        if not path.exists():
            port = self.controller_port
            path.write_text(str(port if port is not None else free_port(self.host)))
        return int(path.read_text())

    def properties(self) -> dict[str, str]:
        controller_port = self._controller_port()
        props = dict(BASE_PROPERTIES)
        props.update(self.settings)
        props.update(
            {
                "node.id": str(self.node_id),
                "controller.quorum.voters": self.quorum_voters
                or f"{self.node_id}@{self.host}:{controller_port}",
                "listeners": f"PLAINTEXT://{self.host}:{self.port},"
                f"CONTROLLER://{self.host}:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
                "log.dirs": str(self.data_dir),
            }
        )
        return props

    def java_command(self, main_class: str, *args: str) -> list[str]:
        libs = self.libs if self.libs is not None else ensure_libs()
        log4j = self.root / "log4j2.properties"
        if not log4j.exists():
            log4j.write_text(LOG4J2)
        return [
            java_executable(),
            *self.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={self.log_level}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            f"{libs.resolve()}/*",
            main_class,
            *args,
        ]

    def start(self) -> ReferenceKafka:
        """Format the store (first start only), start the JVM, block until it serves."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> ReferenceKafka:
        """Format the store (first start only) and start the JVM; returns without waiting
        (a node of a cluster serves only once a majority of its voters runs)."""
        if self.running:
            raise RuntimeError(f"reference Kafka already running (pid {self.pid})")
        self.root.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        began = time.monotonic()
        with self._open_log() as log:
            if not (self.data_dir / "meta.properties").exists():
                log.write(b"===== format\n")
                log.flush()
                subprocess.run(
                    self.java_command(
                        "kafka.tools.StorageTool",
                        "format",
                        f"--cluster-id={self.cluster_id or cluster_id()}",
                        "--config",
                        str(self.properties_path),
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=FORMAT_LIMIT_S,
                    check=True,
                )
            log.write(f"===== start on {self.bootstrap}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.java_command("kafka.Kafka", str(self.properties_path)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,  # a Ctrl-C reaches pytest, which stops it in order
            )
        self._launched = began
        return self

    def wait_ready(self, node_ids: Set[int] | None = None) -> ReferenceKafka:
        """Block until Metadata lists this node (and every one of `node_ids`) and a
        controller; kills the JVM and raises if it exits or takes over `ready_timeout`."""
        if self._proc is None:
            raise RuntimeError("reference Kafka was never launched")
        wanted = {self.node_id, *(node_ids or ())}
        deadline = time.monotonic() + self.ready_timeout
        while not metadata_lists_nodes(self.host, self.port, wanted):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"reference Kafka exited with {self._proc.returncode} before it was ready\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"reference Kafka not ready within {self.ready_timeout:.0f} s\n"
                    + self.log_tail()
                )
            time.sleep(0.1)
        self.startup_s = time.monotonic() - self._launched
        return self

    def _open_log(self) -> IO[bytes]:
        if self.log_to_stderr:
            return os.fdopen(os.dup(sys.stderr.fileno()), "ab")
        return open(self.log_path, "ab")

    def stop(self, timeout: float = STOP_LIMIT_S) -> int | None:
        """SIGTERM, wait, SIGKILL after `timeout`; returns the exit status (None if never run)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def close(self) -> None:
        """Make sure the JVM is gone; never raises."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return f"--- {self.log_path}, last {lines} lines:\n" + "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ReferenceKafka:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.close()


class ReferenceKafkaCluster:
    """`size` Apache Kafka nodes on loopback, each a KRaft broker and controller in one JVM
    (combined mode), under `root/node-<id>`: node ids 0..size-1, every node a voter of one
    static quorum (`controller.quorum.voters`, kraft.version 0; each store formatted with
    the same cluster id), internal topics replicated three ways (`CLUSTER_PROPERTIES`).

    `start()` launches the nodes in parallel (none serves until a majority of voters runs)
    and returns once every node's Metadata lists every node. `stop_node(id)` is a controlled
    shutdown of one node (SIGTERM: Kafka moves its leaderships and takes it out of the ISRs
    first). Not thread-safe: drive it from one thread.
    """

    def __init__(
        self,
        root: Path,
        *,
        size: int = 3,
        libs: Path | None = None,
        host: str = HOST,
        settings: Mapping[str, object] | None = None,
        jvm_options: Sequence[str] = CLUSTER_JVM_OPTIONS,
        ready_timeout: float = READY_LIMIT_S,
    ) -> None:
        self.root = Path(root).resolve()
        controller_ports = [free_port(host) for _ in range(size)]
        voters = ",".join(f"{i}@{host}:{port}" for i, port in enumerate(controller_ports))
        shared_id = cluster_id()
        merged = {**CLUSTER_PROPERTIES, **(settings or {})}
        self.nodes = [
            ReferenceKafka(
                self.root / f"node-{i}",
                libs=libs,
                host=host,
                node_id=i,
                settings=merged,
                jvm_options=jvm_options,
                ready_timeout=ready_timeout,
                controller_port=controller_ports[i],
                quorum_voters=voters,
                cluster_id=shared_id,
            )
            for i in range(size)
        ]
        self.cluster_id = shared_id
        self.startup_s: float | None = None  # from the first launch to every node listing all

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> ReferenceKafka:
        return self.nodes[node_id]

    def start(self) -> ReferenceKafkaCluster:
        """Format and launch every node at once, then wait for all to serve all."""
        began = time.monotonic()
        errors: list[BaseException] = []

        def launch(node: ReferenceKafka) -> None:
            try:
                node.launch()
            except BaseException as exc:  # raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=launch, args=(n,)) for n in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise errors[0]
            every = {n.node_id for n in self.nodes}
            for node in self.nodes:
                node.wait_ready(every)
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def stop_node(self, node_id: int, timeout: float = STOP_LIMIT_S) -> int | None:
        """A controlled shutdown of one node; its exit status."""
        return self.nodes[node_id].stop(timeout)

    def stop(self) -> None:
        """Every node in parallel (the last voters standing would wait for each other)."""
        threads = [threading.Thread(target=n.stop) for n in self.nodes if n.running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def close(self) -> None:
        """Make sure every JVM is gone; never raises."""
        for node in self.nodes:
            node.close()

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes)

    def __enter__(self) -> ReferenceKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.close()


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- pytest


class _Shared:
    """One Kafka per test session, however many conftests ask for it (reference counted)."""

    lock = threading.Lock()
    kafka: ReferenceKafka | None = None
    users = 0


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of a tool; with CI=true, fail it instead (CI must have it)."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(reason + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def require_reference_kafka() -> None:
    """Skip (or fail when CI=true) unless Java and Kafka's jars can be had."""
    try:
        ensure_libs()
    except ReferenceKafkaUnavailable as exc:
        unavailable(f"reference Kafka unavailable: {exc}")


@pytest.fixture(scope="session")
def reference_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceKafka]:
    """Apache Kafka on loopback, one for the whole session: use unique topic names."""
    require_reference_kafka()
    with _Shared.lock:
        if _Shared.kafka is None:
            kafka = ReferenceKafka(tmp_path_factory.mktemp("reference-kafka"))
            try:
                kafka.start()
            except BaseException:
                kafka.close()
                raise
            _Shared.kafka = kafka
        _Shared.users += 1
        kafka = _Shared.kafka
    try:
        yield kafka
    finally:
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0:
                _Shared.kafka = None
                try:
                    kafka.stop()
                finally:
                    kafka.close()


# --------------------------------------------------------------------------- launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reference_kafka")
    parser.add_argument("--libs", type=Path, help="folder of Kafka's jars (default: fetch.sh's)")
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker", help="run Kafka behind the `mms broker` contract")
    broker.add_argument("--data-dir", type=Path, required=True)
    broker.add_argument("--host", default=HOST)
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--broker-id", type=int, default=0)
    broker.add_argument("--config", type=Path)
    broker.add_argument("--set", action="append", default=[])
    sub.add_parser("fetch", help="fetch the jars (if needed) and print their folder")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(args.libs or ensure_libs())
        return 0

    settings: dict[str, object] = {}
    if args.config is not None:
        settings.update(read_properties(args.config))
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    kafka = ReferenceKafka(
        args.data_dir,
        libs=args.libs,
        host=args.host,
        port=args.port,
        node_id=args.broker_id,
        settings=settings,
        log_to_stderr=True,
    )
    stop_signal: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stop_signal.append(signum)
        if kafka.running:
            assert kafka.pid is not None
            os.kill(kafka.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        kafka.start()
    except (RuntimeError, subprocess.CalledProcessError, ReferenceKafkaUnavailable) as exc:
        print(f"reference kafka: {exc}", file=sys.stderr)
        kafka.close()
        return 0 if stop_signal else 1
    print(f"reference kafka {args.broker_id} ready on {kafka.bootstrap}", flush=True)
    while kafka.running and not stop_signal:
        time.sleep(0.2)
    code = kafka.stop()
    kafka.close()
    if stop_signal and code in (0, JVM_SIGTERM_EXIT, JVM_SIGINT_EXIT):
        return 0
    return code if code else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
