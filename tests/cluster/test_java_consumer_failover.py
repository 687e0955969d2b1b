"""The Java consumer follows leader changes with no manual step.

FollowingConsumer (tests/interop/java/) reads both partitions of an RF=3 topic from offset 0
while an idempotent acks=all confluent-kafka producer writes a fixed number of records and
the leader of partition 0 is SIGKILLed (and restarted) twice. The consumer must print
exactly the acknowledged records of each partition: in offset order, none twice, none
missing.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer
from helpers.confluent import client_config, wait_until
from helpers.zookeeper import ZooKeeperServer
from interop import conftest as interop_conftest

from .conftest import BrokerCluster, new_chroot
from .test_replication import LIMIT_S, _create, _live_bootstrap, _partitions, _wait_full_isr

MAIN_CLASS = "metamorphostreams.interop.FollowingConsumer"
PARTITIONS = 2
PER_PARTITION = 3000
STEP = 15  # records per partition per step of the paced producer (at most ~150/s)
STEP_S = 0.1
KILLS = 2
# Kill k once the producer has sent KILL_AT[k] records per partition; it holds at HOLD_AT[k]
# until kill k happened, so every kill lands while records are still being written.
KILL_AT = [PER_PARTITION * (k + 1) // (KILLS + 2) for k in range(KILLS)]
HOLD_AT = [*KILL_AT[1:], PER_PARTITION - PER_PARTITION // 10]
CONSUMER_LIMIT_MS = 150_000  # only a consumer that never finds the new leader gets near it

pytestmark = pytest.mark.timeout(300)

java_programs = interop_conftest.java_programs  # the session fixture, made visible here


@pytest.fixture(scope="session")
def following_consumer(java_programs: list[str]) -> list[str]:
    """The command that runs FollowingConsumer (compiled by `java_programs`)."""
    return [*java_programs, MAIN_CLASS]


@pytest.fixture
def cluster(zookeeper: ZooKeeperServer, tmp_path: Path) -> Iterator[BrokerCluster]:
    c = BrokerCluster(new_chroot(zookeeper), tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.close()


class _Lines:
    """Every stdout line of a process, collected by a thread as it is printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _kill_leaders(
    cluster: BrokerCluster,
    topic: str,
    printed: _Lines,
    sent: list[int],
    killed: list[threading.Event],
) -> None:
    """SIGKILL the leader of partition 0 once the producer is at KILL_AT[k], wait for its
    successor, restart it and wait for the full ISR; KILLS times."""
    wait_until(lambda: len(printed.lines) > 0, "the Java consumer's first record", LIMIT_S)
    for k in range(KILLS):
        wait_until(
            lambda k=k: sent[0] >= KILL_AT[k],
            "the producer to get going",
            LIMIT_S,
        )
        leader = _partitions(_live_bootstrap(cluster), topic)[0][0]
        assert leader >= 0
        cluster.brokers[leader].kill()
        killed[k].set()
        print(f"kill {k + 1}: broker {leader}, {sent[0]} records per partition sent")
        wait_until(
            lambda old=leader: _partitions(_live_bootstrap(cluster), topic)[0][0] not in (old, -1),
            f"a new leader after the kill of broker {leader}",
            LIMIT_S,
        )
        cluster.brokers[leader].start()
        _wait_full_isr(cluster, topic, 3)


def test_java_consumer_follows_leader_changes(
    cluster: BrokerCluster,
    following_consumer: list[str],
    tmp_path: Path,
) -> None:
    topic = "followed"
    _create(cluster, topic, PARTITIONS, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)

    stderr_path = tmp_path / "following-consumer.stderr"
    argv = [
        *following_consumer,
        *("--bootstrap", cluster.bootstrap, "--topic", topic),
        *("--partitions", str(PARTITIONS), "--expect", str(PARTITIONS * PER_PARTITION)),
        *("--limit-ms", str(CONSUMER_LIMIT_MS)),
    ]
    with stderr_path.open("w") as stderr:
        consumer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    printed = _Lines(consumer)

    producer = Producer(
        client_config(
            cluster.bootstrap,
            **{
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
            },
        )
    )
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    failed: list[KafkaError] = []
    lock = threading.Lock()
    sent = [0]  # records per partition handed to the producer so far
    killed = [threading.Event() for _ in range(KILLS)]
    stop = threading.Event()

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(err)
            return
        partition, offset, value = msg.partition(), msg.offset(), msg.value()
        assert partition is not None and offset is not None and value is not None
        with lock:
            acked[partition].append((offset, value))

    def send() -> None:
        gates = dict(zip(HOLD_AT, killed, strict=True))
        i = 0
        step_due = time.monotonic()
        while i < PER_PARTITION and not stop.is_set():
            gate = next((e for at, e in gates.items() if i >= at and not e.is_set()), None)
            if gate is not None:
                gate.wait(0.1)
                producer.poll(0)
                step_due = time.monotonic()
                continue
            for j in range(i, min(i + STEP, PER_PARTITION)):
                for p in range(PARTITIONS):
                    while True:
                        try:
                            producer.produce(
                                topic, value=f"{p}:{j}".encode(), partition=p, on_delivery=report
                            )
                            break
                        except BufferError:
                            producer.poll(0.05)
            i = min(i + STEP, PER_PARTITION)
            sent[0] = i
            # poll() returns early when it serves a delivery report: pace by the clock.
            step_due += STEP_S
            while (left := step_due - time.monotonic()) > 0:
                producer.poll(left)
        producer.flush(120)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        try:
            _kill_leaders(cluster, topic, printed, sent, killed)
        except BaseException:
            stop.set()
            raise
        finally:
            for event in killed:
                event.set()
            sender.join(180)
        consumer.wait(CONSUMER_LIMIT_MS / 1000 + 60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
        printed.join(10)

    report_text = (
        f"FollowingConsumer exited {consumer.returncode}, last lines:\n"
        + "\n".join(printed.lines[-10:])
        + f"\n--- stderr (tail):\n{stderr_path.read_text()[-4000:]}"
    )
    assert failed == []
    assert consumer.returncode == 0, report_text
    assert printed.lines[-1] == f"DONE {PARTITIONS * PER_PARTITION}", report_text
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for line in printed.lines[:-1]:
        partition, offset, value = line.split(" ", 2)
        got[int(partition)].append((int(offset), value.encode()))
    for p in range(PARTITIONS):
        want = sorted(acked[p])
        assert len(want) == PER_PARTITION
        # The acknowledged records themselves: offsets 0..N-1, values in send order.
        assert [offset for offset, _ in want] == list(range(PER_PARTITION))
        assert [value for _, value in want] == [f"{p}:{j}".encode() for j in range(PER_PARTITION)]
        if got[p] == want:
            continue
        offsets = [offset for offset, _ in got[p]]
        duplicates = len(offsets) - len(set(offsets))
        missing = sorted(set(range(PER_PARTITION)) - set(offsets))[:20]
        out_of_order = next(
            (n for n in range(1, len(offsets)) if offsets[n] <= offsets[n - 1]), None
        )
        wrong = next((g for g, w in zip(got[p], want, strict=False) if g != w), None)
        raise AssertionError(
            f"partition {p}: {len(got[p])} records read, {duplicates} duplicate offsets, "
            f"missing {missing}, first out of order at line {out_of_order}, "
            f"first wrong record {wrong}\n{report_text}"
        )
