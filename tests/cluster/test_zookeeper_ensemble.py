"""A cluster on a three-node ZooKeeper ensemble keeps serving when ZooKeeper's own leader is
SIGKILLed: the two other nodes elect a new one, the brokers' sessions move to them, and an
idempotent acks=all producer never sees an error; the killed node then rejoins."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from helpers.confluent import client_config, create_topic, value_of, wait_until
from helpers.kafka_wire import metadata
from helpers.zookeeper import ZooKeeperEnsemble, require_zookeeper, unique_chroot
from kazoo.client import KazooClient

from .conftest import CONNECT_TIMEOUT_S, BrokerCluster

LIMIT_S = 30.0  # liveness bound on every wait
MORE_WRITES = 200  # acknowledged writes that must follow each step


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    require_zookeeper()
    zk = ZooKeeperEnsemble(tmp_path_factory.mktemp("ensemble"))
    try:
        yield zk.start()
    finally:
        zk.stop()


@pytest.fixture
def cluster(ensemble: ZooKeeperEnsemble, tmp_path: Path) -> Iterator[BrokerCluster]:
    chroot = unique_chroot()
    root = KazooClient(hosts=ensemble.connect_string)
    root.start(timeout=CONNECT_TIMEOUT_S)
    try:
        root.ensure_path(chroot)
    finally:
        root.stop()
        root.close()
    c = BrokerCluster(ensemble.connect_string + chroot, tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.close()


def _full_isr(cluster: BrokerCluster, topic: str) -> bool:
    for broker in cluster.brokers:
        (meta,) = metadata(broker.bootstrap, [topic]).topics
        if meta.error_code != 0 or not meta.partitions:
            return False
        if any(p.leader_id < 0 or len(p.isr_nodes) != 3 for p in meta.partitions):
            return False
    return True


def test_cluster_serves_while_zookeepers_leader_is_killed(
    ensemble: ZooKeeperEnsemble, cluster: BrokerCluster
) -> None:
    topic = "quorum"
    create_topic(cluster.bootstrap, topic, 1, {"min.insync.replicas": "2"}, replication_factor=3)
    wait_until(lambda: _full_isr(cluster, topic), f"an ISR of 3 for {topic}", LIMIT_S)
    producer = Producer(
        client_config(
            cluster.bootstrap,
            **{
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                "message.timeout.ms": 120_000,
            },
        )
    )
    acked: list[bytes] = []
    failed: list[KafkaError] = []
    lock = threading.Lock()
    stop = threading.Event()

    def report(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            failed.append(err)
            return
        with lock:
            acked.append(msg.value())  # type: ignore[attr-defined]

    def send() -> None:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(BufferError):
                producer.produce(topic, value=b"%d" % i, partition=0, on_delivery=report)
                i += 1
            producer.poll(0.002)
        producer.flush(120)

    def more_writes() -> None:
        with lock:
            mark = len(acked)
        wait_until(lambda: len(acked) >= mark + MORE_WRITES, "more acknowledged writes", LIMIT_S)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        more_writes()
        zk_leader = ensemble.leader()
        assert zk_leader is not None
        ensemble.kill(zk_leader)
        wait_until(lambda: ensemble.leader() is not None, "a new ZooKeeper leader", LIMIT_S)
        more_writes()
        # ZooKeeper still takes writes: a new topic gets its replicas and leader.
        create_topic(cluster.bootstrap, "created-meanwhile", 1, replication_factor=3)
        cluster.wait_for_membership(LIMIT_S)
        ensemble.restart(zk_leader)
        assert zk_leader.mode() in ("leader", "follower")
        more_writes()
    finally:
        stop.set()
        sender.join(180)
    assert failed == []
    got, high = _read_all(cluster.bootstrap, topic, len(acked))
    assert got == acked
    assert high == len(acked)


def _read_all(bootstrap: str, topic: str, want: int) -> tuple[list[bytes], int]:
    consumer = Consumer(
        client_config(bootstrap, **{"group.id": "ensemble-reader", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + LIMIT_S
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(value_of(msg))
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    return got, int(high)
