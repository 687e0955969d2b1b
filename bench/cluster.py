"""`make bench-cluster`: three of our brokers beside three Kafka brokers, replicated.

    .venv/bin/python bench/cluster.py [--quick] [--only produce,latency,failover]
        [--brokers ours,kafka] [--rounds N] [--latency-rate MSGS] [--out FILE] [--keep]

Both clusters run at once on loopback, each started once per run in a fresh temporary
directory. Ours: a ZooKeeper (`tests/helpers/zookeeper.py`: Debian's jars, tickTime 200 ms)
and three `mms broker` processes joined to it, with our defaults. Kafka's: three Kafka 4.3.1
KRaft nodes in combined mode (`ReferenceKafkaCluster`) with kafka-server-start.sh's JVM
options and Kafka's defaults where the tests' cluster shortens them (`KAFKA_DEFAULTS`).
Every topic: 3 partitions, replication factor 3, min.insync.replicas=2. As in `run.py`,
rounds alternate the clusters, a figure is the median over its rounds (latency: percentiles
of the pooled samples), ratio = ours / Kafka. The clients are `bench/loadgen.py`'s:

- cluster_produce_acks_all_mbps: `loadgen.py produce` (acks=all, linger.ms=5, idempotence
  off) writing 1 KiB records over the 3 partitions of a fresh topic, after one unmeasured run
  per cluster (JIT warm-up; not with --quick). `*_broker_cores`: CPU of the three broker
  processes (not ZooKeeper's), `*_client_cores` the producer's, over the run;
- cluster_produce_acks_all_p50_ms / _p99_ms: `loadgen.py latency`, LATENCY_RATE msg/s of
  1 KiB, acks=all, linger.ms=0: each record's produce-to-acknowledgement time;
- cluster_failover_zk18s_ms / _zk6s_ms: `loadgen.py failover` sends FAILOVER_RATE msg/s
  of 1 KiB to partition 0 (acks=all, linger.ms=0) and its leader gets SIGKILL: the time from
  the kill to the first acknowledgement of a record produced after it (librdkafka's metadata
  refreshes included). Ours with zookeeper.session.timeout.ms 18000 (the default), then,
  after a rolling restart, 6000; Kafka's column, its defaults, pooled over both phases. The
  killed broker then starts again on its store (ours: once its registration is gone) until
  every ISR has three replicas: cluster_rejoin_s.

Results: a table on stdout, `bench/out/cluster.json` (run.py's rows) and `cluster-meta.json`
(settings; every failover round: the node killed, whether it was the controller, the times).
MB are 10^6 bytes. Everything started is stopped at the end, on Ctrl-C and SIGTERM too.
bench/README.md says what the figures mean for the issue's goals.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]

import procstat  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402
from run import (  # noqa: E402
    BUSY_LOAD,
    LOADGEN,
    PYCACHE_DIR,
    WORKER_LIMIT_S,
    Figure,
    RunResult,
    _fmt,
    _fmt_ratio,
    _loadavg,
    _medians,
    _percentile,
    _rotation,
)

from tests.helpers.broker_process import BrokerProcess  # noqa: E402
from tests.helpers.confluent import client_config, create_topic  # noqa: E402
from tests.helpers.kafka_wire import WireConnection  # noqa: E402
from tests.helpers.reference_kafka import (  # noqa: E402
    BENCH_JVM_OPTIONS,
    ReferenceKafkaCluster,
    ReferenceKafkaUnavailable,
    ensure_libs,
)
from tests.helpers.zookeeper import (  # noqa: E402
    DEBIAN_ZOOKEEPER_JAR,
    ZOOKEEPER_JAR_ENV,
    ZooKeeperServer,
)

DEFAULT_OUT = BENCH_DIR / "out" / "cluster.json"
NAME_WIDTH = 38  # the table's first column: cluster_produce_acks_all_client_cores
KIB = 1024
MIB = 1024 * KIB
NODES = 3
PARTITIONS = 3
REPLICATION_FACTOR = 3
TOPIC_CONFIG = {"min.insync.replicas": "2"}  # acks=all goes on with one replica down
# At linger.ms=0, a Produce request per record, answered one at a time per connection after a
# replication round trip: much faster and the queue, not latency, makes p99 (bench/README.md).
LATENCY_RATE = 100
FAILOVER_RATE = 100  # the same, into partition 0: a record every 10 ms, the resolution
FAILOVER_LIMIT_S = 90.0  # no acknowledgement 90 s after the kill: the cluster is stuck
SETTLE_LIMIT_S = 180.0  # a restart plus catching up to a full ISR; longer means stuck
DEREGISTER_LIMIT_S = 60.0  # our dead broker's registration goes with its ZooKeeper session
STOP_LIMIT_S = 20.0  # a clean stop at the end; then SIGKILL
BROKER_READY_S = 60.0  # our broker joins ZooKeeper before `ready`; slow on a busy machine
POLL_S = 0.1
CHROOT = "/bench"
ZK_SESSION_DEFAULT_MS = 18_000  # Kafka's and our default zookeeper.session.timeout.ms
ZK_SESSION_SHORT_MS = 6_000
SESSION_PHASES = ((ZK_SESSION_DEFAULT_MS, "zk18s"), (ZK_SESSION_SHORT_MS, "zk6s"))
# ReferenceKafkaCluster shortens these for the tests; the benchmark runs Kafka's defaults
# (KRaftConfigs, ReplicationConfigs, ServerConfigs of 4.3.1).
KAFKA_DEFAULTS: dict[str, str] = {
    "replica.lag.time.max.ms": "30000",
    "broker.heartbeat.interval.ms": "2000",
    "broker.session.timeout.ms": "9000",
    "num.network.threads": "3",
    "num.io.threads": "8",
}
FIGURES = ("produce", "latency", "failover")
CLUSTERS = ("ours", "kafka")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the full one or `--quick` (a smoke run)."""

    rounds: int  # latency
    produce_rounds: int
    failover_rounds: int  # per session-timeout phase
    produce_bytes: int
    warmup_bytes: int  # one unmeasured produce per cluster before the rounds (0: none)
    latency_s: float
    latency_warmup_s: float
    failover_steady_s: float  # producing before the kill
    failover_after_s: float  # producing after the first acknowledgement past the kill
    idle_settle_s: float
    between_runs_s: float


