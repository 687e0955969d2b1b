"""Three real broker processes join one cluster through a real ZooKeeper:
membership, placement, leadership, coordinators, as real clients see them."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from helpers.broker_process import BrokerStartError
from helpers.confluent import admin, admin_error, client_config, create_topic, wait_until
from helpers.kafka_wire import Record, WireConnection, build_record_batch, produce_request

from .conftest import BrokerCluster

NOT_LEADER_OR_FOLLOWER = 6


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's leader, once the answering broker knows the topic (a topic just
    created reaches the other brokers through ZooKeeper a moment later)."""
    found: dict[int, int] = {}

    def known() -> bool:
        md = admin(bootstrap).list_topics(topic, timeout=10)
        found.clear()
        found.update({p: meta.leader for p, meta in md.topics[topic].partitions.items()})
        return bool(found)

    wait_until(known, f"metadata of {topic}")
    return found


def _drain(consumer: Consumer, want: int, limit_s: float = 60.0) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + limit_s
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append((msg.partition(), msg.value()))
    return got


def test_three_brokers_join_with_a_controller(cluster3: BrokerCluster) -> None:
    out = subprocess.run(
        ["kcat", "-L", "-b", cluster3.brokers[1].bootstrap],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert " 3 brokers:" in out, out
    assert out.count("(controller)") == 1, out
    md = admin(cluster3.brokers[2].bootstrap).list_topics(timeout=10)
    assert sorted(md.brokers) == [0, 1, 2]
    assert md.controller_id in (0, 1, 2)
    ports = {b.id: b.port for b in md.brokers.values()}
    assert ports == {b.broker_id: b.port for b in cluster3.brokers}


def test_replication_beyond_the_brokers_is_refused(cluster3: BrokerCluster) -> None:
    client = admin(cluster3.bootstrap)
    futures = client.create_topics([NewTopic("rf4", 3, 4)])
    error = admin_error(futures["rf4"])
    assert error.code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert "only 3 broker(s) are registered" in error.str()
    futures = client.create_topics([NewTopic("ra9", 1, replica_assignment=[[0, 9]])])
    error = admin_error(futures["ra9"])
    assert error.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    futures = client.create_topics([NewTopic("ra-mixed", 2, replica_assignment=[[0, 1], [2]])])
    error = admin_error(futures["ra-mixed"])
    assert error.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    futures = client.create_topics([NewTopic("ra2", 1, replica_assignment=[[2, 0]])])
    futures["ra2"].result(timeout=30)
    wait_until(
        lambda: [(m.leader, list(m.replicas)) for m in
                 admin(cluster3.brokers[1].bootstrap).list_topics("ra2", timeout=10)
                 .topics["ra2"].partitions.values()] == [(2, [2, 0])],
        "ra2 led by its first replica",
    )  # fmt: skip


def test_partitions_spread_and_a_group_reads_them_all(cluster3: BrokerCluster) -> None:
    topic = "spread"
    create_topic(cluster3.bootstrap, topic, 6)
    leaders = _leaders(cluster3.bootstrap, topic)
    assert sorted(leaders.values()) == [0, 0, 1, 1, 2, 2], leaders

    producer = Producer(client_config(cluster3.bootstrap, **{"linger.ms": 5}))
    for i in range(3000):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = client_config(
        cluster3.bootstrap,
        **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False},
    )
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    got = _drain(consumer, 3000)
    assert sorted(v for _, v in got) == sorted(f"v{i}".encode() for i in range(3000))
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    assert sum(tp.offset for tp in committed) == 3000
    consumer.close()

    for i in range(3000, 3300):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    second = Consumer(conf)
    second.subscribe([topic])
    rest = _drain(second, 300)
    assert sorted(v for _, v in rest) == sorted(f"v{i}".encode() for i in range(3000, 3300))
    assert _drain(second, 1, limit_s=1.0) == []  # nothing before the commits again
    second.close()


