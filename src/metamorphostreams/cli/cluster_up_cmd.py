"""``mms cluster up``: ZooKeeper and N brokers on this machine, until Ctrl-C or SIGTERM.

ZooKeeper runs from Debian's ``zookeeper`` package (``java -cp /usr/share/java/zookeeper.jar
org.apache.zookeeper.server.ZooKeeperServerMain zoo.cfg``, what ``zkServer.sh
start-foreground`` runs; ``MMS_ZOOKEEPER_JAR`` points elsewhere), with its data under
``DATA_DIR/zookeeper``. Broker i (0..N-1) runs as ``mms broker --zookeeper ... --broker-id i``
on port ``--base-port + i`` with its logs in ``DATA_DIR/broker-i``; its output goes to
``DATA_DIR/broker-i.log``. One process per broker: one broker per core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ZOOKEEPER_JAR_ENV = "MMS_ZOOKEEPER_JAR"
DEBIAN_ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_EARLY_EXIT_S = 0.5  # a bad config or a taken port ends the JVM within this
READY_TIMEOUT_S = 30.0  # a JVM or a broker start takes seconds at most; longer is a hang
STOP_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


class ClusterUpError(Exception):
    """Something the cluster needs is missing or did not start."""


def add_cluster_up_parser(csub: Any) -> None:
    p = csub.add_parser(
        "up",
        help="run ZooKeeper and N brokers on this machine until Ctrl-C",
        description="Start ZooKeeper and N brokers on this machine; Ctrl-C stops them all.",
    )
    p.add_argument("--brokers", type=int, default=3, help="number of brokers (3)")
    p.add_argument("--data-dir", type=Path, required=True, help="directory for all data")
    p.add_argument("--zookeeper-port", type=int, default=2181, help="ZooKeeper port (2181)")
    p.add_argument("--base-port", type=int, default=9092, help="broker i listens on this + i")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every broker (repeatable)",
    )
    p.set_defaults(run=run_cluster_up)


def _start_zookeeper(data_dir: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    java = shutil.which("java")
    jar = Path(os.environ.get(ZOOKEEPER_JAR_ENV, "") or DEBIAN_ZOOKEEPER_JAR)
    if java is None or not jar.is_file():
        raise ClusterUpError(
            f"ZooKeeper needs Java and {jar}: apt-get install zookeeper "
            f"(or set {ZOOKEEPER_JAR_ENV})"
        )
    zk_dir = data_dir / "zookeeper"
    (zk_dir / "data").mkdir(parents=True, exist_ok=True)
    cfg = zk_dir / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\n"
        f"dataDir={zk_dir / 'data'}\n"
        f"clientPort={port}\n"
        f"clientPortAddress={LOOPBACK}\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=ruok,srvr,stat\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [
            java,
            "-Xmx256m",
            f"-Dzookeeper.log.dir={zk_dir}",
            "-cp",
            str(jar),
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(cfg),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=zk_dir,
        start_new_session=True,  # Ctrl-C reaches us; we stop it in order
    )
    # No probe of our own (only server/ and client/ open sockets): the brokers wait for
    # ZooKeeper themselves, up to zookeeper.connection.timeout.ms; an early exit shows here.
    time.sleep(ZOOKEEPER_EARLY_EXIT_S)
    if proc.poll() is not None:
        raise ClusterUpError(f"ZooKeeper exited with code {proc.returncode}")
    return proc


def _start_broker(
    args: argparse.Namespace, broker_id: int, connect: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "metamorphostreams.cli.main",
        "broker",
        "--data-dir",
        str(args.data_dir / f"broker-{broker_id}"),
        "--host",
        LOOPBACK,
        "--port",
        str(args.base_port + broker_id),
        "--broker-id",
        str(broker_id),
        "--zookeeper",
        connect,
    ]
    for item in args.set:
        argv += ["--set", item]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, broker_id: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if " ready on " in log_path.read_text("utf-8", "replace"):
            return
        if proc.poll() is not None:
            tail = log_path.read_text("utf-8", "replace").strip().splitlines()[-1:]
            raise ClusterUpError(
                f"broker {broker_id} exited with code {proc.returncode}: {' '.join(tail)}"
            )
        time.sleep(0.05)
    raise ClusterUpError(f"broker {broker_id} did not start within {READY_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_cluster_up(args: argparse.Namespace) -> int:
    if args.brokers < 1:
        print("mms cluster up: --brokers must be at least 1", file=sys.stderr)
        return 2
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logs: list[IO[bytes]] = []
    zookeeper: subprocess.Popen[bytes] | None = None
    brokers: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        zk_log = open(args.data_dir / "zookeeper.log", "ab")
        logs.append(zk_log)
        zookeeper = _start_zookeeper(args.data_dir, args.zookeeper_port, zk_log)
        connect = f"{LOOPBACK}:{args.zookeeper_port}"
        print(f"zookeeper started on {connect}", flush=True)
        for broker_id in range(args.brokers):
            path = args.data_dir / f"broker-{broker_id}.log"
            path.write_bytes(b"")
            broker_log = open(path, "ab")
            logs.append(broker_log)
            brokers.append(_start_broker(args, broker_id, connect, broker_log))
        for broker_id, proc in enumerate(brokers):
            _wait_ready(proc, args.data_dir / f"broker-{broker_id}.log", broker_id)
        bootstrap = ",".join(f"{LOOPBACK}:{args.base_port + i}" for i in range(args.brokers))
        print(f"cluster ready: bootstrap servers {bootstrap}", flush=True)
        while not stopping:
            for broker_id, proc in enumerate(brokers):
                if proc.poll() is not None:
                    print(f"broker {broker_id} exited with code {proc.returncode}", flush=True)
                    stopping, code = True, 1
            time.sleep(0.2)
    except (ClusterUpError, OSError) as e:
        print(f"mms cluster up: {e}", file=sys.stderr)
        code = 1
    finally:
        for proc in brokers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in brokers:
            _stop(proc)
        if zookeeper is not None:
            _stop(zookeeper)
        for opened in logs:
            opened.close()
    print("cluster stopped", flush=True)
    return code
