"""`make bench`: our broker and Apache Kafka side by side, in the same run, alternating.

    .venv/bin/python bench/run.py [--quick] [--only FIGURE|txn,...] [--brokers ours,kafka]
        [--baseline-src DIR] [--rounds N] [--producers N] [--profile] [--out FILE]

Both brokers run at once on loopback, each in a fresh temporary store (Kafka 4.3.1 KRaft,
one combined node, with the JVM options of its start script: `BENCH_JVM_OPTIONS`). Every
figure is measured in rounds; each round measures every broker, and the order turns from round
to round (ours, Kafka / Kafka, ours / ...), so drift on the machine (other processes, page
cache, CPU frequency) falls on both. A figure is the median over its rounds (latency:
percentiles of the pooled samples). Ratio = ours / Kafka: above 1 is better for MB/s, msg/s
and %, below 1 for the rest. `--baseline-src DIR` adds our broker run from another source
tree as a third contender, "base" (before/after comparisons of an optimisation, same run).

The clients are load generators in their own processes (`bench/loadgen.py`):
- produce: confluent-kafka (librdkafka 2.x) `Producer`, one process (`--producers N` for
  more), linger.ms=5, batch.size=1000000 (librdkafka's defaults), compression.type=none,
  enable.idempotence=false, topics of 1 partition (`--partitions`), random payloads, a
  warm-up before the clock starts. `*_broker_cores` and `*_client_cores` say who was busy:
  a client near its ceiling means that broker's figure is the client's;
- produce latency: the same producer at a fixed 2,000 msg/s of 1 KiB, acks=all,
  linger.ms=0; latency is librdkafka's produce-to-acknowledgement time of each message;
- consume: a hand-rolled Fetch v12 client (the consumer defaults: fetch.max.bytes 50 MiB,
  max.partition.fetch.bytes 1 MiB, one fetch in flight) reading a 1 GiB topic of 1 KiB
  records from offset 0 to its high watermark, counting whole batches only: what the broker
  serves, held against loopback TCP bandwidth (`bench/loopback.py`, measured between rounds);
  and librdkafka's `Consumer` over the same topic (`consume_client_*`): what an application
  sees, bound by the Python client here;
- transactions (`--only txn`): a confluent-kafka transactional `Producer` (the produce
  settings above, with idempotence and acks=all as transactions require, and a queue of
  8 MiB so a transaction's records go out while it is open) producing 1 KiB records as fast
  as it can, each transaction open for 100 ms of produce() calls, then flushed, then
  committed, back to back, after one committed warm-up transaction. `txn_produce_mbps`:
  committed bytes over the whole run (flushes and commits included); `txn_commit_p50_ms`,
  `txn_commit_p99_ms`: each commit_transaction()'s time (EndTxn to its answer; the flush
  before it is logged, not counted), pooled over the rounds. The consume figures read a topic
  written the same way with 1 transaction in 10 aborted (flushed, then aborted: its records
  are in the log), the last one committed, once per broker: `consume_read_committed_mbps` and
  `consume_read_uncommitted_mbps` with the raw Fetch client at isolation_level 1 and 0 (to
  the last stable offset / high watermark, aborted batches included, as a read_committed
  reader receives them and drops them itself), `consume_client_read_*_mbps` with librdkafka's
  `Consumer` at isolation.level read_committed / read_uncommitted until it has every record
  that level delivers. All four divide the same amount, the topic's records (committed and
  aborted; batch bytes for the Fetch client, values for librdkafka), by the time to read to
  the end, so `*_read_committed_pct` (read_committed as % of read_uncommitted) is the cost of
  the isolation level, not the 10% of records it hides. The two levels alternate within a
  round, first one then the other.
Start-up: process start to ready, on an empty store, after one unmeasured start of each (page
cache, bytecode cache). Ours: until the `ready` line (interpreter start included). Kafka: its
store formatted beforehand, until Metadata lists the node (polled every 0.1 s). Idle RSS:
VmRSS a few seconds after ready; loaded and peak RSS (VmHWM): after every figure. CPU: utime +
stime of the broker process (all threads), over the measured part only.

Results: a table on stdout and `bench/out/latest.json`, a list of
`{"name", "unit", "ours", "kafka", "ratio"}`, plus `latest-meta.json` (load average, loopback,
options). MB are 10^6 bytes, GB 10^9 bytes. `--profile` records our broker with py-spy
(`pip install py-spy`) during each of its measured runs into `bench/out/profile-<figure>.txt`
(collapsed stacks; `bench/profile_top.py` summarises them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]

import procstat  # noqa: E402
from loopback import loopback_mbps  # noqa: E402

from tests.helpers.broker_process import BrokerProcess  # noqa: E402
from tests.helpers.confluent import create_topic  # noqa: E402
from tests.helpers.reference_kafka import (  # noqa: E402
    BENCH_JVM_OPTIONS,
    FORMAT_LIMIT_S,
    ReferenceKafka,
    cluster_id,
)

LOADGEN = BENCH_DIR / "loadgen.py"
DEFAULT_OUT = BENCH_DIR / "out" / "latest.json"
# Bytecode caches as an installed package has them (pip compiles on install). A sandbox that
# sets PYTHONDONTWRITEBYTECODE would otherwise make every broker start compile ~40k lines of
# generated codec first, which is not what a user's start costs. Kept out of the source tree.
PYCACHE_DIR = BENCH_DIR / "out" / "pycache"
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
NAME_WIDTH = 36  # the table's first column: consume_client_read_uncommitted_mbps
BUSY_LOAD = 1.0  # a 1-minute load average above this means others shared the cores
IDLE_SETTLE_S = 3.0  # after ready, before idle RSS: lazy start-up work (JIT, timers) is done
WORKER_LIMIT_S = 600.0  # a load generator still running after this is stuck

BROKERS = ("ours", "base", "kafka")  # base: ours from another source tree (--baseline-src)
FIGURES = (
    "startup",
    "produce_1k_acks1",
    "produce_1k_acksall",
    "produce_100b_acks1",
    "consume",
    "consume_client",
    "latency",
    "txn_produce",
    "txn_consume",
)
GROUPS = {"txn": ("txn_produce", "txn_consume")}  # --only shorthands
TXN_COMMIT_MS = 100  # a transaction's length: records produced for 100 ms, then committed
TXN_ABORT_EVERY = 10  # the read_committed topic: 1 transaction in 10 aborted
ISOLATIONS = ("read_uncommitted", "read_committed")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the full one (~11 min here) or `--quick` (a smoke run)."""

    rounds: int
    startup_rounds: int
    consume_bytes: int  # the topic the consume figures read
    produce_1k_bytes: int
    produce_1k_acksall_bytes: int
    produce_100b_messages: int
    consume_client_rounds: int
    latency_rounds: int
    txn_produce_bytes: int
    txn_consume_bytes: int  # the topic of committed and aborted transactions
    latency_s: float
    latency_warmup_s: float
    loopback_s: float
    idle_settle_s: float
    between_runs_s: float  # background work of the previous run (flushes, GC) settles first


