"""Replicated partitions across real broker processes: followers copy their leaders byte for
byte, the ISR follows the brokers' health, acks=all waits for the ISR and refuses to write
below min.insync.replicas, and a killed leader is replaced from the ISR with nothing lost."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from helpers.broker_process import BrokerProcess
from helpers.confluent import admin, client_config, create_topic, value_of, wait_until
from helpers.kafka_wire import (
    Record,
    WireConnection,
    build_record_batch,
    fetch_partition_response,
    fetch_request,
    produce,
)
from helpers.zookeeper import ZooKeeperServer

from .conftest import BrokerCluster, new_chroot

LIMIT_S = 30.0
NOT_LEADER_OR_FOLLOWER = 6


@pytest.fixture
def cluster(zookeeper: ZooKeeperServer, tmp_path: Path) -> Iterator[BrokerCluster]:
    c = BrokerCluster(new_chroot(zookeeper), tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.close()


def _partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) from metadata."""
    md = admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
    return {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in md.partitions.items()}


def _create(cluster: BrokerCluster, topic: str, partitions: int, rf: int, **configs: str) -> None:
    """Create ``topic`` and wait until every broker's metadata shows all its partitions."""
    create_topic(cluster.bootstrap, topic, partitions, configs, replication_factor=rf)
    for broker in cluster.brokers:
        wait_until(
            lambda b=broker: len(_partitions(b.bootstrap, topic)) == partitions,
            f"broker {broker.broker_id} to know {topic}",
            LIMIT_S,
        )


def _live_bootstrap(cluster: BrokerCluster) -> str:
    return ",".join(b.bootstrap for b in cluster.brokers if b.running)


def _wait_full_isr(cluster: BrokerCluster, topic: str, size: int) -> None:
    def full() -> bool:
        parts = _partitions(_live_bootstrap(cluster), topic)
        return all(len(isr) == size and leader >= 0 for leader, _, isr in parts.values())

    wait_until(full, f"every partition of {topic} with an ISR of {size}", LIMIT_S)


def _log_bytes(broker: BrokerProcess, topic: str, partition: int) -> bytes:
    directory = broker.data_dir / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def _replicas_agree(
    cluster: BrokerCluster, topic: str, partition: int, replicas: list[int]
) -> bool:
    contents = {_log_bytes(cluster.brokers[b], topic, partition) for b in replicas}
    return len(contents) == 1


