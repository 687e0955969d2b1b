"""aiokafka 0.14 against the broker (non-flexible protocol versions only: Produce 7, Fetch 11,
Metadata 5, InitProducerId 0): plain and idempotent producers, an assign()ed consumer, and
AIOKafkaAdminClient topic create/delete."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from helpers import kafka_wire
from helpers.broker_process import BrokerProcess
from helpers.confluent import consume_all

MESSAGES = 2_000
PARTITIONS = 2
READ_LIMIT_S = 60.0  # bound on reading back; a healthy broker needs well under a second
METADATA_LIMIT_S = 30.0


def _value(i: int) -> bytes:
    return f"aio-value-{i:05d}".encode() + b"~" * (i % 11)


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="mms-e2e-admin")
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, 1)])
        assert [(t, code) for t, code, *_ in response.topic_errors] == [(topic, 0)], response
        await _wait_for_topic(admin, topic, present=True)
    finally:
        await admin.close()


async def _wait_for_topic(admin: AIOKafkaAdminClient, topic: str, present: bool) -> None:
    deadline = time.monotonic() + METADATA_LIMIT_S
    while (topic in await admin.list_topics()) != present:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{topic} {'never appeared in' if present else 'stayed in'} metadata"
            )
        await asyncio.sleep(0.05)


async def _produce_and_consume(bootstrap: str, idempotent: bool) -> None:
    topic = f"aio-{'idem' if idempotent else 'plain'}-{uuid.uuid4().hex[:8]}"
    await _create_topic(bootstrap, topic, PARTITIONS)

    base_ts = int(time.time() * 1000) - 5 * 60 * 1000
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=idempotent, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=b"k%d" % (i % 19),
                value=_value(i),
                headers=[("n", str(i).encode()), ("bin", b"\x00\x01")],
                partition=i % PARTITIONS,
                timestamp_ms=base_ts + i,
            )
            for i in range(MESSAGES)
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    for partition in range(PARTITIONS):
        offsets = [m.offset for m in metadata if m.partition == partition]
        assert offsets == list(range(MESSAGES // PARTITIONS)), f"partition {partition} offsets"

    if idempotent:
        with kafka_wire.WireConnection(bootstrap) as conn:
            fetched = kafka_wire.fetch_partition_response(
                conn.request(kafka_wire.fetch_request(topic, 0, 0))
            )
        headers = kafka_wire.batch_headers(bytes(fetched.records or b""))
        assert headers and headers[0].producer_id >= 0, "idempotent batch without a producer id"

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + READ_LIMIT_S
        while len(records) < MESSAGES and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()

    assert len(records) == MESSAGES, f"read {len(records)} of {MESSAGES}"
    for partition in range(PARTITIONS):
        got = [r for r in records if r.partition == partition]
        expected_ids = list(range(partition, MESSAGES, PARTITIONS))
        assert [r.offset for r in got] == list(range(len(expected_ids)))
        for record, i in zip(got, expected_ids, strict=True):
            assert record.key == b"k%d" % (i % 19)
            assert record.value == _value(i)
            assert list(record.headers) == [("n", str(i).encode()), ("bin", b"\x00\x01")]
            assert record.timestamp == base_ts + i
            assert record.timestamp_type == 0  # CreateTime


@pytest.mark.timeout(120)
@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_produce_and_consume(broker: BrokerProcess, idempotent: bool) -> None:
    asyncio.run(_produce_and_consume(broker.bootstrap, idempotent))


async def _admin_create_delete(bootstrap: str) -> None:
    topic = f"aio-admin-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="mms-e2e-admin")
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 3, 1)])
        assert [(t, code) for t, code, *_ in response.topic_errors] == [(topic, 0)], response
        await _wait_for_topic(admin, topic, present=True)
        described = await admin.describe_topics([topic])
        (info,) = described
        assert info["error_code"] == 0 and len(info["partitions"]) == 3, info

        response = await admin.delete_topics([topic])
        assert [(t, code) for t, code, *_ in response.topic_error_codes] == [(topic, 0)], response
        await _wait_for_topic(admin, topic, present=False)
    finally:
        await admin.close()


@pytest.mark.timeout(60)
def test_admin_create_and_delete_topic(broker: BrokerProcess) -> None:
    asyncio.run(_admin_create_delete(broker.bootstrap))


CODEC_MESSAGES = 1_000


async def _produce_compressed(bootstrap: str, topic: str, codec: str, base_ts: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        compression_type=codec,
        linger_ms=20,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, key=b"c%d" % i, value=_value(i), partition=0, timestamp_ms=base_ts + i
            )
            for i in range(CODEC_MESSAGES)
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert [m.offset for m in sent] == list(range(CODEC_MESSAGES))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_read_back_by_librdkafka(broker: BrokerProcess, codec: str) -> None:
    """aiokafka frames snappy the Java ("xerial") way, librdkafka reads it: the broker must
    keep compressed batches intact (and understand them where it looks inside)."""
    topic = f"aio-{codec}-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topic(broker.bootstrap, topic, 1))
    base_ts = int(time.time() * 1000) - 5 * 60 * 1000
    asyncio.run(_produce_compressed(broker.bootstrap, topic, codec, base_ts))

    messages = consume_all(broker.bootstrap, topic, [0])[0]
    assert [m.offset() for m in messages] == list(range(CODEC_MESSAGES))
    assert [m.key() for m in messages] == [b"c%d" % i for i in range(CODEC_MESSAGES)]
    assert [m.value() for m in messages] == [_value(i) for i in range(CODEC_MESSAGES)]
    assert [m.timestamp()[1] for m in messages] == [base_ts + i for i in range(CODEC_MESSAGES)]