def test_the_wrong_broker_answers_not_leader(cluster3: BrokerCluster) -> None:
    topic = "wrong-broker"
    create_topic(cluster3.bootstrap, topic, 3)
    leaders = _leaders(cluster3.bootstrap, topic)
    partition, leader = next(iter(leaders.items()))
    other = next(b for b in cluster3.brokers if b.broker_id != leader)
    batch = build_record_batch(
        [Record(key=b"k", value=b"v")], base_timestamp=int(time.time() * 1000)
    )
    with WireConnection(other.bootstrap) as conn:
        response = conn.request(produce_request(topic, partition, batch))
    (t,) = response.topics if hasattr(response, "topics") else response.responses
    assert t.partition_responses[0].error_code == NOT_LEADER_OR_FOLLOWER
    # A client bootstrapped on that broker finds the leader by itself.
    producer = Producer(client_config(other.bootstrap))
    delivered: list[object] = []
    producer.produce(
        topic, value=b"x", partition=partition, on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(20) == 0
    assert delivered == [None]


def test_deleted_topic_goes_from_every_broker(cluster3: BrokerCluster) -> None:
    topic = "doomed"
    create_topic(cluster3.bootstrap, topic, 3)
    client = admin(cluster3.bootstrap)
    client.delete_topics([topic])[topic].result(timeout=20)
    for b in cluster3.brokers:
        wait_until(
            lambda b=b: topic not in admin(b.bootstrap).list_topics(timeout=10).topics,
            f"{topic} gone from broker {b.broker_id}",
            10,
        )
        wait_until(
            lambda b=b: (
                not any(
                    p.name.startswith(f"{topic}-") and p.is_dir() and not p.name.endswith("-delete")
                    for p in b.data_dir.iterdir()
                )
            ),
            f"{topic}'s logs gone from broker {b.broker_id}",
            10,
        )


def test_a_second_broker_with_a_registered_id_exits(cluster3: BrokerCluster, tmp_path) -> None:
    twin = cluster3.new_broker(0, tmp_path / "twin")
    with pytest.raises(BrokerStartError):
        twin.start()
    assert twin.returncode == 1
    last = twin.stderr_text().strip().splitlines()[-1]
    assert last.startswith(
        "mms broker: Error while creating ephemeral at /brokers/ids/0, node already exists and "
        "owner '"
    ), last
    twin.close()


def test_transactions_span_brokers(cluster3: BrokerCluster) -> None:
    """A transaction over partitions led by all three brokers, with offsets of a group
    coordinated elsewhere: its coordinator sends the markers to every leader, which check
    the transaction with the coordinator before appending (KIP-890); committed data is read,
    aborted data is not."""
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    topic = f"tx-spread-{uuid.uuid4().hex[:6]}"
    client = admin(cluster3.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, 3, replica_assignment=[[0, 1, 2], [1, 2, 0], [2, 0, 1]])]
    )
    futures[topic].result(timeout=20)
    wait_until(lambda: _leaders(cluster3.bootstrap, topic) == {0: 0, 1: 1, 2: 2}, "led")
    producer = Producer(client_config(cluster3.bootstrap, **{"transactional.id": txn_id}))
    producer.init_transactions(30)
    group = f"txg-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(client_config(cluster3.bootstrap, **{"group.id": group}))

    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"c{i}".encode(), partition=i % 3)
    offsets = [TopicPartition(topic, p, 7) for p in range(3)]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"a{i}".encode(), partition=i % 3)
    producer.abort_transaction(30)

    reader = Consumer(
        client_config(
            cluster3.bootstrap,
            **{"group.id": "txr", "isolation.level": "read_committed", "enable.auto.commit": False},
        )
    )
    reader.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got = _drain(reader, 30, limit_s=30)
    assert _drain(reader, 1, limit_s=1.0) == []
    reader.close()
    assert sorted(v for _, v in got) == sorted(f"c{i}".encode() for i in range(30))
    committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
    assert [tp.offset for tp in committed] == [7, 7, 7]
    consumer.close()


def test_only_the_group_coordinator_serves_a_group(cluster3: BrokerCluster) -> None:
    from kafka.protocol.consumer.group import HeartbeatRequest

    from metamorphostreams.coordinator._shard import java_string_hash, kafka_abs

    group = f"nc-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(client_config(cluster3.bootstrap, **{"group.id": group}))
    consumer.subscribe(["spread"])
    wait_until(
        lambda: (
            consumer.poll(0.2) is None
            and "__consumer_offsets" in admin(cluster3.bootstrap).list_topics(timeout=10).topics
        ),
        "__consumer_offsets created",
    )
    consumer.close()
    partition = kafka_abs(java_string_hash(group)) % 6  # offsets.topic.num.partitions=6
    coordinator = _leaders(cluster3.bootstrap, "__consumer_offsets")[partition]
    other = next(b for b in cluster3.brokers if b.broker_id != coordinator)
    with WireConnection(other.bootstrap) as conn:
        response = conn.request(HeartbeatRequest[1](group_id=group, generation_id=1, member_id="m"))
    assert response.error_code == 16  # NOT_COORDINATOR
    leader = next(b for b in cluster3.brokers if b.broker_id == coordinator)
    with WireConnection(leader.bootstrap) as conn:
        response = conn.request(HeartbeatRequest[1](group_id=group, generation_id=1, member_id="m"))
    assert response.error_code != 16


def test_partitions_added_in_a_cluster(cluster3: BrokerCluster) -> None:
    """CreatePartitions places the new partitions at the topic's replication factor (or
    where the request says), with leaders and ISRs, and refuses inconsistent assignments."""
    from confluent_kafka.admin import NewPartitions

    topic = f"growing-{uuid.uuid4().hex[:6]}"
    client = admin(cluster3.bootstrap)
    client.create_topics([NewTopic(topic, 2, 2)])[topic].result(timeout=30)
    client.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=30)

    def described() -> dict[int, tuple[int, list[int], list[int]]]:
        md = admin(cluster3.brokers[2].bootstrap).list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions
        return {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in parts.items()}

    wait_until(
        lambda: (
            len(described()) == 4
            and all(
                len(r) == 2 and len(i) == 2 and leader == r[0]
                for leader, r, i in described().values()
            )
        ),
        "four partitions with two in-sync replicas each",
    )
    producer = Producer(client_config(cluster3.bootstrap, **{"acks": "all"}))
    for p in range(4):
        producer.produce(topic, value=b"v%d" % p, partition=p)
    assert producer.flush(30) == 0

    bad = client.create_partitions([NewPartitions(topic, 5, replica_assignment=[[0]])])
    error = admin_error(bad[topic])
    assert error.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert "not consistent with previous partitions" in error.str()
    bad = client.create_partitions([NewPartitions(topic, 5, replica_assignment=[[0, 7]])])
    assert admin_error(bad[topic]).code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    client.create_partitions([NewPartitions(topic, 5, replica_assignment=[[2, 1]])])[topic].result(
        timeout=30
    )
    wait_until(lambda: described().get(4, (None, []))[1] == [2, 1], "partition 4 on [2, 1]")
