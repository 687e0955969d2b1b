"""kafka-python 3.x against the broker: its default (idempotent) producer, an assign()ed
consumer from the beginning, and KafkaAdminClient topic create/delete."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from helpers import kafka_wire
from helpers.broker_process import BrokerProcess
from helpers.confluent import wait_until
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

MESSAGES = 2_000
PARTITIONS = 2
READ_LIMIT_S = 60.0  # bound on reading back; a healthy broker needs well under a second


def _value(i: int) -> bytes:
    return f"kp-value-{i:05d}".encode() + b"." * (i % 13)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", [None, "gzip"], ids=["uncompressed", "gzip"])
def test_default_producer_and_assigned_consumer(broker: BrokerProcess, codec: str | None) -> None:
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="mms-e2e-admin")
    try:
        admin.create_topics(
            {topic: {"num_partitions": PARTITIONS, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        wait_until(lambda: topic in admin.list_topics(), f"{topic} in kafka-python metadata")
    finally:
        admin.close()

    base_ts = int(time.time() * 1000) - 5 * 60 * 1000
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, linger_ms=5, compression_type=codec
    )
    try:
        # kafka-python 3.x is idempotent by default, unless it decided the broker is too old.
        assert producer.config["enable_idempotence"] is True, "kafka-python disabled idempotence"
        futures = [
            producer.send(
                topic,
                key=b"k%d" % (i % 17),
                value=_value(i),
                headers=[("n", str(i).encode()), ("empty", b"")],
                partition=i % PARTITIONS,
                timestamp_ms=base_ts + i,
            )
            for i in range(MESSAGES)
        ]
        producer.flush(timeout=60)
        sent = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    offsets = {p: [m.offset for m in sent if m.partition == p] for p in range(PARTITIONS)}
    for partition, got in offsets.items():
        assert got == list(range(MESSAGES // PARTITIONS)), f"partition {partition} offsets"

    # The batches on the broker really carry a producer id (idempotence took effect).
    with kafka_wire.WireConnection(broker.bootstrap) as conn:
        fetched = kafka_wire.fetch_partition_response(
            conn.request(kafka_wire.fetch_request(topic, 0, 0))
        )
    assert fetched.error_code == kafka_wire.NONE
    headers = kafka_wire.batch_headers(bytes(fetched.records or b""))
    assert headers, "fetch from offset 0 returned no complete batch"
    assert headers[0].producer_id >= 0 and headers[0].base_sequence == 0, headers[0]

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + READ_LIMIT_S
        while len(records) < MESSAGES and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()

    assert len(records) == MESSAGES, f"read {len(records)} of {MESSAGES}"
    by_partition = {p: [r for r in records if r.partition == p] for p in range(PARTITIONS)}
    for partition, got_records in by_partition.items():
        expected_ids = list(range(partition, MESSAGES, PARTITIONS))
        assert [r.offset for r in got_records] == list(range(len(expected_ids)))
        for record, i in zip(got_records, expected_ids, strict=True):
            assert record.topic == topic
            assert record.key == b"k%d" % (i % 17)
            assert record.value == _value(i)
            assert list(record.headers) == [("n", str(i).encode()), ("empty", b"")]
            assert record.timestamp == base_ts + i
            assert record.timestamp_type == 0  # CreateTime


@pytest.mark.timeout(60)
def test_admin_create_and_delete_topic(broker: BrokerProcess) -> None:
    topic = f"kp-admin-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="mms-e2e-admin")
    try:
        result = admin.create_topics({topic: {"num_partitions": 4, "replication_factor": 1}})
        (created,) = result["topics"]
        assert created["name"] == topic and created["error_code"] == 0, result
        wait_until(lambda: topic in admin.list_topics(), f"{topic} in metadata")
        (described,) = admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3]

        result = admin.delete_topics([topic])
        (deleted,) = result["topics"]
        assert deleted["name"] == topic and deleted["error_code"] == 0, result
        wait_until(lambda: topic not in admin.list_topics(), f"{topic} to leave metadata")
    finally:
        admin.close()