FULL = Plan(
    rounds=5,
    startup_rounds=2,
    consume_bytes=GIB,
    produce_1k_bytes=512 * MIB,
    produce_1k_acksall_bytes=512 * MIB,
    produce_100b_messages=3_000_000,
    consume_client_rounds=2,
    latency_rounds=3,
    txn_produce_bytes=256 * MIB,
    txn_consume_bytes=256 * MIB,
    latency_s=10.0,
    latency_warmup_s=2.0,
    loopback_s=3.0,
    idle_settle_s=IDLE_SETTLE_S,
    between_runs_s=1.0,
)
QUICK = Plan(
    rounds=1,
    startup_rounds=0,
    consume_bytes=32 * MIB,
    produce_1k_bytes=32 * MIB,
    produce_1k_acksall_bytes=16 * MIB,
    produce_100b_messages=100_000,
    consume_client_rounds=1,
    latency_rounds=1,
    txn_produce_bytes=16 * MIB,
    txn_consume_bytes=16 * MIB,
    latency_s=1.0,
    latency_warmup_s=0.3,
    loopback_s=0.5,
    idle_settle_s=1.0,
    between_runs_s=0.2,
)


# --------------------------------------------------------------------------- brokers


@dataclass
class Broker:
    """One broker under test, running: its bootstrap, pid, and how to stop it."""

    name: str
    bootstrap: str
    pid: int
    stop: Callable[[], None]
    startup_s: float


