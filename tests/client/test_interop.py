"""Our clients against librdkafka (confluent-kafka): every codec both ways, keys, headers and
timestamps exact; keyed records land where confluent-kafka's murmur2_random puts them."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from metamorphostreams.client import Admin, NewTopic, partition_for_key
from metamorphostreams.client import Consumer as MmsConsumer
from metamorphostreams.client import Producer as MmsProducer

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RECORDS = 200
PARTITIONS = 3
READ_LIMIT_S = 30.0  # liveness bound; a healthy broker answers in milliseconds


def _records() -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]]:
    base = 1_700_000_000_000
    out = []
    for i in range(RECORDS):
        key = None if i % 7 == 0 else f"key-{i % 13}".encode()
        value = None if i % 17 == 5 else f"value-{i}".encode() * (1 + i % 5) + os.urandom(i % 4)
        headers = [("h1", f"x{i}".encode()), ("empty", b"")] if i % 3 else []
        out.append((key, value, headers, base + i * 10))
    return out


def _create(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(topic, partitions)])


def _confluent_read(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "interop",
            "enable.auto.commit": False,
            "broker.address.family": "v4",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + READ_LIMIT_S
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                got.append(msg)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_our_producer_to_confluent_consumer(bootstrap: str, codec: str) -> None:
    topic = f"ours-{codec}"
    _create(bootstrap, topic)
    records = _records()
    with MmsProducer({"bootstrap.servers": bootstrap, "compression.type": codec}) as producer:
        futures = [
            producer.produce(topic, value, key, headers=headers, timestamp=ts)
            for key, value, headers, ts in records
        ]
        producer.flush()
        placed = [f.result() for f in futures]
    got = _confluent_read(bootstrap, topic, PARTITIONS, RECORDS)
    assert len(got) == RECORDS
    by_position = {(m.partition(), m.offset()): m for m in got}
    for (key, value, headers, ts), md in zip(records, placed, strict=True):
        msg = by_position[(md.partition, md.offset)]
        assert msg.key() == key
        assert msg.value() == value
        assert (msg.headers() or []) == headers
        assert msg.timestamp()[1] == ts
        if key is not None:
            assert msg.partition() == partition_for_key(key, PARTITIONS)


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_producer_to_our_consumer(bootstrap: str, codec: str) -> None:
    topic = f"theirs-{codec}"
    _create(bootstrap, topic)
    records = _records()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "partitioner": "murmur2_random",
            "broker.address.family": "v4",
            "linger.ms": 5,
        }
    )
    delivered = {}

    def report(err, msg):  # type: ignore[no-untyped-def]
        assert err is None, err
        delivered[(msg.partition(), msg.offset())] = msg

    for key, value, headers, ts in records:
        producer.produce(
            topic, value=value, key=key, headers=headers, timestamp=ts, on_delivery=report
        )
    assert producer.flush(READ_LIMIT_S) == 0
    assert len(delivered) == RECORDS
    with MmsConsumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}) as consumer:
        consumer.assign([(topic, p) for p in range(PARTITIONS)])
        got = []
        deadline = time.monotonic() + READ_LIMIT_S
        while len(got) < RECORDS and time.monotonic() < deadline:
            got += consumer.poll(0.5)
    assert len(got) == RECORDS
    expected = {(k, v, tuple(h), ts) for k, v, h, ts in records}
    seen = {(r.key, r.value, tuple(r.headers), r.timestamp) for r in got}
    assert seen == expected
    for r in got:
        sent = delivered[(r.partition, r.offset)]
        assert sent.key() == r.key and sent.value() == r.value
        if r.key is not None:
            # librdkafka's murmur2_random and our partitioner agree on every key.
            assert r.partition == partition_for_key(r.key, PARTITIONS)


def test_keyed_partition_matches_murmur2_random_for_many_keys(bootstrap: str) -> None:
    partitions = 7
    _create(bootstrap, "keys", partitions)
    keys = [f"user-{i}".encode() for i in range(300)] + [os.urandom(i % 40) for i in range(100)]
    keys = [k for k in keys if k]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "broker.address.family": "v4",
        }
    )
    theirs: dict[bytes, int] = {}

    def report(err, msg):  # type: ignore[no-untyped-def]
        assert err is None
        theirs[msg.key()] = msg.partition()

    for key in keys:
        producer.produce("keys", value=b"x", key=key, on_delivery=report)
    assert producer.flush(READ_LIMIT_S) == 0
    with MmsProducer({"bootstrap.servers": bootstrap}) as ours:
        placed = {key: ours.produce("keys", b"y", key) for key in keys}
        ours.flush()
    for key in keys:
        assert placed[key].result().partition == theirs[key] == partition_for_key(key, partitions)
