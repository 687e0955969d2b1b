"""Network partitions between real brokers, each in a network namespace of its own.

Three brokers (namespaces 10.231.N.1..3, see helpers/netns.py) and a ZooKeeper on the
bridge's service address; a partition is an nftables drop table inside one namespace. An
isolated leader must not acknowledge acks=all writes while the others elect a new leader and
take writes; once healed it rejoins as a follower with its log truncated to agree with the new
leader's. A follower cut off from its leader alone leaves the ISR and comes back after healing.
Needs root, `ip` and `nft`: skips without them, fails when CI=true.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from helpers.broker_process import BrokerProcess
from helpers.confluent import client_config, create_topic, value_of, wait_until
from helpers.kafka_wire import (
    BrokerClosedConnection,
    Record,
    WireConnection,
    build_record_batch,
    metadata,
    produce_partition_response,
    produce_request,
)
from helpers.netns import NetLab, require_netns
from helpers.zookeeper import ZooKeeperServer, require_zookeeper

from .conftest import BrokerCluster, new_chroot

BROKERS = 3
LIMIT_S = 30.0  # liveness bound on every wait; a healthy cluster needs a few seconds
LAG_TIME_MAX_MS = 3000  # replica.lag.time.max.ms: a cut-off follower leaves the ISR after this
# How long a fetch (or its connection attempt) to a silent leader may hang: above the fetch
# wait, small enough that followers notice a partition, and its healing, within seconds.
REPLICA_SOCKET_TIMEOUT_MS = 3000
RAW_PRODUCE_TIMEOUT_MS = 2000  # the Produce request's own timeout_ms (acks=-1)
RAW_RECV_TIMEOUT_S = 15.0  # the isolated broker answers within its timeout_ms, or never
TOPIC_CONFIG = {"min.insync.replicas": "2"}

# Kafka error codes an isolated old leader may refuse an acks=all write with.
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
REFUSALS = {
    NOT_LEADER_OR_FOLLOWER,
    REQUEST_TIMED_OUT,
    NOT_ENOUGH_REPLICAS,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND,
}

_ports = itertools.count(9092)  # one per cluster: every broker of it listens on its own IP


class NetnsCluster(BrokerCluster):
    """A BrokerCluster whose broker i runs in the lab's namespace i, on that namespace's IP."""

    def __init__(self, lab: NetLab, zk_connect: str, root: Path) -> None:
        self.lab = lab
        self.port = next(_ports)
        super().__init__(zk_connect, root, BROKERS)

    def new_broker(self, broker_id: int, data_dir: Path | None = None) -> BrokerProcess:
        broker = super().new_broker(broker_id, data_dir)  # not started: still re-aimable
        broker.host = self.lab.hosts[broker_id].address
        broker.port = self.port
        broker.launcher = self.lab.launcher(broker_id)
        broker.settings["replica.lag.time.max.ms"] = LAG_TIME_MAX_MS
        broker.settings["replica.socket.timeout.ms"] = REPLICA_SOCKET_TIMEOUT_MS
        return broker


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    require_netns()
    require_zookeeper()
    net = NetLab(BROKERS)
    try:
        yield net.up()
    finally:
        net.down()


@pytest.fixture(scope="module")
def zk(lab: NetLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """ZooKeeper in the root namespace, on the bridge's service address."""
    server = ZooKeeperServer(tmp_path_factory.mktemp("zk-netns"), host=lab.service_address)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def cluster(lab: NetLab, zk: ZooKeeperServer, tmp_path: Path) -> Iterator[NetnsCluster]:
    c = NetnsCluster(lab, new_chroot(zk), tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()
        lab.heal_all()


# -- helpers -----------------------------------------------------------------------------------


def _state(bootstrap: str, topic: str) -> tuple[int, list[int], list[int]] | None:
    """(leader, replicas, isr) of partition 0 as one broker's metadata says, or None when
    that broker does not answer."""
    try:
        response = metadata(bootstrap, [topic])
    except (OSError, BrokerClosedConnection):
        return None
    (meta,) = response.topics
    if meta.error_code != 0 or not meta.partitions:
        return None
    (part,) = [p for p in meta.partitions if p.partition_index == 0]
    return part.leader_id, list(part.replica_nodes), list(part.isr_nodes)


def _create(cluster: BrokerCluster, topic: str) -> None:
    create_topic(cluster.bootstrap, topic, 1, TOPIC_CONFIG, replication_factor=BROKERS)
    _wait_isr(cluster.brokers, topic, BROKERS)


def _wait_isr(brokers: list[BrokerProcess], topic: str, size: int) -> None:
    """Until every given broker's metadata shows a leader and an ISR of ``size``."""

    def agreed() -> bool:
        states = [_state(b.bootstrap, topic) for b in brokers]
        return all(s is not None and s[0] >= 0 and len(s[2]) == size for s in states)

    wait_until(agreed, f"an ISR of {size} for {topic} on brokers {[b.broker_id for b in brokers]}")


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """acks=all through an idempotent producer; every record must be acknowledged."""
    producer = Producer(
        client_config(bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    )
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=report)
        producer.poll(0)
    assert producer.flush(LIMIT_S * 2) == 0, "records still unacknowledged"
    assert failures == []


def _raw_produce(bootstrap: str, topic: str, value: bytes) -> int | str:
    """One acks=-1 Produce straight to ``bootstrap``: its error code, or how the connection
    failed."""
    batch = build_record_batch([Record(key=None, value=value)], base_timestamp=_now_ms())
    request: Any = produce_request(topic, 0, batch, acks=-1)
    request.timeout_ms = RAW_PRODUCE_TIMEOUT_MS
    try:
        with WireConnection(bootstrap, timeout=RAW_RECV_TIMEOUT_S) as conn:
            return int(produce_partition_response(conn.request(request)).error_code)
    except (OSError, BrokerClosedConnection) as e:
        return f"connection failed: {e!r}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_bytes(broker: BrokerProcess, topic: str) -> bytes:
    directory = broker.data_dir / f"{topic}-0"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def _wait_logs_agree(cluster: BrokerCluster, topic: str) -> None:
    wait_until(
        lambda: len({_log_bytes(b, topic) for b in cluster.brokers}) == 1,
        f"the three copies of {topic}-0 to be byte for byte the same",
        LIMIT_S,
    )


def _read_all(bootstrap: str, topic: str, want: int) -> tuple[list[bytes], int]:
    """Up to ``want`` records from offset 0, and the partition's high watermark."""
    consumer = Consumer(
        client_config(bootstrap, **{"group.id": "partition-reader", "enable.auto.commit": False})
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


# -- the scenarios -----------------------------------------------------------------------------


def test_isolated_leader_is_replaced_and_truncated_when_it_returns(
    cluster: NetnsCluster, lab: NetLab
) -> None:
    topic = "split"
    _create(cluster, topic)
    before = [b"before-%d" % i for i in range(200)]
    _produce(cluster.bootstrap, topic, before)
    state = _state(cluster.brokers[0].bootstrap, topic)
    assert state is not None
    leader = state[0]
    old = cluster.brokers[leader]
    others = [b for b in cluster.brokers if b is not old]
    majority = ",".join(b.bootstrap for b in others)

    # Cut the leader off from the other brokers and from ZooKeeper (not from this process).
    lab.block(leader, [b.host for b in others] + [lab.service_address])

    def replaced() -> bool:
        states = [_state(b.bootstrap, topic) for b in others]
        return all(
            s is not None and s[0] in {b.broker_id for b in others} and leader not in s[2]
            for s in states
        )

    wait_until(replaced, f"a new leader for {topic}-0 among {majority}", LIMIT_S)

    # The old leader still believes it leads; it must not acknowledge an acks=all write.
    answer = _raw_produce(old.bootstrap, topic, b"zombie")
    assert answer != 0, "the isolated old leader acknowledged an acks=all write"
    assert isinstance(answer, str) or answer in REFUSALS, answer

    during = [b"during-%d" % i for i in range(200)]
    _produce(majority, topic, during)

    lab.heal(leader)
    cluster.wait_for_membership(LIMIT_S)
    _wait_isr(cluster.brokers, topic, BROKERS)
    _wait_logs_agree(cluster, topic)
    got, high = _read_all(cluster.bootstrap, topic, len(before) + len(during))
    assert got == before + during
    assert high == len(before) + len(during)  # nothing else: no zombie, no duplicate
    assert b"zombie" not in _log_bytes(old, topic)


def test_follower_cut_off_from_its_leader_leaves_the_isr_and_rejoins(
    cluster: NetnsCluster, lab: NetLab
) -> None:
    topic = "lagging"
    _create(cluster, topic)
    state = _state(cluster.brokers[0].bootstrap, topic)
    assert state is not None
    leader, replicas, _ = state
    follower = next(r for r in replicas if r != leader)
    lab.block(follower, [cluster.brokers[leader].host])  # ZooKeeper still reachable

    # The leader shrinks the ISR only for a follower that falls behind: keep writing. The
    # writes wait for the shrink (acks=all), then succeed with two in-sync replicas.
    during = [b"during-%d" % i for i in range(100)]
    _produce(cluster.bootstrap, topic, during)

    def shrunk() -> bool:
        s = _state(cluster.brokers[leader].bootstrap, topic)
        return s is not None and s[0] == leader and follower not in s[2] and len(s[2]) == 2

    wait_until(shrunk, f"broker {follower} to leave the ISR of {topic}-0", LIMIT_S)

    lab.heal(follower)
    after = [b"after-%d" % i for i in range(100)]
    _produce(cluster.bootstrap, topic, after)
    _wait_isr(cluster.brokers, topic, BROKERS)
    _wait_logs_agree(cluster, topic)
    got, high = _read_all(cluster.bootstrap, topic, len(during) + len(after))
    assert got == during + after
    assert high == len(during) + len(after)
