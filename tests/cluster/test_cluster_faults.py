"""Broker faults in a cluster (replication factor 1): a killed broker's partitions go
offline and come back with their data; no ZooKeeper at start; `mms cluster up`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from helpers.broker_process import BrokerProcess, BrokerStartError, free_port
from helpers.confluent import admin, client_config, create_topic, wait_until
from helpers.zookeeper import ZooKeeperServer

from .conftest import BrokerCluster, new_chroot


@pytest.fixture
def cluster(zookeeper: ZooKeeperServer, tmp_path: Path) -> Iterator[BrokerCluster]:
    c = BrokerCluster(new_chroot(zookeeper), tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.close()


def _partitions(bootstrap: str, topic: str) -> dict[int, int]:
    md = admin(bootstrap).list_topics(topic, timeout=10)
    return {p: meta.leader for p, meta in md.topics[topic].partitions.items()}


def _read_all(bootstrap: str, topic: str, partitions: int, want: int) -> list[bytes]:
    consumer = Consumer(
        client_config(bootstrap, **{"group.id": "reader", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


def test_killed_broker_goes_offline_and_comes_back_with_its_data(cluster: BrokerCluster) -> None:
    topic = "survivors"
    create_topic(cluster.bootstrap, topic, 6)
    producer = Producer(client_config(cluster.bootstrap))
    for i in range(600):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    controller = admin(cluster.bootstrap).list_topics(timeout=10).controller_id
    victim = next(b for b in cluster.brokers if b.broker_id != controller)
    survivor = next(b for b in cluster.brokers if b is not victim)
    theirs = sorted(p for p, leader in _partitions(survivor.bootstrap, topic).items()
                    if leader == victim.broker_id)  # fmt: skip
    assert len(theirs) == 2
    victim.kill()
    wait_until(
        lambda: all(_partitions(survivor.bootstrap, topic)[p] == -1 for p in theirs),
        "the killed broker's partitions offline (leader -1)",
        10,
    )
    # The others keep serving.
    others = [p for p in range(6) if p not in theirs]
    live = Producer(client_config(survivor.bootstrap))
    errors: list[object] = []
    for p in others:
        live.produce(topic, value=b"during", partition=p, on_delivery=lambda e, m: errors.append(e))
    assert live.flush(20) == 0
    assert errors == [None] * len(others)

    victim.start()
    wait_until(
        lambda: all(_partitions(survivor.bootstrap, topic)[p] == victim.broker_id for p in theirs),
        "the restarted broker leads its partitions again",
        15,
    )
    # The producer that saw the broker die recovers by itself.
    for i in range(600, 700):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    got = _read_all(cluster.bootstrap, topic, 6, 700 + len(others))
    values = sorted(v for v in got if v != b"during")
    assert values == sorted(f"v{i}".encode() for i in range(700))


def test_no_zookeeper_exits_with_one_line(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "data",
        tmp_path / "logs",
        settings={
            "zookeeper.connect": f"127.0.0.1:{free_port()}",
            "zookeeper.connection.timeout.ms": 1000,
        },
    )
    with pytest.raises(BrokerStartError):
        broker.start()
    assert broker.returncode == 1
    lines = [line for line in broker.stderr_text().splitlines() if line.startswith("mms broker:")]
    assert len(lines) == 1 and "cannot reach ZooKeeper" in lines[0], broker.stderr_text()
    broker.close()


def _free_pair() -> int:
    """A port p with p and p + 1 both free a moment ago."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise AssertionError("no two consecutive free ports")


def _logs(data_dir: Path) -> str:
    return "\n".join(
        f"--- {f.name}:\n" + f.read_text("utf-8", "replace")[-3000:] for f in data_dir.glob("*.log")
    )


def test_cluster_up_with_two_brokers(tmp_path: Path) -> None:
    zk_port, base = free_port(), _free_pair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "metamorphostreams.cli.main", "cluster", "up",
         "--brokers", "2", "--data-dir", str(tmp_path), "--zookeeper-port", str(zk_port),
         "--base-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        bootstrap = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "bootstrap servers" in line:
                bootstrap = line.rsplit(" ", 1)[-1].strip()
                break
        assert bootstrap == f"127.0.0.1:{base},127.0.0.1:{base + 1}", _logs(tmp_path)
        out = subprocess.run(
            ["kcat", "-L", "-b", bootstrap], capture_output=True, text=True, timeout=30
        ).stdout
        assert " 2 brokers:" in out, out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
