"""An application's Kafka code, tested with confluent-kafka against the `kafka_bootstrap`
fixture: a fresh broker per test, no Docker, no JVM."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def publish_orders(bootstrap: str, orders: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for order in orders:
        producer.produce("orders", value=order.encode(), key=order.split(":")[0].encode())
    producer.flush(30)


def read_orders(bootstrap: str, count: int) -> list[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "order-readers",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["orders"])
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg.value().decode())
    consumer.close()
    return got


def test_orders_round_trip(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic("orders", num_partitions=2)])["orders"].result(30)
    publish_orders(kafka_bootstrap, ["alice:1", "bob:2", "alice:3"])
    assert sorted(read_orders(kafka_bootstrap, 3)) == ["alice:1", "alice:3", "bob:2"]


def test_each_test_gets_a_fresh_broker(kafka_bootstrap: str) -> None:
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert "orders" not in topics