FULL = Plan(
    rounds=3,
    produce_rounds=5,
    failover_rounds=3,
    produce_bytes=512 * MIB,  # ~7 s a round here: 256 MiB rounds were noisy
    # After 64 MiB the JVMs were still getting faster round after round (2026-12-03).
    warmup_bytes=256 * MIB,
    latency_s=15.0,
    latency_warmup_s=2.0,
    failover_steady_s=2.0,
    failover_after_s=1.0,
    idle_settle_s=3.0,
    between_runs_s=1.0,
)
QUICK = Plan(
    rounds=1,
    produce_rounds=1,
    failover_rounds=1,
    produce_bytes=16 * MIB,
    warmup_bytes=0,
    latency_s=1.0,
    latency_warmup_s=0.3,
    failover_steady_s=0.5,
    failover_after_s=0.3,
    idle_settle_s=1.0,
    between_runs_s=0.2,
)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_for(predicate: Callable[[], bool], what: str, limit_s: float) -> float:
    """Poll until `predicate()` holds; the seconds it took (RuntimeError past `limit_s`)."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > limit_s:
            raise RuntimeError(f"{what}: not within {limit_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - began


# --------------------------------------------------------------------------- the clusters


class Cluster(ABC):
    """A running cluster of NODES brokers as the benchmark drives it: its metadata (through
    librdkafka's admin client), its processes (`pids()`: node id -> pid of each running one),
    `kill()` (SIGKILL; the CLOCK_MONOTONIC instant just after it), `restart()`, and
    `wait_deregistered()` (until a killed node may start again). Not thread-safe."""

    name = ""

    def __init__(self) -> None:
        self._admin: AdminClient | None = None

    @property
    @abstractmethod
    def bootstrap(self) -> str: ...
    @abstractmethod
    def pids(self) -> dict[int, int]: ...
    @abstractmethod
    def kill(self, node_id: int) -> float: ...
    @abstractmethod
    def restart(self, node_id: int) -> None: ...
    @abstractmethod
    def stop(self) -> None: ...
    @abstractmethod
    def wait_deregistered(self, node_id: int) -> None: ...

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            # Quiet: killed brokers and deleted topics are what the benchmark does. No
            # auto-creation: librdkafka refreshes the topics it knew, deleted ones included,
            # and both brokers would create those again (auto.create.topics.enable).
            config = {
                "log.connection.close": False,
                "log_level": 4,
                "allow.auto.create.topics": False,
            }
            self._admin = AdminClient(client_config(self.bootstrap, **config))
        return self._admin

    def cpu_seconds(self) -> float:
        return sum(procstat.cpu_seconds(pid) for pid in self.pids().values())

    def partitions(self, topic: str) -> dict[int, tuple[int, list[int]]]:
        """Partition -> (leader, ISR), as Metadata says now."""
        meta = self.admin.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        return {p.id: (p.leader, list(p.isrs)) for p in meta.partitions.values()}

    def controller(self) -> int | None:
        """The controller's node id (ours: the ZooKeeper-elected one Metadata names)."""
        return int(self.admin.list_topics(timeout=30).controller_id)

    def isr_full(self, topic: str) -> bool:
        parts = self.partitions(topic)
        return len(parts) == PARTITIONS and all(
            leader >= 0 and len(isr) == REPLICATION_FACTOR for leader, isr in parts.values()
        )

    def wait_isr_full(self, topic: str) -> float:
        what = f"{self.name}: every ISR of {topic} back to {REPLICATION_FACTOR} replicas"
        return wait_for(lambda: self.isr_full(topic), what, SETTLE_LIMIT_S)

    def create_topic(self, topic: str) -> None:
        create_topic(self.bootstrap, topic, PARTITIONS, TOPIC_CONFIG, REPLICATION_FACTOR)
        self.wait_isr_full(topic)

    def delete_topic(self, topic: str) -> None:
        """Keeps the disk and a killed broker's log recovery small; a failure is only logged."""
        try:
            self.admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
        except Exception as e:
            log(f"{self.name}: deleting {topic} failed: {e}")


class OurCluster(Cluster):
    """A ZooKeeper and NODES `mms broker --zookeeper` processes, ids 0..NODES-1."""

    name = "ours"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.zookeeper = ZooKeeperServer(root / "zookeeper")
        self.session_timeout_ms = ZK_SESSION_DEFAULT_MS
        self.brokers = {
            i: BrokerProcess(
                root / f"data-{i}",
                root / f"logs-{i}",
                broker_id=i,
                settings={"zookeeper.connect": self.zookeeper.connect_string + CHROOT},
                launcher=[sys.executable, "-m", "metamorphostreams.cli.main"],
                unbuffered=False,
                ready_timeout=BROKER_READY_S,
            )
            for i in range(NODES)
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def start(self) -> None:
        self.zookeeper.work_dir.mkdir(parents=True, exist_ok=True)
        self.zookeeper.start()
        zk = KazooClient(hosts=self.zookeeper.connect_string)
        zk.start(timeout=30)
        try:
            zk.ensure_path(CHROOT)
        finally:
            zk.stop()
            zk.close()
        errors: list[BaseException] = []

        def start(broker: BrokerProcess) -> None:
            try:
                broker.start()
            except BaseException as e:  # raised below, in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=start, args=(b,)) for b in self.brokers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_members()

    def members(self) -> set[int]:
        return {int(b) for b in self.admin.list_topics(timeout=30).brokers}

    def wait_members(self) -> None:
        want = set(self.pids())
        wait_for(lambda: self.members() == want, f"ours: brokers {sorted(want)}", SETTLE_LIMIT_S)

    def pids(self) -> dict[int, int]:
        return {i: b.pid for i, b in self.brokers.items() if b.running and b.pid is not None}

    def kill(self, node_id: int) -> float:
        broker = self.brokers[node_id]
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGKILL)  # its own session: the group is the broker
        killed = time.monotonic()
        broker.kill()  # reaps it
        return killed

    def wait_deregistered(self, node_id: int) -> None:
        # A broker started while its old session's /brokers/ids/N lives is refused.
        what = f"ours: broker {node_id}'s registration gone"
        wait_for(lambda: node_id not in self.members(), what, DEREGISTER_LIMIT_S)

    def restart(self, node_id: int) -> None:
        self.brokers[node_id].start()

    def set_session_timeout(self, session_ms: int, topic: str) -> None:
        """A rolling restart (SIGTERM, start, full ISR again) with another
        zookeeper.session.timeout.ms."""
        for i, broker in self.brokers.items():
            broker.settings["zookeeper.session.timeout.ms"] = session_ms
            try:
                broker.stop()
            except AssertionError as e:
                log(f"ours: broker {i} did not stop cleanly: {str(e).splitlines()[0]}")
                broker.close()
            broker.start()
            self.wait_isr_full(topic)
        self.session_timeout_ms = session_ms
        self.wait_members()

    def stop(self) -> None:
        self._admin = None  # first: no reconnections to stopped brokers, logged
        try:
            for i, broker in self.brokers.items():
                if not broker.running:
                    broker.close()
                    continue
                try:
                    broker.stop(STOP_LIMIT_S)
                except AssertionError as e:
                    log(f"ours: broker {i} did not stop cleanly: {str(e).splitlines()[0]}")
                finally:
                    broker.close()
        finally:
            self.zookeeper.stop()


class KafkaCluster(Cluster):
    """Apache Kafka's ReferenceKafkaCluster (KRaft, combined mode), node ids 0..NODES-1."""

    name = "kafka"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.cluster = ReferenceKafkaCluster(
            root, size=NODES, settings=KAFKA_DEFAULTS, jvm_options=BENCH_JVM_OPTIONS
        )

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def start(self) -> None:
        self.cluster.start()

    def pids(self) -> dict[int, int]:
        return {n.node_id: n.pid for n in self.cluster.nodes if n.running and n.pid is not None}

    def kill(self, node_id: int) -> float:
        node = self.cluster.node(node_id)
        assert node.pid is not None
        os.kill(node.pid, signal.SIGKILL)
        killed = time.monotonic()
        node.close()  # reaps it
        return killed

    def restart(self, node_id: int) -> None:
        self.cluster.node(node_id).start()

    def wait_deregistered(self, node_id: int) -> None:
        """Nothing to wait for: a restarted KRaft broker registers with a new incarnation."""

    def controller(self) -> int | None:
        """The KRaft quorum's leader, the active controller: DescribeQuorum, which a broker
        forwards to it (Metadata names a random broker as controller in KRaft)."""
        from kafka.protocol.admin import DescribeQuorumRequest

        topic = DescribeQuorumRequest.TopicData
        request = DescribeQuorumRequest[0](
            topics=[
                topic(
                    topic_name="__cluster_metadata",
                    partitions=[topic.PartitionData(partition_index=0)],
                )
            ]
        )
        node = next(n for n in self.cluster.nodes if n.running)
        try:
            with WireConnection(node.bootstrap) as conn:
                response = conn.request(request)
            return int(response.topics[0].partitions[0].leader_id)
        except Exception as e:  # only the log line's "controller:" needs it
            log(f"kafka: DescribeQuorum failed: {e}")
            return None

    def stop(self) -> None:
        self._admin = None
        try:
            self.cluster.stop()
        finally:
            self.cluster.close()


# --------------------------------------------------------------------------- workers


class Worker:
    """One `bench/loadgen.py` process, warmed up (it said `ready`) and waiting for `go`."""

    def __init__(self, bootstrap: str, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(LOADGEN), *argv, "--bootstrap", bootstrap],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"load generator {argv[0]} failed to start: {line!r}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def report(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=WORKER_LIMIT_S)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator exited with {self.proc.returncode}")
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_worker(cluster: Cluster, argv: list[str]) -> RunResult:
    """One load generator, warmed up, then measured; the cluster's CPU around the measured
    part."""
    worker = Worker(cluster.bootstrap, argv)
    try:
        cpu0 = cluster.cpu_seconds()
        worker.send("go")
        report = worker.report()
        cpu = cluster.cpu_seconds() - cpu0
    finally:
        worker.close()
    if report.get("errors"):
        raise RuntimeError(f"{cluster.name}: delivery errors: {report['errors']}")
    return RunResult([report], cpu)