def _produce(bootstrap: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = Producer(
        client_config(bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    )
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    for value in values:
        producer.produce(topic, value=value, partition=partition, on_delivery=report)
        producer.poll(0)
    assert producer.flush(LIMIT_S) == 0
    assert failures == []


def _consume(bootstrap: str, topic: str, partition: int, want: int) -> list[bytes]:
    consumer = Consumer(
        client_config(bootstrap, **{"group.id": "replication-reader", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + LIMIT_S
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(value_of(msg))
    consumer.close()
    return got


def test_followers_hold_the_leaders_bytes(cluster: BrokerCluster) -> None:
    topic = "copied"
    _create(cluster, topic, 3, 3, **{"min.insync.replicas": "2"})
    parts = _partitions(cluster.bootstrap, topic)
    assert sorted(parts) == [0, 1, 2]
    for leader, replicas, _ in parts.values():
        assert sorted(replicas) == [0, 1, 2]
        assert leader == replicas[0]
    # Leadership is spread: each broker is the preferred leader of one partition.
    assert sorted(leader for leader, _, _ in parts.values()) == [0, 1, 2]
    _wait_full_isr(cluster, topic, 3)
    for p in range(3):
        _produce(cluster.bootstrap, topic, [f"p{p}-{i}".encode() for i in range(500)], p)
    for p, (_, replicas, _) in parts.items():
        wait_until(
            lambda p=p, r=replicas: _replicas_agree(cluster, topic, p, r),
            f"the three copies of {topic}-{p} to be identical",
            LIMIT_S,
        )
        assert len(_log_bytes(cluster.brokers[0], topic, p)) > 500 * 10
        epochs = {
            (cluster.brokers[b].data_dir / f"{topic}-{p}" / "leader-epoch-checkpoint").read_text()
            for b in replicas
        }
        assert len(epochs) == 1
        assert _consume(cluster.bootstrap, topic, p, 500) == [
            f"p{p}-{i}".encode() for i in range(500)
        ]


def test_killed_leader_is_replaced_from_the_isr_and_rejoins(cluster: BrokerCluster) -> None:
    topic = "failover"
    _create(cluster, topic, 1, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)
    first = [f"a{i}".encode() for i in range(300)]
    _produce(cluster.bootstrap, topic, first)
    leader, replicas, _ = _partitions(cluster.bootstrap, topic)[0]
    cluster.brokers[leader].kill()
    survivors = _live_bootstrap(cluster)

    def new_leader() -> bool:
        now, _, isr = _partitions(survivors, topic)[0]
        return now not in (leader, -1) and leader not in isr

    wait_until(new_leader, "a new leader from the ISR", LIMIT_S)
    second = [f"b{i}".encode() for i in range(300)]
    _produce(survivors, topic, second)  # two replicas left: min.insync.replicas=2 holds
    assert _consume(survivors, topic, 0, 600) == first + second

    cluster.brokers[leader].start()
    _wait_full_isr(cluster, topic, 3)
    wait_until(
        lambda: _replicas_agree(cluster, topic, 0, replicas),
        "the restarted broker to catch up",
        LIMIT_S,
    )


def test_acks_all_needs_min_insync_replicas(cluster: BrokerCluster) -> None:
    topic = "guarded"
    _create(cluster, topic, 1, 2, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 2)
    leader, replicas, _ = _partitions(cluster.bootstrap, topic)[0]
    follower = next(b for b in replicas if b != leader)
    cluster.brokers[follower].kill()
    wait_until(
        lambda: _partitions(_live_bootstrap(cluster), topic)[0][2] == [leader],
        "the dead follower to leave the ISR",
        LIMIT_S,
    )
    bootstrap = _live_bootstrap(cluster)
    strict = Producer(
        client_config(bootstrap, **{"acks": "all", "message.timeout.ms": 3000, "retries": 2})
    )
    errors: list[KafkaError] = []
    strict.produce(topic, value=b"refused", on_delivery=lambda e, m: errors.append(e))
    strict.flush(10)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]
    relaxed = Producer(client_config(bootstrap, **{"acks": "1"}))
    relaxed.produce(topic, value=b"accepted")
    assert relaxed.flush(10) == 0
    assert _consume(bootstrap, topic, 0, 1) == [b"accepted"]


def test_idempotent_producer_loses_nothing_while_leaders_are_killed(
    cluster: BrokerCluster,
) -> None:
    """The acceptance run: an idempotent acks=all producer keeps sending while the leader of
    its partitions is SIGKILLed five times (each killed broker restarted); every
    acknowledged record is read back once, in order per partition."""
    topic = "relentless"
    partitions = 2
    _create(cluster, topic, partitions, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)
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
    acked: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    failed: list[KafkaError] = []
    lock = threading.Lock()
    stop = threading.Event()

    def report(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            failed.append(err)
            return
        with lock:
            acked[msg.partition()].append(msg.value())  # type: ignore[attr-defined]

    def send() -> None:
        i = 0
        while not stop.is_set():
            for p in range(partitions):
                try:
                    producer.produce(
                        topic, value=f"{p}:{i}".encode(), partition=p, on_delivery=report
                    )
                except BufferError:
                    pass
            i += 1
            producer.poll(0.002)
        producer.flush(120)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        for _ in range(5):
            time.sleep(1.0)
            leader = _partitions(_live_bootstrap(cluster), topic)[0][0]
            assert leader >= 0
            cluster.brokers[leader].kill()
            wait_until(
                lambda old=leader: (
                    _partitions(_live_bootstrap(cluster), topic)[0][0] not in (old, -1)
                ),
                "a new leader",
                LIMIT_S,
            )
            cluster.brokers[leader].start()
            _wait_full_isr(cluster, topic, 3)
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(180)
    assert failed == []
    for p in range(partitions):
        sent = acked[p]
        assert len(sent) > 100
        got = _consume(cluster.bootstrap, topic, p, len(sent))
        assert got == sent, f"partition {p}: {len(got)} read, {len(sent)} acknowledged"
        # and the values were produced in order, with no hole in what was acknowledged
        numbers = [int(v.split(b":")[1]) for v in got]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)


def test_followers_refuse_writes_and_serve_recent_readers(cluster: BrokerCluster) -> None:
    """A follower answers Produce NOT_LEADER_OR_FOLLOWER; it serves Fetch v11+ consumers
    from its own copy (KIP-392), up to its high watermark, and refuses older ones."""
    topic = "leaders-only"
    _create(cluster, topic, 1, 3)
    _wait_full_isr(cluster, topic, 3)
    leader, replicas, _ = _partitions(cluster.bootstrap, topic)[0]
    follower = cluster.brokers[next(b for b in replicas if b != leader)].bootstrap
    batch = build_record_batch(
        [Record(key=None, value=b"x")], base_timestamp=int(time.time() * 1000)
    )
    assert produce(follower, topic, 0, batch).error_code == NOT_LEADER_OR_FOLLOWER
    assert produce(cluster.brokers[leader].bootstrap, topic, 0, batch).error_code == 0
    with WireConnection(follower) as conn:
        old = fetch_partition_response(conn.request(fetch_request(topic, 0, 0, version=4)))
    assert old.error_code == NOT_LEADER_OR_FOLLOWER

    def served() -> bool:
        with WireConnection(follower) as conn:
            part = fetch_partition_response(conn.request(fetch_request(topic, 0, 0)))
        return part.error_code == 0 and part.high_watermark == 1 and len(part.records) > 0

    wait_until(served, "the follower to serve the record it holds", LIMIT_S)


def test_rolling_restart_surfaces_no_error(cluster: BrokerCluster) -> None:
    """Each broker in turn is stopped cleanly (controlled shutdown moves its leaderships
    first) and started again while an idempotent acks=all producer keeps sending: no
    delivery error reaches the application and every acknowledged record is there once."""
    topic = "rolling"
    _create(cluster, topic, 3, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)
    producer = Producer(
        client_config(
            cluster.bootstrap,
            **{"acks": "all", "enable.idempotence": True, "linger.ms": 2},
        )
    )
    acked: dict[int, list[bytes]] = {p: [] for p in range(3)}
    failed: list[KafkaError] = []
    stop = threading.Event()

    def report(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            failed.append(err)
        else:
            acked[msg.partition()].append(msg.value())  # type: ignore[attr-defined]

    def send() -> None:
        i = 0
        while not stop.is_set():
            for p in range(3):
                with contextlib.suppress(BufferError):
                    producer.produce(topic, value=b"%d" % i, partition=p, on_delivery=report)
            i += 1
            producer.poll(0.002)
        producer.flush(60)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        for broker in cluster.brokers:
            time.sleep(0.5)
            broker.stop()
            broker.start()
            cluster.wait_for_membership()
            _wait_full_isr(cluster, topic, 3)
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join(120)
    assert failed == []
    for p in range(3):
        assert len(acked[p]) > 50
        assert _consume(cluster.bootstrap, topic, p, len(acked[p])) == acked[p]


def _coordinator(bootstrap: str, key: str, key_type: int) -> int:
    """FindCoordinator v3 (key type 0 group, 1 transaction) with our client's codec."""
    import asyncio

    from metamorphostreams.client.connection import BrokerConnection
    from metamorphostreams.protocol._generated.find_coordinator import FindCoordinatorRequest

    host, port = bootstrap.split(",")[0].rsplit(":", 1)

    async def ask() -> int:
        conn = await BrokerConnection.open(host, int(port), client_id="test")
        try:
            request = FindCoordinatorRequest(key=key, key_type=key_type)
            response = await conn.request(request, 3)
        finally:
            conn.close()
        assert response.error_code == 0, response
        return int(response.node_id)

    node = -1
    deadline = time.monotonic() + LIMIT_S
    while node < 0 and time.monotonic() < deadline:
        try:
            node = asyncio.run(ask())
        except AssertionError:
            time.sleep(0.2)
    return node


def test_coordinators_fail_over_with_their_state(cluster: BrokerCluster) -> None:
    """Committed offsets and a transactional id survive the SIGKILL of the brokers that
    coordinated them: __consumer_offsets and __transaction_state are replicated (RF 3 with
    three brokers) and the new leaders of their partitions load them."""
    topic = "coordinated"
    _create(cluster, topic, 1, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)
    _produce(cluster.bootstrap, topic, [b"%d" % i for i in range(20)])
    group = "survivor-group"
    consumer = Consumer(client_config(cluster.bootstrap, **{"group.id": group}))
    consumer.commit(offsets=[TopicPartition(topic, 0, 12)], asynchronous=False)
    consumer.close()
    _wait_full_isr(cluster, "__consumer_offsets", 3)
    victim = _coordinator(cluster.bootstrap, group, 0)
    cluster.brokers[victim].kill()
    survivors = _live_bootstrap(cluster)

    def committed() -> int:
        probe = Consumer(client_config(survivors, **{"group.id": group}))
        try:
            (tp,) = probe.committed([TopicPartition(topic, 0)], timeout=5)
            return tp.offset
        except Exception:
            return -1
        finally:
            probe.close()

    wait_until(lambda: committed() == 12, "the new coordinator to serve the offset", LIMIT_S)
    cluster.brokers[victim].start()
    cluster.wait_for_membership()

    txn_id = "survivor-txn"
    producer = Producer(client_config(cluster.bootstrap, **{"transactional.id": txn_id}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed", partition=0)
    producer.commit_transaction(30)
    _wait_full_isr(cluster, "__transaction_state", 3)
    victim = _coordinator(cluster.bootstrap, txn_id, 1)
    cluster.brokers[victim].kill()
    survivors = _live_bootstrap(cluster)
    again = Producer(client_config(survivors, **{"transactional.id": txn_id}))
    again.init_transactions(60)  # the new coordinator knows the id: fences the old producer
    again.begin_transaction()
    again.produce(topic, value=b"after", partition=0)
    again.commit_transaction(60)
    with pytest.raises(KafkaException):
        producer.begin_transaction()
        producer.produce(topic, value=b"zombie", partition=0)
        producer.commit_transaction(10)
    reader = Consumer(
        client_config(
            survivors,
            **{"group.id": "txn-reader", "isolation.level": "read_committed"},
        )
    )
    reader.assign([TopicPartition(topic, 0, 20)])
    got: list[bytes] = []
    deadline = time.monotonic() + LIMIT_S
    while len(got) < 2 and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(value_of(msg))
    reader.close()
    assert got == [b"committed", b"after"]


def test_killed_controller_is_replaced_and_nothing_else_moves(cluster: BrokerCluster) -> None:
    topic = "steady"
    _create(cluster, topic, 3, 3)
    _wait_full_isr(cluster, topic, 3)
    controller = admin(cluster.bootstrap).list_topics(timeout=10).controller_id
    before = {
        p: leader
        for p, (leader, _, _) in _partitions(cluster.bootstrap, topic).items()
        if leader != controller
    }
    cluster.brokers[controller].kill()
    survivors = _live_bootstrap(cluster)

    def new_controller() -> bool:
        md = admin(survivors).list_topics(timeout=10)
        moved = all(
            leader not in (controller, -1) and controller not in isr
            for leader, _, isr in _partitions(survivors, topic).values()
        )
        return md.controller_id not in (-1, controller) and moved

    wait_until(new_controller, "a new controller and new leaders", LIMIT_S)
    after = _partitions(survivors, topic)
    assert {p: after[p][0] for p in before} == before  # the others' partitions kept leaders


def test_isr_follows_followers_leaving_and_returning(cluster: BrokerCluster) -> None:
    """A follower killed leaves the ISR (the controller), comes back into it once caught up
    (the leader), and when the other follower dies next, acks=all keeps working with the
    two left: the leader took each ISR change, its own and the controller's."""
    topic = "breathing"
    _create(cluster, topic, 1, 3, **{"min.insync.replicas": "2"})
    _wait_full_isr(cluster, topic, 3)
    leader, replicas, _ = _partitions(cluster.bootstrap, topic)[0]
    first, second = [b for b in replicas if b != leader]
    sent = [b"a%d" % i for i in range(10)]
    _produce(cluster.bootstrap, topic, sent)
    for victim in (first, second):
        cluster.brokers[victim].kill()
        wait_until(
            lambda v=victim: v not in _partitions(_live_bootstrap(cluster), topic)[0][2],
            f"broker {victim} to leave the ISR",
            LIMIT_S,
        )
        batch = [b"without-%d-%d" % (victim, i) for i in range(10)]
        _produce(_live_bootstrap(cluster), topic, batch)
        cluster.brokers[victim].start()
        cluster.wait_for_membership()
        _wait_full_isr(cluster, topic, 3)
        batch += [b"with-%d-%d" % (victim, i) for i in range(10)]
        _produce(cluster.bootstrap, topic, batch[10:])
        sent += batch
    assert _consume(cluster.bootstrap, topic, 0, len(sent)) == sent
