"""Exactly-once under crashes: consume-transform-produce with confluent-kafka
(send_offsets_to_transaction) from 3 input partitions to 3 output partitions, 50,000 records,
while the transforming process is SIGKILLed and restarted 5 times, and, in the second test,
while the broker is SIGKILLed mid-transaction and restarted 5 times.

The transformer is a program of its own (eos_transformer.py, see there): a group member with
read_committed and a transactional producer with a fixed transactional.id; each transaction
copies a few hundred input records to the output partition of the same number, tagged with
their input partition and offset, and commits the consumed offsets with them.

Afterwards the output read with read_committed holds each input (partition, offset) exactly
once, in input order within each partition, and the group's committed offsets are the input's
end offsets. The kills aim at transactions whose records are on the broker but not yet
committed (the transformer says "open" there and holds a moment; every other kill lands a
random moment later, in or after the commit). What the crashes left behind aborted
(read_uncommitted sees it) is a figure; after transformer kills there must be some. In the
broker test the open transaction usually commits after the restart (its records and the
coordinator's state are on disk), so nothing need be aborted there.

To replay a run: MMS_EOS_SEED=<seed from the figures>; to trace librdkafka:
MMS_EOS_TRANSFORMER_ARGS="--debug eos,cgrp,protocol" (the transformer logs are in the test's
tmp_path).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import (
    client_config,
    consume_all,
    create_topic,
    offset_of,
    produce_with_backpressure,
    value_of,
)

from .conftest import Figures

TRANSFORMER = Path(__file__).with_name("eos_transformer.py")
RECORDS = 50_000
PARTITIONS = 3
KILLS = 5
CHUNK = 250  # records per transaction: small, so most of the time one is open
KILL_WINDOW = (0.05, 0.85)  # kills happen once this share of the input is committed
KILL_JITTER_S = (0.0, 0.15)  # then after a random delay, at the next "open" transaction
HOLD_MS = 20  # the transformer waits this long between "open" and committing: kill window
COMMIT_SPREAD_S = (0.0, 0.1)  # odd kills: this long after "open" (a commit takes ~30 ms)
OPEN_WAIT_S = 10.0  # bound on waiting for the next "open" line; transactions take ~50 ms
BROKER_DOWN_S = (0.0, 0.5)  # how long the killed broker stays down
RUN_LIMIT_S = 150.0  # bound on the whole transformation; a healthy run takes far less
PADDING = b"x" * 40
COMMITTED: dict[str, Any] = {"isolation.level": "read_committed"}
UNCOMMITTED: dict[str, Any] = {"isolation.level": "read_uncommitted"}
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": 0}
SEED_ENV = "MMS_EOS_SEED"
EXTRA_ARGS_ENV = "MMS_EOS_TRANSFORMER_ARGS"  # more transformer options: "--debug eos,broker"


@dataclass
class Transformer:
    """The transformer program run as a subprocess, again and again: its stdout lines are
    parsed on a thread (``committed P:OFF ...``), both streams appended to log files."""

    argv: list[str]
    log_dir: Path
    committed: dict[int, int] = field(default_factory=dict)  # highest reported, per partition
    commits: int = 0
    aborts: int = 0
    exits: list[int] = field(default_factory=list)  # return codes of finished incarnations
    starts: int = 0
    _proc: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _commits_at_start: int = 0
    opened: threading.Event = field(default_factory=threading.Event)  # an "open" line came
    last_event: str = ""  # the first word of the last line read

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / "transformer-stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "transformer-stderr.log"

    def start(self) -> None:
        assert self._proc is None or self._proc.poll() is not None, "transformer still running"
        self.starts += 1
        marker = f"===== start #{self.starts}\n".encode()
        with open(self.stdout_path, "ab") as out:
            out.write(marker)
        with open(self.stderr_path, "ab") as err:
            err.write(marker)
            err.flush()
            self._proc = subprocess.Popen(
                [sys.executable, str(TRANSFORMER), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        with self._lock:
            self._commits_at_start = self.commits
        self._pump = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name="transformer-stdout", daemon=True
        )
        self._pump.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with open(self.stdout_path, "ab") as out:
            for raw in iter(stream.readline, b""):
                out.write(raw)
                out.flush()
                words = raw.decode("utf-8", "replace").split()
                with self._lock:
                    self.last_event = words[0] if words else ""
                    if words[:1] == ["open"]:
                        self.opened.set()
                    elif words[:1] == ["committed"]:
                        self.commits += 1
                        for word in words[1:]:
                            partition, _, offset = word.partition(":")
                            p, o = int(partition), int(offset)
                            self.committed[p] = max(self.committed.get(p, 0), o)
                    elif words[:1] == ["aborted"]:
                        self.aborts += 1
        stream.close()

    def in_open_transaction(self) -> bool:
        """Its last word was "open": a transaction's records are on the broker, uncommitted."""
        with self._lock:
            return self.last_event == "open"

    def committed_total(self) -> int:
        with self._lock:
            return sum(self.committed.values())

    def commits_this_run(self) -> int:
        with self._lock:
            return self.commits - self._commits_at_start

    def poll(self) -> int | None:
        """The return code once the current incarnation has exited (and been accounted)."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None and len(self.exits) < self.starts:
            self._join()
            self.exits.append(code)
        return code

    def dump_stacks(self) -> None:
        """Have the running transformer write its Python stacks to its stderr log."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)

    def kill(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(10)
        self.poll()

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.kill()

    def _join(self) -> None:
        if self._pump is not None:
            self._pump.join(5)

    def progress(self) -> str:
        with self._lock:
            return (
                f"committed offsets {dict(sorted(self.committed.items()))} "
                f"({sum(self.committed.values())}/{RECORDS}), {self.commits} commits, "
                f"{self.aborts} aborts, {self.starts} starts, exits {self.exits}"
            )

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            text = self.stderr_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Setup:
    broker: BrokerProcess
    source: str
    sink: str
    group: str
    ends: list[int]
    transformer: Transformer


def _setup(broker_factory: BrokerFactory, tmp_path: Path) -> Setup:
    broker = broker_factory(BROKER_SETTINGS)
    tag = uuid.uuid4().hex[:6]
    source, sink, group = f"eos-in-{tag}", f"eos-out-{tag}", f"eos-group-{tag}"
    create_topic(broker.bootstrap, source, PARTITIONS)
    create_topic(broker.bootstrap, sink, PARTITIONS)
    ends = _feed(broker.bootstrap, source)
    argv = [
        "--bootstrap", broker.bootstrap,
        "--input", source,
        "--output", sink,
        "--group", group,
        "--transactional-id", f"eos-{tag}",
        "--end-offsets", ",".join(map(str, ends)),
        "--chunk", str(CHUNK),
        "--hold-ms", str(HOLD_MS),
        *os.environ.get(EXTRA_ARGS_ENV, "").split(),
    ]  # fmt: skip
    return Setup(broker, source, sink, group, ends, Transformer(argv, tmp_path))


def _feed(bootstrap: str, topic: str) -> list[int]:
    """RECORDS plain records round-robin over the input partitions; their end offsets."""
    producer = Producer(client_config(bootstrap, **{"enable.idempotence": True, "linger.ms": 20}))
    for i in range(RECORDS):
        produce_with_backpressure(
            producer, topic=topic, partition=i % PARTITIONS, value=b"%06d-" % i + PADDING
        )
    assert producer.flush(60) == 0, "the input was not all delivered"
    ends = [len(range(p, RECORDS, PARTITIONS)) for p in range(PARTITIONS)]
    consumer = Consumer(client_config(bootstrap, **{"group.id": "eos-watermarks"}))
    try:
        found = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()
    assert [high for _low, high in found] == ends, f"input watermarks {found}, expected {ends}"
    return ends


def _kill_points(rng: random.Random) -> list[int]:
    """Committed-record counts at which the kills happen, spread over KILL_WINDOW."""
    low, high = (int(RECORDS * share) for share in KILL_WINDOW)
    span = (high - low) // KILLS
    return [low + i * span + rng.randrange(span // 2) for i in range(KILLS)]


@dataclass
class Kills:
    done: int = 0
    mid_transaction: int = 0  # kills that struck while the transformer's last word was "open"


def _run(
    setup: Setup, kill_points: list[int], kill: Callable[[], None], rng: random.Random
) -> Kills:
    """Run the transformer to the end, restarting it whenever it exits non-zero, and call
    ``kill`` once the committed count passes each kill point: after a random delay, at the
    next transaction whose records are on the broker but not committed (every other kill a
    random moment later, in or after its commit), and only once the current transformer
    incarnation has committed something."""
    transformer = setup.transformer
    transformer.start()
    kills = Kills()
    deadline = time.monotonic() + RUN_LIMIT_S
    while True:
        code = transformer.poll()
        if code == 0:
            break
        if code is not None:
            transformer.start()
        if time.monotonic() > deadline:
            transformer.dump_stacks()
            raise AssertionError(
                f"the transformation did not finish within {RUN_LIMIT_S:.0f} s: "
                f"{kills.done} kills, {transformer.progress()}\n"
                f"transformer stderr tail:\n{transformer.stderr_tail()}"
            )
        if (
            kills.done < len(kill_points)
            and transformer.committed_total() >= kill_points[kills.done]
            and transformer.commits_this_run() > 0
        ):
            time.sleep(rng.uniform(*KILL_JITTER_S))
            transformer.opened.clear()
            # No "open" within the bound: kill anyway (the figures show it), the run goes on.
            transformer.opened.wait(OPEN_WAIT_S)
            if kills.done % 2:
                # Every other kill somewhere in the commit that follows (AddOffsetsToTxn,
                # TxnOffsetCommit, EndTxn, the markers) or just after it.
                time.sleep(rng.uniform(*COMMIT_SPREAD_S))
            mid_transaction = transformer.in_open_transaction()
            kill()
            kills.done += 1
            kills.mid_transaction += mid_transaction
            continue
        time.sleep(0.01)
    return kills


def _check_exactly_once(setup: Setup, figures: Figures) -> int:
    """Each input (partition, offset) exactly once in the committed output, in order.
    Returns how many aborted records read_committed hid."""
    bootstrap, sink = setup.broker.bootstrap, setup.sink
    read = consume_all(bootstrap, sink, range(PARTITIONS), **COMMITTED)
    problems: list[str] = []
    for out_partition in range(PARTITIONS):
        seen: list[int] = []
        where: dict[int, list[int]] = {}
        for msg in read[out_partition]:
            in_partition, in_offset, _rest = value_of(msg).split(b":", 2)
            if int(in_partition) != out_partition:
                problems.append(
                    f"output {out_partition}@{offset_of(msg)} holds input "
                    f"{int(in_partition)}:{int(in_offset)}"
                )
                continue
            seen.append(int(in_offset))
            where.setdefault(int(in_offset), []).append(offset_of(msg))
        expected = range(setup.ends[out_partition])
        if seen == list(expected):
            continue
        dups = {o: at for o, at in where.items() if len(at) > 1}
        missing = sorted(set(expected) - set(where))
        disorder = [(a, b) for a, b in itertools.pairwise(seen) if b <= a]
        problems.append(
            f"input partition {out_partition}: {len(seen)} outputs for {len(expected)} inputs; "
            f"{len(dups)} duplicated (input offset: output offsets) {_head(dups)}; "
            f"{len(missing)} missing {_ranges(missing)}; "
            f"{len(disorder)} out of order {disorder[:5]}"
        )
    assert not problems, (
        "exactly-once violated:\n"
        + "\n".join(problems)
        + f"\n(transformer logs: {setup.transformer.stderr_path}, broker log: "
        f"{setup.broker.stderr_path})"
    )

    committed = _group_offsets(bootstrap, setup.group, setup.source)
    assert committed == setup.ends, f"group committed {committed}, input ends {setup.ends}"

    everything = consume_all(bootstrap, sink, range(PARTITIONS), **UNCOMMITTED)
    total = sum(len(m) for m in everything.values())
    figures("records in the output log (read_uncommitted)", total)
    figures("aborted records hidden by read_committed", total - RECORDS)
    return total - RECORDS


def _group_offsets(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer(client_config(bootstrap, **{"group.id": group, **COMMITTED}))
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30
        )
        return [tp.offset for tp in found]
    finally:
        consumer.close()


def _head(d: dict[int, list[int]], n: int = 5) -> str:
    return str(dict(list(sorted(d.items()))[:n]))


def _ranges(offsets: list[int], n: int = 5) -> str:
    """Sorted offsets as a few ``first-last`` runs."""
    runs: list[list[int]] = []
    for o in offsets:
        if runs and o == runs[-1][1] + 1:
            runs[-1][1] = o
        else:
            runs.append([o, o])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs[:n]) + (
        " ..." if len(runs) > n else ""
    )


def _seed() -> int:
    """A fresh random seed, or $MMS_EOS_SEED to replay a run's kill points and delays."""
    fixed = os.environ.get(SEED_ENV, "").strip()
    return int(fixed) if fixed else random.randrange(1 << 30)


def _report(setup: Setup, figures: Figures, kills: Kills, began: float, seed: int) -> None:
    transformer = setup.transformer
    figures("kills, of them mid-transaction", (kills.done, kills.mid_transaction))
    figures("transformation s", round(time.monotonic() - began, 1))
    figures("transactions committed / aborted", (transformer.commits, transformer.aborts))
    figures(
        "transformer starts, exit codes", (transformer.starts, dict(Counter(transformer.exits)))
    )
    figures("seed", seed)


@pytest.mark.timeout(300)
def test_transformer_killed_5_times_outputs_each_record_once(
    broker_factory: BrokerFactory, tmp_path: Path, figures: Figures
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    setup = _setup(broker_factory, tmp_path)
    transformer = setup.transformer
    began = time.monotonic()
    try:
        kills = _run(setup, _kill_points(rng), transformer.kill, rng)
    finally:
        transformer.close()
    _report(setup, figures, kills, began, seed)
    assert kills.done == KILLS, (
        f"only {kills.done} kills happened (seed {seed}): {transformer.progress()}"
    )
    hidden = _check_exactly_once(setup, figures)
    assert hidden > 0, (
        f"no kill left an aborted transaction in the log ({kills.mid_transaction} of "
        f"{kills.done} struck while one was open): the test did not test what it says"
    )


@pytest.mark.timeout(300)
def test_broker_killed_5_times_mid_transaction_outputs_each_record_once(
    broker_factory: BrokerFactory, tmp_path: Path, figures: Figures
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    setup = _setup(broker_factory, tmp_path)
    transformer, broker = setup.transformer, setup.broker
    restart_s: list[float] = []

    def kill_broker() -> None:
        broker.kill()
        time.sleep(rng.uniform(*BROKER_DOWN_S))
        started = time.monotonic()
        broker.start()
        restart_s.append(time.monotonic() - started)

    began = time.monotonic()
    try:
        kills = _run(setup, _kill_points(rng), kill_broker, rng)
    finally:
        transformer.close()
    _report(setup, figures, kills, began, seed)
    figures("broker restart s (max)", round(max(restart_s, default=0.0), 2))
    assert kills.done == KILLS, (
        f"only {kills.done} kills happened (seed {seed}): {transformer.progress()}"
    )
    _check_exactly_once(setup, figures)