def start_ours(root: Path, src: Path | None = None, name: str = "ours") -> Broker:
    """Our broker; from the source tree `src` instead of the installed one if given."""
    proc = BrokerProcess(
        root / "data",
        root / "logs",
        launcher=[sys.executable, "-m", "metamorphostreams.cli.main"],
        unbuffered=False,
        extra_env={"PYTHONPATH": str(src)} if src is not None else None,
    )
    began = time.monotonic()
    proc.start()
    startup = time.monotonic() - began
    assert proc.pid is not None

    def stop() -> None:
        try:
            proc.stop()
        finally:
            proc.close()

    return Broker(name, proc.bootstrap, proc.pid, stop, startup)


def start_kafka(root: Path) -> Broker:
    """Kafka with the JVM options its start script gives a broker; the store is formatted
    first, so the start-up figure is process start to the first Metadata listing the node."""
    kafka = ReferenceKafka(root, jvm_options=BENCH_JVM_OPTIONS, log_level="warn")
    kafka.root.mkdir(parents=True, exist_ok=True)
    kafka.properties_path.write_text("".join(f"{k}={v}\n" for k, v in kafka.properties().items()))
    with open(kafka.log_path, "ab") as log:
        subprocess.run(
            kafka.java_command(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id()}",
                "--config",
                str(kafka.properties_path),
            ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=FORMAT_LIMIT_S,
            check=True,
        )
    kafka.start()
    assert kafka.pid is not None and kafka.startup_s is not None

    def stop() -> None:
        try:
            kafka.stop()
        finally:
            kafka.close()

    return Broker("kafka", kafka.bootstrap, kafka.pid, stop, kafka.startup_s)


STARTERS: dict[str, Callable[[Path], Broker]] = {"ours": start_ours, "kafka": start_kafka}


def start_baseline(src: Path) -> Callable[[Path], Broker]:
    def start(root: Path) -> Broker:
        return start_ours(root, src, "base")

    return start


# --------------------------------------------------------------------------- workers


@dataclass
class RunResult:
    """One measured run of one broker: the workers' reports and the broker's CPU."""

    reports: list[dict[str, Any]]
    broker_cpu_s: float

    @property
    def elapsed_s(self) -> float:
        return max(r["end"] for r in self.reports) - min(r["start"] for r in self.reports)

    @property
    def bytes(self) -> int:
        return sum(int(r["bytes"]) for r in self.reports)

    @property
    def messages(self) -> int:
        return sum(int(r["messages"]) for r in self.reports)

    @property
    def client_cpu_s(self) -> float:
        return sum(float(r["client_cpu_s"]) for r in self.reports)


