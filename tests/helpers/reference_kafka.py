"""Run Apache Kafka itself behind the `mms broker` command-line contract.

This lets the same end-to-end suite run against the reference broker, so a failing test can
be told apart from a wrong test:

    MMS_E2E_LAUNCHER="python tests/helpers/reference_kafka.py --libs /path/to/kafka/libs" \\
        pytest tests/e2e

`--libs` is a folder holding Kafka 4.x's jars and their runtime dependencies (for instance
`mvn dependency:copy-dependencies` of org.apache.kafka:kafka_2.13). The broker runs in KRaft
combined mode (broker + controller, one node) on loopback, with the data directory given.
It prints `ready` once Metadata lists the node, and exits 0 after SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

READY_LIMIT_S = 60.0  # a JVM broker needs a few seconds; a minute means it is stuck
STOP_LIMIT_S = 30.0
JVM_SIGTERM_EXIT = 143  # 128 + SIGTERM: how a JVM reports a normal SIGTERM shutdown
JVM_SIGINT_EXIT = 130

BASE_PROPERTIES = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _metadata_lists(host: str, port: int, node_id: int) -> bool:
    """Metadata v1 on a fresh connection lists `node_id` and a controller."""
    request = struct.pack(">hhih", 3, 1, 1, 3) + b"ref" + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv(sock, 4))[0]
            body = _recv(sock, size)
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
    return node_id in nodes and controller >= 0


def _recv(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("EOF")
        data += chunk
    return bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reference_kafka")
    parser.add_argument("--libs", type=Path, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker")
    broker.add_argument("--data-dir", type=Path, required=True)
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--broker-id", type=int, default=0)
    broker.add_argument("--config", type=Path)
    broker.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)

    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = data_dir / ".reference"
    state.mkdir(exist_ok=True)
    # The controller port must stay the same across restarts (it is in the quorum config).
    port_file = state / "controller-port"
    if not port_file.exists():
        port_file.write_text(str(_free_port()))
    controller_port = int(port_file.read_text())

    props = dict(BASE_PROPERTIES)
    if args.config is not None:
        props.update(_read_properties(args.config))
    for item in args.set:
        key, _, value = item.partition("=")
        props[key.strip()] = value.strip()
    node = args.broker_id
    props.update(
        {
            "node.id": str(node),
            "controller.quorum.voters": f"{node}@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://{args.host}:{args.port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{args.host}:{args.port}",
            "log.dirs": str(data_dir / "kafka-logs"),
        }
    )
    properties = state / "server.properties"
    properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log4j = state / "log4j2.properties"
    log4j.write_text(LOG4J2)

    java = [
        "java",
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{args.libs.resolve()}/*",
    ]
    if not (data_dir / "kafka-logs" / "meta.properties").exists():
        cluster_id = _cluster_id()
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(properties),
            ],
            check=True,
            stdout=sys.stderr,
        )

    child = subprocess.Popen([*java, "kafka.Kafka", str(properties)], stdout=sys.stderr)
    stop_signal: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stop_signal.append(signum)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    deadline = time.monotonic() + READY_LIMIT_S
    while not _metadata_lists(args.host, args.port, node):
        if child.poll() is not None or stop_signal:
            break
        if time.monotonic() > deadline:
            child.kill()
            print("reference kafka: not ready in time", file=sys.stderr)
            return 1
        time.sleep(0.2)
    else:
        print(f"reference kafka {node} ready on {args.host}:{args.port}", flush=True)

    try:
        code = child.wait()
    except KeyboardInterrupt:
        code = child.wait(STOP_LIMIT_S)
    if stop_signal and code in (0, JVM_SIGTERM_EXIT, JVM_SIGINT_EXIT):
        return 0
    return code if code != 0 else 1


def _cluster_id() -> str:
    """Kafka's cluster id format: a random UUID, base64url without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
