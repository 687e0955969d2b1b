"""confluent-kafka (librdkafka) conveniences shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

ADMIN_TIMEOUT_S = 30.0  # bound on any single admin call; a healthy local broker answers in ms
DRAIN_LIMIT_S = 120.0  # bound on reading a topic back; only a stuck broker gets near it


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # IPv4 loopback only; never wander off to ::1 or a resolver.
        "broker.address.family": "v4",
    }
    config.update(extra)
    return config


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(client_config(bootstrap))


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    config: Mapping[str, str] | None = None,
    replication_factor: int = 1,
) -> None:
    client = admin(bootstrap)
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(config or {}),
    )
    futures = client.create_topics([topic], operation_timeout=ADMIN_TIMEOUT_S)
    futures[name].result(timeout=ADMIN_TIMEOUT_S)
    wait_until(
        lambda: _partitions_with_leaders(client, name) == partitions,
        f"topic {name} with {partitions} led partitions to appear in metadata",
    )


def _partitions_with_leaders(client: AdminClient, name: str) -> int:
    """How many partitions of `name` metadata shows with a leader (-1: topic not there)."""
    topic = client.list_topics(name, timeout=ADMIN_TIMEOUT_S).topics.get(name)
    if topic is None or topic.error is not None:
        return -1
    return sum(1 for p in topic.partitions.values() if p.error is None and p.leader >= 0)


def admin_error(future: Any) -> KafkaError:
    """The KafkaError an admin future fails with (AssertionError if it succeeds)."""
    try:
        result = future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        return exc.args[0]
    raise AssertionError(f"admin operation succeeded ({result!r}) but an error was expected")


def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = ADMIN_TIMEOUT_S) -> None:
    """Poll until `predicate()` holds; a liveness bound, not a timing assertion."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def partition_of(msg: Message) -> int:
    partition = msg.partition()
    assert partition is not None, "message without a partition"
    return partition


def offset_of(msg: Message) -> int:
    offset = msg.offset()
    assert offset is not None, "message without an offset"
    return offset


def value_of(msg: Message) -> bytes:
    value = msg.value()
    assert value is not None, f"null value at offset {msg.offset()}"
    return value


@dataclass
class DeliveryLog:
    """Delivery reports collected by `on_delivery`, keyed by the caller's message id."""

    delivered: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (partition, offset)
    failed: dict[int, str] = field(default_factory=dict)

    def callback(self, message_id: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed[message_id] = f"{err.name()}: {err.str()}"
            else:
                self.delivered[message_id] = (partition_of(msg), offset_of(msg))

        return report


def crash_tolerant_producer(
    bootstrap: str, *, linger_ms: int, batch_num_messages: int
) -> tuple[Producer, list[str]]:
    """An idempotent acks=all producer that rides out broker restarts (quick reconnects, a long
    message timeout), and the list its fatal errors are collected in."""
    fatal: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.fatal():
            fatal.append(f"{err.name()}: {err.str()}")

    producer = Producer(
        client_config(
            bootstrap,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "batch.num.messages": batch_num_messages,
                "message.timeout.ms": 120_000,
                "retry.backoff.ms": 50,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "error_cb": on_error,
            },
        )
    )
    return producer, fatal


def produce_with_backpressure(producer: Producer, **kwargs: Any) -> None:
    """produce(), serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(**kwargs)
        except BufferError:
            producer.poll(0.05)
        else:
            producer.poll(0)
            return


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    *,
    group_id: str = "mms-e2e-reader",
    limit_s: float = DRAIN_LIMIT_S,
    **extra: Any,
) -> dict[int, list[Message]]:
    """Read every partition from the beginning to its end (assign(), no group membership).

    Stops when each partition has reported end-of-partition; returns messages per partition.
    """
    wanted = list(partitions)
    consumer = Consumer(
        client_config(
            bootstrap,
            **{
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "error",
                **extra,
            },
        )
    )
    out: dict[int, list[Message]] = {p: [] for p in wanted}
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
        deadline = time.monotonic() + limit_s
        while at_end != set(wanted):
            if time.monotonic() > deadline:
                counts = {p: len(m) for p, m in out.items()}
                raise AssertionError(
                    f"gave up reading {topic} after {limit_s:.0f} s: got {counts}, "
                    f"end reached for {sorted(at_end)}"
                )
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                err = msg.error()
                if err is None:
                    out[partition_of(msg)].append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition_of(msg))
                else:
                    raise AssertionError(
                        f"consumer error on {msg.topic()}-{msg.partition()}: "
                        f"{err.name()} ({err.code()}): {err.str()}"
                    )
    finally:
        consumer.close()
    return out


def topic_names(bootstrap: str) -> set[str]:
    metadata = admin(bootstrap).list_topics(timeout=ADMIN_TIMEOUT_S)
    return set(metadata.topics)
