"""The same client programs (confluent-kafka, i.e. librdkafka) against Kafka and against us.

Where the raw scenarios pin single answers, these check what a real client makes of a whole
exchange: where each message landed, what a consumer reads back, what the AdminClient says.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewPartitions, NewTopic, OffsetSpec
from helpers.confluent import (
    ADMIN_TIMEOUT_S,
    DeliveryLog,
    admin,
    admin_error,
    client_config,
    consume_all,
    create_topic,
    produce_with_backpressure,
)

from .differential import Target, Targets, unique

pytestmark = pytest.mark.timeout(150)

MESSAGES = 1_500
PARTITIONS = 3
KEYS = 37


def test_idempotent_producer_and_consumer_see_the_same_log(targets: Targets) -> None:
    topic = unique("librdkafka")
    t0 = int(time.time() * 1000) - 600_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t.bootstrap, topic, PARTITIONS)
        log = DeliveryLog()
        producer = Producer(
            client_config(
                t.bootstrap,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "compression.type": "lz4",
                    "linger.ms": 5,
                    "batch.num.messages": 100,
                },
            )
        )
        for i in range(MESSAGES):
            produce_with_backpressure(
                producer,
                topic=topic,
                key=b"key-%d" % (i % KEYS),
                value=b"value-%d|" % i + b"abc" * (i % 11),
                headers=[("i", b"%d" % i)],
                timestamp=t0 + i,
                on_delivery=log.callback(i),
            )
        assert producer.flush(60) == 0, "messages still queued after 60 s"
        assert not log.failed, f"{t}: delivery failures: {list(log.failed.items())[:5]}"
        read = consume_all(t.bootstrap, topic, range(PARTITIONS))
        return {
            # librdkafka's default partitioner hashes the key: the same partition on both,
            # and with one in-order idempotent producer, the same offset.
            "delivered": sorted(log.delivered.items()),
            "read": {
                p: [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()) for m in messages]
                for p, messages in read.items()
            },
        }

    answer = targets.compare(scenario, "an idempotent lz4 producer, then a consumer")
    assert sum(len(v) for v in answer["read"].values()) == MESSAGES


def test_admin_client_answers(targets: Targets) -> None:
    topic = unique("admin-client")
    t0 = int(time.time() * 1000) - 600_000

    def scenario(t: Target) -> dict[str, Any]:
        client = admin(t.bootstrap)
        create_topic(t.bootstrap, topic, 2, {"retention.ms": "86400000"})
        producer = Producer(client_config(t.bootstrap))
        for i in range(10):
            producer.produce(topic, b"v%d" % i, b"k%d" % i, partition=0, timestamp=t0 + i * 10)
        assert producer.flush(30) == 0

        def error_of(futures: dict[str, Any], name: str) -> str:
            return str(admin_error(futures[name]).name())

        out: dict[str, Any] = {
            "create existing": error_of(
                client.create_topics([NewTopic(topic, 2, 1)], operation_timeout=10), topic
            ),
            "create bad name": error_of(
                client.create_topics([NewTopic("bad name", 1, 1)], operation_timeout=10),
                "bad name",
            ),
            "create bad config": error_of(
                client.create_topics(
                    [NewTopic(topic + "x", 1, 1, config={"retention.ms": "soon"})],
                    operation_timeout=10,
                ),
                topic + "x",
            ),
            "shrink partitions": error_of(
                client.create_partitions([NewPartitions(topic, 1)], operation_timeout=10),
                topic,
            ),
        }
        specs = {
            "earliest": OffsetSpec.earliest(),
            "latest": OffsetSpec.latest(),
            "max timestamp": OffsetSpec.max_timestamp(),
            "for T+35": OffsetSpec.for_timestamp(t0 + 35),
        }
        for name, spec in specs.items():
            futures = client.list_offsets(
                {TopicPartition(topic, 0): spec}, request_timeout=ADMIN_TIMEOUT_S
            )
            info = futures[TopicPartition(topic, 0)].result(timeout=ADMIN_TIMEOUT_S)
            out[f"list offsets {name}"] = (info.offset, info.timestamp)
        return out

    targets.compare(scenario, "confluent-kafka AdminClient")
