"""confluent-kafka (librdkafka 2.16) against the broker: produce/consume with every codec,
metadata, topic deletion, and ListOffsets in all its forms."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from helpers.broker_process import BrokerProcess
from helpers.confluent import (
    ADMIN_TIMEOUT_S,
    DeliveryLog,
    admin,
    client_config,
    consume_all,
    create_topic,
    produce_with_backpressure,
    topic_names,
    value_of,
    wait_until,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
MESSAGES = 10_000
PARTITIONS = 3
KEYS = 101  # distinct keys, spread over the partitions by librdkafka's partitioner


def _key(i: int) -> bytes:
    return f"key-{i % KEYS:03d}".encode()


def _value(i: int) -> bytes:
    # Compressible but not constant, so every codec has real work and a mix-up shows.
    return f"value-{i:05d}|".encode() + b"abcdefghij" * (i % 7 + 1)


def _headers(i: int) -> list[tuple[str, bytes]]:
    return [("trace-id", f"t-{i}".encode()), ("source", b"mms-e2e\x00\xff")]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_produce_and_consume_every_codec(broker: BrokerProcess, codec: str) -> None:
    topic = _unique(f"codec-{codec}")
    create_topic(broker.bootstrap, topic, PARTITIONS)

    # Timestamps in the recent past: inside Kafka's default
    # log.message.timestamp.{before,after}.max.ms windows, and distinct per message.
    base_ts = int(time.time() * 1000) - 10 * 60 * 1000
    producer = Producer(
        client_config(
            broker.bootstrap,
            **{
                "enable.idempotence": True,
                "compression.type": codec,
                "linger.ms": 5,
            },
        )
    )
    log = DeliveryLog()
    for i in range(MESSAGES):
        produce_with_backpressure(
            producer,
            topic=topic,
            key=_key(i),
            value=_value(i),
            headers=_headers(i),
            timestamp=base_ts + i,
            on_delivery=log.callback(i),
        )
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages still undelivered after flush(60)"
    assert not log.failed, (
        f"{len(log.failed)} failed deliveries, e.g. {next(iter(log.failed.items()))}"
    )
    assert len(log.delivered) == MESSAGES

    # The same key always lands in the same partition, and every partition got traffic.
    partition_of_key: dict[bytes, int] = {}
    for i, (partition, _offset) in log.delivered.items():
        assert partition_of_key.setdefault(_key(i), partition) == partition, (
            f"key {_key(i)!r} split"
        )
    assert set(partition_of_key.values()) == set(range(PARTITIONS))

    # Produce order per partition (ids ascending = order of produce() calls).
    expected: dict[int, list[int]] = defaultdict(list)
    for i in range(MESSAGES):
        expected[log.delivered[i][0]].append(i)

    got = consume_all(broker.bootstrap, topic, range(PARTITIONS))
    assert sum(len(m) for m in got.values()) == MESSAGES
    for partition in range(PARTITIONS):
        messages = got[partition]
        ids = [int(value_of(m)[6:11]) for m in messages]
        assert ids == expected[partition], f"partition {partition}: order or content differs"
        offsets = [m.offset() for m in messages]
        assert offsets == list(range(len(messages))), f"partition {partition}: offsets not 0..n-1"
        for msg, i in zip(messages, ids, strict=True):
            assert msg.key() == _key(i)
            assert msg.value() == _value(i)
            assert msg.headers() == _headers(i)
            assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, base_ts + i)
            assert log.delivered[i] == (partition, msg.offset()), "delivery report offset differs"


@pytest.mark.timeout(60)
def test_metadata_lists_broker_and_topic(broker: BrokerProcess) -> None:
    topic = _unique("meta")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    metadata = admin(broker.bootstrap).list_topics(timeout=ADMIN_TIMEOUT_S)

    assert metadata.cluster_id, "Metadata carries no cluster id"
    assert metadata.controller_id == broker.broker_id
    assert list(metadata.brokers) == [broker.broker_id]
    node = metadata.brokers[broker.broker_id]
    assert (node.host, node.port) == (broker.host, broker.port)

    described = metadata.topics[topic]
    assert described.error is None
    assert sorted(described.partitions) == list(range(PARTITIONS))
    for partition in described.partitions.values():
        assert partition.error is None
        assert partition.leader == broker.broker_id
        assert partition.replicas == [broker.broker_id]
        assert partition.isrs == [broker.broker_id]


@pytest.mark.timeout(60)
def test_delete_topic_then_recreate_empty(broker: BrokerProcess) -> None:
    topic = _unique("doomed")
    create_topic(broker.bootstrap, topic, 2)
    producer = Producer(client_config(broker.bootstrap))
    log = DeliveryLog()
    for i in range(10):
        producer.produce(topic, value=b"x%d" % i, partition=i % 2, on_delivery=log.callback(i))
    assert producer.flush(30) == 0
    assert len(log.delivered) == 10 and not log.failed

    client = admin(broker.bootstrap)  # keep alive until the futures resolve

    futures = client.delete_topics([topic], operation_timeout=ADMIN_TIMEOUT_S)
    futures[topic].result(timeout=ADMIN_TIMEOUT_S)
    wait_until(lambda: topic not in topic_names(broker.bootstrap), f"{topic} to leave metadata")

    # Recreating the name gives a new, empty topic: the old data really went away.
    create_topic(broker.bootstrap, topic, 1)
    got = consume_all(broker.bootstrap, topic, [0])
    assert got == {0: []}


@pytest.mark.timeout(90)
def test_list_offsets_and_offsets_for_times(broker: BrokerProcess) -> None:
    topic = _unique("offsets")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    now_ms = int(time.time() * 1000)
    base_ts = now_ms - 2 * 60 * 60 * 1000
    per_partition = [200, 37, 0]  # partition 2 stays empty on purpose
    peak = {0: 123, 1: 5}  # index of the record carrying each partition's max timestamp
    peak_ts = {0: now_ms - 60_000, 1: now_ms - 120_000}

    def timestamp(partition: int, index: int) -> int:
        if peak.get(partition) == index:
            return peak_ts[partition]
        return base_ts + partition * 1_000_000 + index * 10

    producer = Producer(client_config(broker.bootstrap, **{"linger.ms": 20}))
    log = DeliveryLog()
    for partition, count in enumerate(per_partition):
        for index in range(count):
            producer.produce(
                topic,
                value=b"%d/%d" % (partition, index),
                partition=partition,
                timestamp=timestamp(partition, index),
                on_delivery=log.callback(partition * 10_000 + index),
            )
    assert producer.flush(30) == 0
    assert not log.failed and len(log.delivered) == sum(per_partition)

    client = admin(broker.bootstrap)

    def list_offsets(spec_for: dict[int, OffsetSpec]) -> dict[int, tuple[int, int]]:
        request = {TopicPartition(topic, p): spec for p, spec in spec_for.items()}
        futures = client.list_offsets(request, request_timeout=ADMIN_TIMEOUT_S)
        out = {}
        for tp, future in futures.items():
            info = future.result(timeout=ADMIN_TIMEOUT_S)
            out[tp.partition] = (info.offset, info.timestamp)
        return out

    earliest = list_offsets({p: OffsetSpec.earliest() for p in range(PARTITIONS)})
    assert {p: o for p, (o, _) in earliest.items()} == {0: 0, 1: 0, 2: 0}

    latest = list_offsets({p: OffsetSpec.latest() for p in range(PARTITIONS)})
    assert {p: o for p, (o, _) in latest.items()} == dict(enumerate(per_partition))

    # By timestamp: the first offset whose timestamp is >= the one asked for.
    probe = {
        0: (timestamp(0, 50), 50),  # exact hit (before the peak)
        1: (timestamp(1, 3) - 5, 3),  # between two records (before the peak)
    }
    by_time = list_offsets({p: OffsetSpec.for_timestamp(ts) for p, (ts, _) in probe.items()})
    for partition, (_ts, index) in probe.items():
        assert by_time[partition] == (index, timestamp(partition, index)), f"partition {partition}"
    # Past the peak, the earliest record at or above the target is the peak itself (timestamps
    # are not monotonic in the log), not the next record in timestamp order.
    after_peak = list_offsets({0: OffsetSpec.for_timestamp(timestamp(0, 150))})
    assert after_peak[0] == (peak[0], peak_ts[0])

    # Later than every record: no offset (Kafka answers offset -1).
    beyond = list_offsets({0: OffsetSpec.for_timestamp(now_ms + 3_600_000)})
    assert beyond[0][0] == -1

    # Max timestamp (ListOffsets v7+, timestamp -3): the record itself, not its batch's end.
    max_ts = list_offsets({p: OffsetSpec.max_timestamp() for p in (0, 1)})
    for partition in (0, 1):
        assert max_ts[partition] == (peak[partition], peak_ts[partition]), f"partition {partition}"

    # The consumer-side APIs agree.
    consumer = Consumer(
        client_config(
            broker.bootstrap, **{"group.id": "mms-e2e-offsets", "enable.auto.commit": False}
        )
    )
    try:
        for partition, count in enumerate(per_partition):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=ADMIN_TIMEOUT_S
            )
            assert (low, high) == (0, count), f"watermarks of partition {partition}"
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, ts) for p, (ts, _) in probe.items()],
            timeout=ADMIN_TIMEOUT_S,
        )
        assert {tp.partition: tp.offset for tp in found} == {p: i for p, (_, i) in probe.items()}
        for tp in found:
            assert tp.error is None
    finally:
        consumer.close()