class Profiler:
    """py-spy attached to our broker while a run is measured (`--profile`)."""

    def __init__(self, enabled: bool, out_dir: Path) -> None:
        self.py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.enabled = enabled
        if enabled and not Path(self.py_spy).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out_dir = out_dir

    @contextlib.contextmanager
    def record(self, broker: Broker, figure: str) -> Iterator[None]:
        if not self.enabled or broker.name != "ours":
            yield
            return
        out = self.out_dir / f"profile-{figure}.txt"
        proc = subprocess.Popen(
            [
                self.py_spy,
                "record",
                "--pid",
                str(broker.pid),
                "--rate",
                "1000",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached before the clock starts
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


def run_workers(broker: Broker, argvs: list[list[str]]) -> RunResult:
    """Start the workers, wait until all are warmed up, let them go together, collect."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(LOADGEN), *argv, "--bootstrap", broker.bootstrap],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"load generator {argvs[0][0]} failed to start: {line!r}")
        cpu0 = procstat.cpu_seconds(broker.pid)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=WORKER_LIMIT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"load generator exited with {proc.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        cpu = procstat.cpu_seconds(broker.pid) - cpu0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for report in reports:
        if report.get("errors"):
            raise RuntimeError(f"{broker.name}: delivery errors: {report['errors']}")
    return RunResult(reports, cpu)


# --------------------------------------------------------------------------- the run


@dataclass
class Figure:
    name: str
    unit: str
    values: dict[str, float | None]
    higher_is_better: bool

    @property
    def ours(self) -> float | None:
        return self.values.get("ours")

    @property
    def kafka(self) -> float | None:
        return self.values.get("kafka")

    def ratio_to(self, other: str) -> float | None:
        theirs = self.values.get(other)
        if self.ours is None or theirs is None or theirs == 0:
            return None
        return self.ours / theirs

    @property
    def ratio(self) -> float | None:
        return self.ratio_to("kafka")


@dataclass
class Bench:
    plan: Plan
    brokers: dict[str, Broker]
    profiler: Profiler
    producers: int
    partitions: int
    figures: list[Figure] = field(default_factory=list)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # broker -> the 1 GiB topic
    txn_topics: dict[str, dict[str, Any]] = field(default_factory=dict)  # broker -> its report
    loopback_samples: list[float] = field(default_factory=list)

    @property
    def loopback_mbps(self) -> float:
        return statistics.median(self.loopback_samples)

    def order(self, round_no: int) -> list[Broker]:
        return [
            self.brokers[n] for n in _rotation([n for n in BROKERS if n in self.brokers], round_no)
        ]

    def add(self, name: str, unit: str, higher: bool, values: dict[str, float | None]) -> None:
        self.figures.append(Figure(name, unit, dict(values), higher))

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # -- produce

    def produce_run(
        self, broker: Broker, figure: str, topic: str, size: int, count: int, acks: str
    ) -> RunResult:
        create_topic(broker.bootstrap, topic, self.partitions)
        per = -(-count // self.producers)
        argv = ["produce", "--topic", topic, "--size", str(size), "--count", str(per)]
        argv += ["--acks", acks]
        with self.profiler.record(broker, figure):
            result = run_workers(broker, [argv] * self.producers)
        return result

    def produce_figure(self, figure: str, size: int, count: int, acks: str) -> None:
        mbps: dict[str, list[float]] = {}
        msgps: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        client: dict[str, list[float]] = {}
        cores: dict[str, list[float]] = {}
        for r in range(self.plan.rounds):
            for broker in self.order(r):
                topic = f"{figure}-r{r}"
                result = self.produce_run(broker, figure, topic, size, count, acks)
                rate = result.bytes / result.elapsed_s
                mbps.setdefault(broker.name, []).append(rate / 1e6)
                msgps.setdefault(broker.name, []).append(result.messages / result.elapsed_s)
                cpu.setdefault(broker.name, []).append(result.broker_cpu_s / (result.bytes / 1e9))
                client.setdefault(broker.name, []).append(result.client_cpu_s / result.elapsed_s)
                cores.setdefault(broker.name, []).append(result.broker_cpu_s / result.elapsed_s)
                self.log(
                    f"{figure} r{r} {broker.name}: {rate / 1e6:.1f} MB/s, "
                    f"{result.messages / result.elapsed_s:,.0f} msg/s, broker "
                    f"{result.broker_cpu_s / result.elapsed_s:.2f} cores, client "
                    f"{result.client_cpu_s / result.elapsed_s:.2f} cores"
                )
                time.sleep(self.plan.between_runs_s)
        rates = [(f"{figure}_mbps", "MB/s", mbps), (f"{figure}_msgps", "msg/s", msgps)]
        if size < KIB:
            rates.reverse()  # small messages: the message rate is the headline
        for name, unit, values in rates:
            self.add(name, unit, True, _medians(values))
        if figure == "produce_1k_acks1":
            self.add("cpu_s_per_gb", "CPU s/GB", False, _medians(cpu))
        # Who was busy: a client near its ceiling (~1 core of Python, more with librdkafka's
        # threads) means the figure is the client's, for that broker.
        self.add(f"{figure}_broker_cores", "cores", False, _medians(cores))
        self.add(f"{figure}_client_cores", "cores", False, _medians(client))

    # -- consume

    def ensure_consume_topic(self) -> None:
        for broker in self.brokers.values():
            if broker.name in self.topics:
                continue
            topic = "consume"
            self.log(f"writing the {self.plan.consume_bytes / GIB:.2f} GiB topic to {broker.name}")
            self.produce_run(
                broker, "prepare", topic, KIB, self.plan.consume_bytes // KIB, acks="1"
            )
            self.topics[broker.name] = topic

    def consume_figure(self, figure: str, rounds: int) -> None:
        self.ensure_consume_topic()
        time.sleep(self.plan.between_runs_s)
        mbps: dict[str, list[float]] = {}
        msgps: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for r in range(rounds):
            if figure == "consume":  # the machine's loopback bandwidth, interleaved
                self.loopback_samples.append(loopback_mbps(self.plan.loopback_s))
                self.log(f"loopback TCP: {self.loopback_samples[-1]:.0f} MB/s")
            for broker in self.order(r):
                topic = self.topics[broker.name]
                if figure == "consume":
                    argv = ["fetch", "--topic", topic, "--partitions", str(self.partitions)]
                else:
                    argv = ["consume", "--topic", topic, "--partitions", str(self.partitions)]
                with self.profiler.record(broker, figure):
                    result = run_workers(broker, [argv])
                rate = result.bytes / result.elapsed_s
                mbps.setdefault(broker.name, []).append(rate / 1e6)
                msgps.setdefault(broker.name, []).append(result.messages / result.elapsed_s)
                cpu.setdefault(broker.name, []).append(result.broker_cpu_s / (result.bytes / 1e9))
                self.log(
                    f"{figure} r{r} {broker.name}: {rate / 1e6:.1f} MB/s "
                    f"({result.bytes / 1e6:.0f} MB in {result.elapsed_s:.2f} s), broker "
                    f"{result.broker_cpu_s / result.elapsed_s:.2f} cores, client "
                    f"{result.client_cpu_s / result.elapsed_s:.2f} cores"
                )
                time.sleep(self.plan.between_runs_s)
        self.add(f"{figure}_mbps", "MB/s", True, _medians(mbps))
        self.add(f"{figure}_msgps", "msg/s", True, _medians(msgps))
        self.add(f"{figure}_cpu_s_per_gb", "CPU s/GB", False, _medians(cpu))

    # -- latency

    def latency_figure(self) -> None:
        pooled: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for r in range(self.plan.latency_rounds):
            for broker in self.order(r):
                topic = f"latency-r{r}"
                create_topic(broker.bootstrap, topic, self.partitions)
                argv = ["latency", "--topic", topic, "--size", str(KIB), "--acks", "all"]
                argv += ["--rate", "2000", "--seconds", str(self.plan.latency_s)]
                argv += ["--warmup", str(self.plan.latency_warmup_s)]
                with self.profiler.record(broker, "latency"):
                    result = run_workers(broker, [argv])
                samples = result.reports[0]["latencies_ms"]
                pooled.setdefault(broker.name, []).extend(samples)
                per_msg = result.broker_cpu_s / result.messages * 1e6
                cpu.setdefault(broker.name, []).append(per_msg)
                self.log(
                    f"latency r{r} {broker.name}: {len(samples)} acks, p50 "
                    f"{_fmt(_percentile(samples, 50))} ms, p99 {_fmt(_percentile(samples, 99))} ms"
                    f", rate {result.messages / result.elapsed_s:,.0f} msg/s, broker "
                    f"{per_msg:.0f} CPU us/msg"
                )
                time.sleep(self.plan.between_runs_s)
        for pct in (50, 99):
            values = {n: _percentile(s, pct) for n, s in pooled.items()}
            self.add(f"produce_p{pct}_ms", "ms", False, dict(values))
        self.add("latency_cpu_us_per_msg", "CPU us", False, _medians(cpu))

    # -- transactions

    def txn_produce_figure(self) -> None:
        mbps: dict[str, list[float]] = {}
        pooled: dict[str, list[float]] = {}
        client: dict[str, list[float]] = {}
        cores: dict[str, list[float]] = {}
        count = self.plan.txn_produce_bytes // KIB
        for r in range(self.plan.rounds):
            for broker in self.order(r):
                topic = f"txn_produce-r{r}"
                create_topic(broker.bootstrap, topic, self.partitions)
                argv = ["txn-produce", "--topic", topic, "--size", str(KIB), "--count", str(count)]
                argv += ["--commit-ms", str(TXN_COMMIT_MS)]
                with self.profiler.record(broker, "txn_produce"):
                    result = run_workers(broker, [argv])
                commits = result.reports[0]["commits_ms"]
                flushes = result.reports[0]["flushes_ms"]
                rate = result.bytes / result.elapsed_s
                mbps.setdefault(broker.name, []).append(rate / 1e6)
                pooled.setdefault(broker.name, []).extend(commits)
                client.setdefault(broker.name, []).append(result.client_cpu_s / result.elapsed_s)
                cores.setdefault(broker.name, []).append(result.broker_cpu_s / result.elapsed_s)
                self.log(
                    f"txn_produce r{r} {broker.name}: {rate / 1e6:.1f} MB/s, {len(commits)} "
                    f"commits, p50 {_fmt(_percentile(commits, 50))} ms, p99 "
                    f"{_fmt(_percentile(commits, 99))} ms (flush before: p50 "
                    f"{_fmt(_percentile(flushes, 50))} ms), broker "
                    f"{result.broker_cpu_s / result.elapsed_s:.2f} cores, client "
                    f"{result.client_cpu_s / result.elapsed_s:.2f} cores"
                )
                time.sleep(self.plan.between_runs_s)
        self.add("txn_produce_mbps", "MB/s", True, _medians(mbps))
        for pct in (50, 99):
            values = {n: _percentile(s, pct) for n, s in pooled.items()}
            self.add(f"txn_commit_p{pct}_ms", "ms", False, dict(values))
        self.add("txn_produce_broker_cores", "cores", False, _medians(cores))
        self.add("txn_produce_client_cores", "cores", False, _medians(client))

    def ensure_txn_topic(self) -> None:
        """Per broker, a topic of transactions of 1 KiB records, 1 in TXN_ABORT_EVERY aborted."""
        for broker in self.brokers.values():
            if broker.name in self.txn_topics:
                continue
            topic = "txn_consume"
            self.log(
                f"writing the {self.plan.txn_consume_bytes / MIB:.0f} MiB transactional topic "
                f"to {broker.name}"
            )
            create_topic(broker.bootstrap, topic, self.partitions)
            count = self.plan.txn_consume_bytes // KIB
            argv = ["txn-produce", "--topic", topic, "--size", str(KIB), "--count", str(count)]
            argv += ["--commit-ms", str(TXN_COMMIT_MS), "--abort-every", str(TXN_ABORT_EVERY)]
            report = run_workers(broker, [argv]).reports[0]
            report["messages"] += report["warmup_messages"]  # committed before the clock
            self.txn_topics[broker.name] = {"topic": topic, **report}

    def txn_consume_figure(self) -> None:
        """Read the transactional topic with both isolation levels, the two alternating within
        a round: the raw Fetch client (what the broker serves) and librdkafka's consumer."""
        self.ensure_txn_topic()
        time.sleep(self.plan.between_runs_s)
        fetch: dict[str, dict[str, list[float]]] = {iso: {} for iso in ISOLATIONS}
        client: dict[str, dict[str, list[float]]] = {iso: {} for iso in ISOLATIONS}
        for r in range(self.plan.rounds):
            for broker in self.order(r):
                prepared = self.txn_topics[broker.name]
                topic = prepared["topic"]
                committed, aborted = prepared["messages"], prepared["aborted_messages"]
                log_bytes = (committed + aborted) * KIB  # what both levels read through
                isolations = ISOLATIONS if r % 2 == 0 else tuple(reversed(ISOLATIONS))
                for kind, figures in (("fetch", fetch), ("consume", client)):
                    if kind == "consume" and r >= self.plan.consume_client_rounds:
                        continue
                    for iso in isolations:
                        expect = committed + (aborted if iso == "read_uncommitted" else 0)
                        argv = [kind, "--topic", topic, "--partitions", str(self.partitions)]
                        argv += ["--isolation", iso]
                        if kind == "consume":
                            argv += ["--expect", str(expect)]
                        label = f"{'consume' if kind == 'fetch' else 'consume_client'}_{iso}"
                        with self.profiler.record(broker, label):
                            result = run_workers(broker, [argv])
                        if kind == "consume" and result.messages != expect:
                            raise RuntimeError(
                                f"{broker.name}: {label} read {result.messages} records of {expect}"
                            )
                        read = result.bytes if kind == "fetch" else log_bytes
                        rate = read / result.elapsed_s / 1e6
                        figures[iso].setdefault(broker.name, []).append(rate)
                        self.log(
                            f"{label} r{r} {broker.name}: {rate:.1f} MB/s "
                            f"({result.messages:,} records in {result.elapsed_s:.2f} s), broker "
                            f"{result.broker_cpu_s / result.elapsed_s:.2f} cores, client "
                            f"{result.client_cpu_s / result.elapsed_s:.2f} cores"
                        )
                        time.sleep(self.plan.between_runs_s)
        for prefix, figures in (("consume", fetch), ("consume_client", client)):
            for iso in ISOLATIONS:
                self.add(f"{prefix}_{iso}_mbps", "MB/s", True, _medians(figures[iso]))
            medians = {iso: _medians(figures[iso]) for iso in ISOLATIONS}
            pct: dict[str, float | None] = {}
            for n, committed_mbps in medians["read_committed"].items():
                uncommitted_mbps = medians["read_uncommitted"].get(n)
                if committed_mbps is not None and uncommitted_mbps:
                    pct[n] = committed_mbps / uncommitted_mbps * 100
            self.add(f"{prefix}_read_committed_pct", "%", True, pct)


def _rotation(names: list[str], round_no: int) -> list[str]:
    """Round 0: as given; then reversed, then rotated: each broker goes first in turn."""
    if round_no % 2:
        names = list(reversed(names))
    shift = (round_no // 2) % len(names)
    return names[shift:] + names[:shift]


def _medians(values: dict[str, list[float]]) -> dict[str, float | None]:
    return {name: statistics.median(v) for name, v in values.items()}


def _percentile(samples: list[float], pct: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return float(ordered[rank])


def measure_startups(
    names: list[str], rounds: int, root: Path, bench_log: Callable[[str], None]
) -> dict[str, list[float]]:
    """Start and stop each broker `rounds` times on a fresh store, alternating; the time from
    process start to ready (ours: the `ready` line; Kafka: Metadata lists the node). The
    brokers started for the load figures add one more sample each."""
    times: dict[str, list[float]] = {}
    for name in names:
        if name != "kafka" or rounds:
            # Unmeasured: fills the page cache (jars, .pyc) and writes our bytecode cache.
            STARTERS[name](root / f"startup-{name}-warmup").stop()
    for r in range(rounds):
        for name in _rotation(names, r):
            broker = STARTERS[name](root / f"startup-{name}-{r}")
            broker.stop()
            times.setdefault(name, []).append(broker.startup_s)
            bench_log(f"startup r{r} {name}: {broker.startup_s:.3f} s")
    return times


def print_table(figures: list[Figure], meta: dict[str, Any]) -> None:
    names = [n for n in BROKERS if any(n in f.values for f in figures)]
    head = f"{'figure':<{NAME_WIDTH}} {'unit':<9}" + "".join(f" {n:>11}" for n in names)
    head += f" {'ours/kafka':>10}" + (f" {'ours/base':>9}" if "base" in names else "")
    print()
    print(head)
    print("-" * len(head))
    for f in figures:
        row = f"{f.name:<{NAME_WIDTH}} {f.unit:<9}"
        row += "".join(f" {_fmt(f.values.get(n)):>11}" for n in names)
        row += f" {_fmt_ratio(f.ratio):>10}"
        if "base" in names:
            row += f" {_fmt_ratio(f.ratio_to('base')):>9}"
        print(row)
    print()
    print(
        f"(higher is better for MB/s, msg/s and %; lower for the rest.) Loopback TCP "
        f"{meta['loopback_mbps']:.0f} MB/s; load average {meta['loadavg_start']} at start, "
        f"{meta['loadavg_end']} at end; {meta['elapsed_s']:.0f} s"
    )
    if meta["quick"]:
        print("--quick: a smoke run; cold JVM, tiny sizes: these figures compare nothing.")
    busiest = max(float(meta[k].split()[0]) for k in ("loadavg_start", "loadavg_end"))
    if busiest > BUSY_LOAD:
        print(
            f"warning: load average {busiest:.1f} on {os.cpu_count()} cores: other processes "
            "shared the machine, and the figures are noisier for it."
        )


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {FIGURES}, or {sorted(GROUPS)}"
    )
    parser.add_argument("--brokers", default="ours,kafka", help="ours,kafka (default both)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure our broker from this source tree (its src/ folder) as 'base'",
    )
    parser.add_argument("--rounds", type=int, default=0, help="rounds per figure (5; latency 3)")
    parser.add_argument("--startup-rounds", type=int, default=-1, help="override start-ups")
    parser.add_argument("--producers", type=int, default=1, help="producer processes per run")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic")
    parser.add_argument("--profile", action="store_true", help="py-spy our broker")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the brokers' stores")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds, "latency_rounds": args.rounds})
    if args.startup_rounds >= 0:
        plan = Plan(**{**plan.__dict__, "startup_rounds": args.startup_rounds})
    only = [g for f in args.only.split(",") if f for g in GROUPS.get(f, (f,))] or list(FIGURES)
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures {sorted(unknown)}; known: {FIGURES}, {sorted(GROUPS)}")
    names = [n for n in args.brokers.split(",") if n]
    if set(names) - {"ours", "kafka"}:
        parser.error("--brokers takes ours and/or kafka")
    if args.baseline_src is not None:
        if not (args.baseline_src / "metamorphostreams").is_dir():
            parser.error(f"--baseline-src {args.baseline_src} has no metamorphostreams/")
        STARTERS["base"] = start_baseline(args.baseline_src.resolve())
        names.insert(1, "base")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mms-bench-"))
    loadavg_start = _loadavg()
    bench = Bench(
        plan, {}, Profiler(args.profile, args.out.parent), args.producers, args.partitions
    )
    try:
        run_figures(bench, names, only, root)
    finally:
        for broker in bench.brokers.values():
            try:
                broker.stop()
            except Exception as e:  # report the figures anyway; the store is removed below
                print(f"stopping {broker.name}: {e}", file=sys.stderr)
        if args.keep:
            print(f"stores kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    meta = {
        "loopback_mbps": bench.loopback_mbps,
        "loadavg_start": loadavg_start,
        "loadavg_end": _loadavg(),
        "elapsed_s": time.monotonic() - began,
        "producers": args.producers,
        "partitions": args.partitions,
        "quick": args.quick,
        "base": {f.name: f.values.get("base") for f in bench.figures} if "base" in names else None,
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


def run_figures(bench: Bench, names: list[str], only: list[str], root: Path) -> None:
    plan = bench.plan
    bench.log(f"loopback baseline ({plan.loopback_s:.0f} s)")
    bench.loopback_samples.append(loopback_mbps(plan.loopback_s))
    bench.log(f"loopback TCP: {bench.loopback_samples[-1]:.0f} MB/s")

    rounds = plan.startup_rounds if "startup" in only else 0
    startup = measure_startups(names, rounds, root, bench.log)
    for name in names:
        broker = bench.brokers[name] = STARTERS[name](root / name)
        startup.setdefault(name, []).append(broker.startup_s)
        bench.log(f"{name} up on {broker.bootstrap} (pid {broker.pid}) in {broker.startup_s:.3f} s")
    time.sleep(plan.idle_settle_s)
    bench.add("startup_s", "s", False, _medians(startup))
    bench.add(
        "idle_rss_mb", "MB", False, {n: procstat.rss_mb(b.pid) for n, b in bench.brokers.items()}
    )

    if "produce_1k_acks1" in only:
        bench.produce_figure("produce_1k_acks1", KIB, plan.produce_1k_bytes // KIB, "1")
    if "produce_1k_acksall" in only:
        bench.produce_figure("produce_1k_acksall", KIB, plan.produce_1k_acksall_bytes // KIB, "all")
    if "produce_100b_acks1" in only:
        bench.produce_figure("produce_100b_acks1", 100, plan.produce_100b_messages, "1")
    if "consume" in only:
        bench.consume_figure("consume", plan.rounds)
    if "consume_client" in only:
        bench.consume_figure("consume_client", plan.consume_client_rounds)
    if "latency" in only:
        bench.latency_figure()
    if "txn_produce" in only:
        bench.txn_produce_figure()
    if "txn_consume" in only:
        bench.txn_consume_figure()
    brokers = bench.brokers.items()
    bench.add("loaded_rss_mb", "MB", False, {n: procstat.rss_mb(b.pid) for n, b in brokers})
    bench.add("peak_rss_mb", "MB", False, {n: procstat.peak_rss_mb(b.pid) for n, b in brokers})
    loopback = bench.loopback_mbps
    consume = next((f for f in bench.figures if f.name == "consume_mbps"), None)
    if consume is not None:
        pct = {n: v / loopback * 100 for n, v in consume.values.items() if v is not None}
        bench.add("consume_pct_of_loopback", "%", True, dict(pct))
    bench.add("loopback_tcp_mbps", "MB/s", True, dict.fromkeys(names, loopback))


if __name__ == "__main__":
    sys.exit(main())
