"""Classic consumer groups with the pure-Python clients, kafka-python 3.0 and aiokafka 0.14:
three members on six partitions, one leaves cleanly, its partitions move to the survivors,
every message is processed once (commit after processing)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.abc import ConsumerRebalanceListener as AioRebalanceListener
from helpers.broker_process import BrokerFactory
from helpers.confluent import create_topic
from helpers.groups import (
    GROUP_BROKER_SETTINGS,
    HEARTBEAT_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    SETTLE_LIMIT_S,
    GroupLog,
    duplicates,
    owned_partition_the_topic,
    produce_numbered,
    unique,
)
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata

PARTITIONS = 6
BATCH = 300
MAX_POLL_RECORDS = 20  # small batches: a member re-checks for rebalances often

GROUP_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": SESSION_TIMEOUT_MS,
    "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
    "max_poll_records": MAX_POLL_RECORDS,
}


def _batch(n: int) -> range:
    return range(n * BATCH, (n + 1) * BATCH)


def _sizes(log: GroupLog, expected: dict[str, int]) -> Callable[[], bool]:
    def settled() -> bool:
        owned = {m: p for m, p in log.assignments().items() if p}
        sizes = {m: len(p) for m, p in owned.items()}
        return sizes == expected and owned_partition_the_topic(owned, PARTITIONS)

    return settled


def _check_run(log: GroupLog, batches: int, members: set[str]) -> None:
    seen = log.processed_ids()
    assert set(seen) == set(range(batches * BATCH)), "messages lost"
    dup = duplicates(log.processed_so_far())
    assert not dup, f"processed twice: {dict(list(dup.items())[:5])}; {log.summary()}"
    assert {p.member for p in log.processed_so_far()} == members
    assert not log.failures_so_far(), log.failures_so_far()


# --------------------------------------------------------------------------- kafka-python


class _KafkaPythonListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, name: str, log: GroupLog) -> None:
        self.name = name
        self.log = log

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.log.revoked(self.name, [tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.log.assigned(self.name, [tp.partition for tp in assigned])


class _KafkaPythonMember:
    """A kafka-python KafkaConsumer on its own thread (it owns the consumer)."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, log: GroupLog) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kp-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SETTLE_LIMIT_S)
        assert not self._thread.is_alive(), f"{self.name} did not close"

    def _run(self) -> None:
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                client_id=self.name,
                **GROUP_SETTINGS,
            )
        except Exception as exc:
            self.log.failed(self.name, f"member crashed: {exc!r}")
            return
        try:
            consumer.subscribe([self.topic], listener=_KafkaPythonListener(self.name, self.log))
            while not self._stop.is_set():
                for tp, records in consumer.poll(timeout_ms=100).items():
                    for record in records:
                        self.log.processed(
                            self.name, tp.partition, record.offset, int(record.value)
                        )
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        except Exception as exc:
            self.log.failed(self.name, f"member crashed: {exc!r}")
        finally:
            consumer.close(autocommit=False)  # LeaveGroup


@pytest.mark.timeout(120)
def test_kafka_python_group_member_leaves(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("kp-group-topic"), unique("kp-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    members = {n: _KafkaPythonMember(n, broker.bootstrap, group, topic, log) for n in "abc"}
    try:
        # Records only once the group has settled: a member that got every partition before
        # the others joined would otherwise be committing when the rebalance ends, and that
        # commit fails (CommitFailedError) against any Kafka.
        for member in members.values():
            member.start()
        log.wait_for(_sizes(log, {"a": 2, "b": 2, "c": 2}), "2 partitions per member")
        produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)
        log.wait_for_processed(_batch(0))
        before = log.assignments()

        members["c"].stop()
        log.wait_for(_sizes(log, {"a": 3, "b": 3}), "c's partitions to move to a and b")
        after = log.assignments()
        assert before["c"] <= after["a"] | after["b"]
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)
        log.wait_for_processed(_batch(1))
    finally:
        for member in members.values():
            member.stop()
    _check_run(log, 2, {"a", "b", "c"})


# --------------------------------------------------------------------------- aiokafka


class _AioListener(AioRebalanceListener):
    def __init__(self, name: str, log: GroupLog) -> None:
        self.name = name
        self.log = log

    def on_partitions_revoked(self, revoked: list[AioTopicPartition]) -> None:
        self.log.revoked(self.name, [tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: list[AioTopicPartition]) -> None:
        self.log.assigned(self.name, [tp.partition for tp in assigned])


async def _aio_member(
    name: str, bootstrap: str, group: str, topic: str, log: GroupLog, stop: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, client_id=name, **GROUP_SETTINGS
    )
    consumer.subscribe([topic], listener=_AioListener(name, log))
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=MAX_POLL_RECORDS)
            for tp, records in batches.items():
                for record in records:
                    assert record.value is not None
                    log.processed(name, tp.partition, record.offset, int(record.value))
                    await consumer.commit({tp: record.offset + 1})
    except Exception as exc:
        log.failed(name, f"member crashed: {exc!r}")
    finally:
        await consumer.stop()  # LeaveGroup
        log.closed(name)


async def _wait(log: GroupLog, predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while not predicate():
        if any("crashed" in f for f in log.failures_so_far()) or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {log.summary()}")
        await asyncio.sleep(0.05)


async def _aiokafka_scenario(bootstrap: str, topic: str, group: str, log: GroupLog) -> None:
    stops = {n: asyncio.Event() for n in "abc"}
    tasks = {
        n: asyncio.create_task(_aio_member(n, bootstrap, group, topic, log, stops[n]))
        for n in "abc"
    }
    try:
        # Records only once the group has settled (see the kafka-python test).
        await _wait(log, _sizes(log, {"a": 2, "b": 2, "c": 2}), "2 partitions per member")
        await asyncio.to_thread(produce_numbered, bootstrap, topic, _batch(0), PARTITIONS)
        await _wait(log, lambda: log.has_processed(_batch(0)), "batch 0 processed")
        before = log.assignments()

        stops["c"].set()
        await asyncio.wait_for(tasks["c"], SETTLE_LIMIT_S)
        await _wait(log, _sizes(log, {"a": 3, "b": 3}), "c's partitions to move to a and b")
        after = log.assignments()
        assert before["c"] <= after["a"] | after["b"]
        await asyncio.to_thread(produce_numbered, bootstrap, topic, _batch(1), PARTITIONS)
        await _wait(log, lambda: log.has_processed(_batch(1)), "batch 1 processed")
    finally:
        for event in stops.values():
            event.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), SETTLE_LIMIT_S)


@pytest.mark.timeout(120)
def test_aiokafka_group_member_leaves(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("aio-group-topic"), unique("aio-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    asyncio.run(_aiokafka_scenario(broker.bootstrap, topic, group, log))
    _check_run(log, 2, {"a", "b", "c"})