# --------------------------------------------------------------------------- the figures


@dataclass
class ClusterBench:
    plan: Plan
    clusters: dict[str, Cluster]
    latency_rate: int = LATENCY_RATE
    figures: list[Figure] = field(default_factory=list)
    failover_runs: list[dict[str, Any]] = field(default_factory=list)

    def order(self, round_no: int) -> list[Cluster]:
        names = [n for n in CLUSTERS if n in self.clusters]
        return [self.clusters[n] for n in _rotation(names, round_no)]

    def add(self, name: str, unit: str, higher: bool, values: Mapping[str, float | None]) -> None:
        self.figures.append(Figure(name, unit, dict(values), higher))

    def produce_figure(self) -> None:
        plan = self.plan
        count = plan.produce_bytes // KIB
        if plan.warmup_bytes:
            for cluster in self.order(0):
                log(f"warm-up: {plan.warmup_bytes / MIB:.0f} MiB into {cluster.name}")
                self.produce_run(cluster, "cluster_warmup", plan.warmup_bytes // KIB)
        mbps: dict[str, list[float]] = {}
        cores: dict[str, list[float]] = {}
        client: dict[str, list[float]] = {}
        for r in range(plan.produce_rounds):
            for cluster in self.order(r):
                result = self.produce_run(cluster, f"cluster_produce-r{r}", count)
                rate = result.bytes / result.elapsed_s / 1e6
                mbps.setdefault(cluster.name, []).append(rate)
                cores.setdefault(cluster.name, []).append(result.broker_cpu_s / result.elapsed_s)
                client.setdefault(cluster.name, []).append(result.client_cpu_s / result.elapsed_s)
                log(
                    f"cluster_produce r{r} {cluster.name}: {rate:.1f} MB/s, "
                    f"{result.messages / result.elapsed_s:,.0f} msg/s, brokers "
                    f"{cores[cluster.name][-1]:.2f} cores, client {client[cluster.name][-1]:.2f}"
                    " cores"
                )
                time.sleep(plan.between_runs_s)
        self.add("cluster_produce_acks_all_mbps", "MB/s", True, _medians(mbps))
        self.add("cluster_produce_acks_all_broker_cores", "cores", False, _medians(cores))
        self.add("cluster_produce_acks_all_client_cores", "cores", False, _medians(client))

    def produce_run(self, cluster: Cluster, topic: str, count: int) -> RunResult:
        cluster.create_topic(topic)
        argv = ["produce", "--topic", topic, "--size", str(KIB), "--count", str(count)]
        result = run_worker(cluster, [*argv, "--acks", "all"])
        cluster.delete_topic(topic)
        return result

    def latency_figure(self) -> None:
        plan = self.plan
        pooled: dict[str, list[float]] = {}
        for r in range(plan.rounds):
            for cluster in self.order(r):
                topic = f"cluster_latency-r{r}"
                cluster.create_topic(topic)
                argv = ["latency", "--topic", topic, "--size", str(KIB), "--acks", "all"]
                argv += ["--rate", str(self.latency_rate), "--seconds", str(plan.latency_s)]
                argv += ["--warmup", str(plan.latency_warmup_s)]
                result = run_worker(cluster, argv)
                cluster.delete_topic(topic)
                samples = result.reports[0]["latencies_ms"]
                pooled.setdefault(cluster.name, []).extend(samples)
                log(
                    f"cluster_latency r{r} {cluster.name}: {len(samples)} acks, p50 "
                    f"{_fmt(_percentile(samples, 50))} ms, p99 {_fmt(_percentile(samples, 99))} "
                    f"ms, brokers {result.broker_cpu_s / result.elapsed_s:.2f} cores"
                )
                time.sleep(plan.between_runs_s)
        for pct in (50, 99):
            values = {n: _percentile(s, pct) for n, s in pooled.items()}
            self.add(f"cluster_produce_acks_all_p{pct}_ms", "ms", False, values)

    def failover_figure(self) -> None:
        """Our phases (zookeeper.session.timeout.ms 18 s, then 6 s) each alternate with Kafka
        rounds; Kafka's samples are pooled over both."""
        topic = "cluster_failover"
        for cluster in self.clusters.values():
            cluster.create_topic(topic)
        ours: dict[str, list[float]] = {}
        kafka: list[float] = []
        rejoin: dict[str, list[float]] = {}
        round_no = 0
        for session_ms, label in SESSION_PHASES:
            our_cluster = self.clusters.get("ours")
            if isinstance(our_cluster, OurCluster) and our_cluster.session_timeout_ms != session_ms:
                log(f"ours: rolling restart with zookeeper.session.timeout.ms={session_ms}")
                our_cluster.set_session_timeout(session_ms, topic)
            for _ in range(self.plan.failover_rounds):
                for cluster in self.order(round_no):
                    run = self.failover_run(cluster, topic)
                    run.update(round=round_no, phase=label if cluster.name == "ours" else None)
                    self.failover_runs.append(run)
                    if cluster.name == "ours":
                        ours.setdefault(label, []).append(run["failover_ms"])
                    else:
                        kafka.append(run["failover_ms"])
                    rejoin.setdefault(cluster.name, []).append(run["rejoin_s"])
                    time.sleep(self.plan.between_runs_s)
                round_no += 1
        kafka_median = statistics.median(kafka) if kafka else None
        for _, label in SESSION_PHASES:
            values: dict[str, float | None] = {}
            if label in ours:
                values["ours"] = statistics.median(ours[label])
            if "kafka" in self.clusters:
                values["kafka"] = kafka_median
            self.add(f"cluster_failover_{label}_ms", "ms", False, values)
        self.add("cluster_rejoin_s", "s", False, _medians(rejoin))

    def failover_run(self, cluster: Cluster, topic: str) -> dict[str, Any]:
        plan = self.plan
        cluster.wait_isr_full(topic)
        leader = cluster.partitions(topic)[0][0]
        controller = cluster.controller()
        argv = ["failover", "--topic", topic, "--partition", "0", "--size", str(KIB)]
        argv += ["--acks", "all", "--rate", str(FAILOVER_RATE)]
        argv += ["--after", str(plan.failover_after_s), "--limit", str(FAILOVER_LIMIT_S)]
        worker = Worker(cluster.bootstrap, argv)
        try:
            worker.send("go")
            time.sleep(plan.failover_steady_s)
            killed_at = cluster.kill(leader)
            worker.send(f"kill {killed_at!r}")
            report = worker.report()
        finally:
            worker.close()
        if report["failover_ms"] is None:
            raise RuntimeError(
                f"{cluster.name}: no acks=all acknowledgement within {FAILOVER_LIMIT_S:.0f} s "
                f"of killing broker {leader}; errors {report['errors']}"
            )
        cluster.wait_deregistered(leader)
        began = time.monotonic()
        cluster.restart(leader)
        cluster.wait_isr_full(topic)
        rejoin_s = time.monotonic() - began
        was = "?" if controller is None else "yes" if leader == controller else "no"
        log(
            f"cluster_failover {cluster.name}: killed broker {leader} (controller: {was}), "
            f"first ack {report['failover_ms']:,.0f} ms after; {report['acked_retried']} "
            f"records from before the kill acknowledged after it, errors "
            f"{report['errors'] or 'none'}; restarted, ISR full in {rejoin_s:.1f} s"
        )
        return {
            "cluster": cluster.name,
            "killed": leader,
            "was_controller": leader == controller,
            "failover_ms": report["failover_ms"],
            "last_ack_before_kill_ms": report["last_ack_before_kill_ms"],
            "acked_retried": report["acked_retried"],
            "errors": report["errors"],
            "rejoin_s": rejoin_s,
        }


# --------------------------------------------------------------------------- the run


def print_table(figures: list[Figure], meta: dict[str, Any]) -> None:
    names = [n for n in CLUSTERS if any(n in f.values for f in figures)]
    head = f"{'figure':<{NAME_WIDTH}} {'unit':<6}" + "".join(f" {n:>11}" for n in names)
    head += f" {'ours/kafka':>10}"
    print()
    print(head)
    print("-" * len(head))
    for f in figures:
        row = f"{f.name:<{NAME_WIDTH}} {f.unit:<6}"
        row += "".join(f" {_fmt(f.values.get(n)):>11}" for n in names)
        print(row + f" {_fmt_ratio(f.ratio):>10}")
    print()
    print(
        "(higher is better for MB/s; lower for the rest. cluster_failover_*: Kafka's column is "
        f"its defaults in both rows.) Load average {meta['loadavg_start']} at start, "
        f"{meta['loadavg_end']} at end; {meta['elapsed_s']:.0f} s"
    )
    if meta["quick"]:
        print("--quick: a smoke run; cold JVMs, tiny sizes: these figures compare nothing.")
    busiest = max(float(meta[k].split()[0]) for k in ("loadavg_start", "loadavg_end"))
    if busiest > BUSY_LOAD:
        print(
            f"warning: load average {busiest:.1f} on {os.cpu_count()} cores: other processes "
            "shared the machine, and the figures are noisier for it."
        )


def _check_tools(names: list[str]) -> str | None:
    """Why the clusters cannot run here, or None."""
    if shutil.which("java") is None:
        return "no Java runtime: 'java' is not on PATH"
    jar = Path(os.environ.get(ZOOKEEPER_JAR_ENV, "") or DEBIAN_ZOOKEEPER_JAR)
    if "ours" in names and not jar.is_file():
        return f"ZooKeeper is not installed ({jar}): run tools/install-test-deps.sh"
    if "kafka" in names:
        try:
            ensure_libs()
        except ReferenceKafkaUnavailable as e:
            return f"Kafka's jars are unavailable: {e}"
    return None


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def start_clusters(bench: ClusterBench, names: list[str], root: Path) -> None:
    """Kafka's JVMs in a thread (they spend their start waiting for each other) while ours
    starts; each cluster is in `bench.clusters` as soon as it exists, so it is stopped."""
    failures: list[BaseException] = []
    starter: threading.Thread | None = None
    if "kafka" in names:
        kafka = bench.clusters["kafka"] = KafkaCluster(root / "kafka")

        def start_kafka() -> None:
            try:
                kafka.start()
            except BaseException as e:  # raised below, in the caller's thread
                failures.append(e)

        starter = threading.Thread(target=start_kafka, name="kafka-start", daemon=True)
        starter.start()
    began = time.monotonic()
    try:
        if "ours" in names:
            ours = bench.clusters["ours"] = OurCluster(root / "ours")
            ours.start()
            log(f"ours up on {ours.bootstrap} in {time.monotonic() - began:.1f} s")
    finally:
        if starter is not None:
            starter.join()  # before anything stops it: no JVM is left half-started
    if failures:
        raise failures[0]
    if "kafka" in names:
        kafka_cluster = bench.clusters["kafka"]
        log(f"kafka up on {kafka_cluster.bootstrap} in {time.monotonic() - began:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/cluster.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {FIGURES}")
    parser.add_argument("--brokers", default="ours,kafka", help="ours,kafka (default both)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per figure (3; produce 5)")
    parser.add_argument(
        "--latency-rate", type=int, default=LATENCY_RATE, help="msg/s of the latency figures"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the clusters' stores")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.rounds:
        rounds = dict.fromkeys(("rounds", "produce_rounds", "failover_rounds"), args.rounds)
        plan = Plan(**{**plan.__dict__, **rounds})
    only = [f for f in args.only.split(",") if f] or list(FIGURES)
    if set(only) - set(FIGURES):
        parser.error(f"unknown figures {sorted(set(only) - set(FIGURES))}; known: {FIGURES}")
    names = [n for n in args.brokers.split(",") if n]
    if not names or set(names) - set(CLUSTERS):
        parser.error("--brokers takes ours and/or kafka")
    missing = _check_tools(names)
    if missing:
        print(f"bench/cluster.py: {missing}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    signal.signal(signal.SIGTERM, _interrupted)
    # ZooKeeper answers `ruok` a moment before it takes sessions; kazoo retries, noisily.
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)
    began = time.monotonic()
    loadavg_start = _loadavg()
    root = Path(tempfile.mkdtemp(prefix="mms-bench-cluster-"))
    bench = ClusterBench(plan, {}, args.latency_rate)
    try:
        start_clusters(bench, names, root)
        time.sleep(plan.idle_settle_s)
        if "produce" in only:
            bench.produce_figure()
        if "latency" in only:
            bench.latency_figure()
        if "failover" in only:
            bench.failover_figure()
    finally:
        for cluster in bench.clusters.values():
            try:
                cluster.stop()
            except Exception as e:  # report the figures anyway; the stores are removed below
                print(f"stopping {cluster.name}: {e}", file=sys.stderr)
        if args.keep:
            print(f"stores kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    meta = {
        "loadavg_start": loadavg_start,
        "loadavg_end": _loadavg(),
        "elapsed_s": time.monotonic() - began,
        "quick": args.quick,
        "plan": plan.__dict__,
        "topic": {"partitions": PARTITIONS, "replication_factor": REPLICATION_FACTOR},
        "topic_config": TOPIC_CONFIG,
        "kafka_settings": KAFKA_DEFAULTS,
        "zookeeper_session_timeouts_ms": [ms for ms, _ in SESSION_PHASES],
        "failover_runs": bench.failover_runs,
    }
    rows = [
        {"name": f.name, "unit": f.unit, "ours": f.ours, "kafka": f.kafka, "ratio": f.ratio}
        for f in bench.figures
    ]
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    args.out.with_name(args.out.stem + "-meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print_table(bench.figures, meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
