"""Transactions end to end: librdkafka (confluent-kafka, kcat), kafka-python and aiokafka
against a broker process, read back with read_committed and read_uncommitted consumers."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from helpers.broker_process import BrokerFactory, BrokerProcess, require_tool
from helpers.confluent import (
    client_config,
    consume_all,
    create_topic,
    value_of,
    wait_until,
)

TXN_TIMEOUT_S = 30.0  # bound on one transactional call; a healthy broker answers in ms
COMMITTED = {"isolation.level": "read_committed"}
UNCOMMITTED = {"isolation.level": "read_uncommitted"}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _txn_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    producer = Producer(
        client_config(bootstrap, **{"transactional.id": transactional_id, "linger.ms": 5, **extra})
    )
    producer.init_transactions(TXN_TIMEOUT_S)
    return producer


def _values(bootstrap: str, topic: str, partitions: int, **isolation: Any) -> list[bytes]:
    read = consume_all(bootstrap, topic, range(partitions), limit_s=60, **isolation)
    return [value_of(m) for p in sorted(read) for m in read[p]]


def _produce(producer: Producer, topic: str, values: list[bytes], partitions: int = 1) -> None:
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % partitions)
    producer.poll(0)


@pytest.mark.timeout(120)
def test_commit_visible_abort_hidden(broker: BrokerProcess) -> None:
    topic = _name("txn")
    create_topic(broker.bootstrap, topic, 3)
    producer = _txn_producer(broker.bootstrap, _name("tid"))

    committed = [f"c{i}".encode() for i in range(300)]
    aborted = [f"a{i}".encode() for i in range(300)]
    producer.begin_transaction()
    _produce(producer, topic, committed, 3)
    producer.commit_transaction(TXN_TIMEOUT_S)
    producer.begin_transaction()
    _produce(producer, topic, aborted, 3)
    producer.flush(TXN_TIMEOUT_S)
    producer.abort_transaction(TXN_TIMEOUT_S)
    producer.begin_transaction()
    _produce(producer, topic, [b"last"], 3)
    producer.commit_transaction(TXN_TIMEOUT_S)

    read_committed = _values(broker.bootstrap, topic, 3, **COMMITTED)
    assert sorted(read_committed) == sorted([*committed, b"last"])
    read_uncommitted = _values(broker.bootstrap, topic, 3, **UNCOMMITTED)
    assert sorted(read_uncommitted) == sorted([*committed, *aborted, b"last"])


@pytest.mark.timeout(120)
def test_open_transaction_holds_back_read_committed(broker: BrokerProcess) -> None:
    """The last stable offset stops read_committed readers at the first open transaction;
    a plain write after it is readable only once the transaction ends."""
    topic = _name("txn-open")
    create_topic(broker.bootstrap, topic, 1)
    producer = _txn_producer(broker.bootstrap, _name("tid"))
    plain = Producer(client_config(broker.bootstrap))
    plain.produce(topic, b"before", partition=0)
    plain.flush(TXN_TIMEOUT_S)

    producer.begin_transaction()
    _produce(producer, topic, [b"in-txn"])
    producer.flush(TXN_TIMEOUT_S)
    plain.produce(topic, b"after", partition=0)
    plain.flush(TXN_TIMEOUT_S)

    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == [b"before"]
    assert _values(broker.bootstrap, topic, 1, **UNCOMMITTED) == [b"before", b"in-txn", b"after"]
    low, high = _watermarks(broker.bootstrap, topic, COMMITTED)
    assert (low, high) == (0, 1), "read_committed end offset must be the last stable offset"

    producer.commit_transaction(TXN_TIMEOUT_S)
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == [b"before", b"in-txn", b"after"]
    # 3 records + 1 commit marker
    assert _watermarks(broker.bootstrap, topic, COMMITTED) == (0, 4)


def _watermarks(bootstrap: str, topic: str, isolation: dict[str, str]) -> tuple[int, int]:
    consumer = Consumer(client_config(bootstrap, **{"group.id": _name("wm"), **isolation}))
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, 0), timeout=TXN_TIMEOUT_S, cached=False
        )
        return low, high
    finally:
        consumer.close()


@pytest.mark.timeout(180)
def test_consume_transform_produce_commits_offsets_atomically(broker: BrokerProcess) -> None:
    source, sink, group = _name("src"), _name("sink"), _name("ctp")
    create_topic(broker.bootstrap, source, 3)
    create_topic(broker.bootstrap, sink, 3)
    feeder = Producer(client_config(broker.bootstrap))
    inputs = [f"in-{i}".encode() for i in range(600)]
    _produce(feeder, source, inputs, 3)
    feeder.flush(TXN_TIMEOUT_S)

    def run_round(abort: bool, limit: int) -> int:
        consumer = Consumer(
            client_config(
                broker.bootstrap,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    **COMMITTED,
                },
            )
        )
        producer = _txn_producer(broker.bootstrap, "ctp-app")
        consumer.subscribe([source])
        seen = 0
        producer.begin_transaction()
        deadline = time.monotonic() + 60
        while seen < limit and time.monotonic() < deadline:
            for msg in consumer.consume(200, timeout=0.5):
                if msg.error() is None:
                    producer.produce(sink, value_of(msg).upper(), partition=msg.partition())
                    seen += 1
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(
            [tp for tp in positions if tp.offset >= 0],
            consumer.consumer_group_metadata(),
            TXN_TIMEOUT_S,
        )
        if abort:
            producer.abort_transaction(TXN_TIMEOUT_S)
        else:
            producer.commit_transaction(TXN_TIMEOUT_S)
        consumer.close()
        return seen

    assert run_round(abort=True, limit=200) >= 200
    # The aborted round moved no committed offset: the next round starts from the beginning.
    assert run_round(abort=False, limit=600) == 600
    assert sorted(_values(broker.bootstrap, sink, 3, **COMMITTED)) == sorted(
        v.upper() for v in inputs
    )
    offsets = _committed(broker.bootstrap, group, source, 3)
    assert sum(offsets) == 600


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(client_config(bootstrap, **{"group.id": group}))
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=TXN_TIMEOUT_S
        )
        return [tp.offset for tp in found]
    finally:
        consumer.close()


@pytest.mark.timeout(120)
def test_zombie_producer_is_fenced(broker: BrokerProcess) -> None:
    topic = _name("txn-zombie")
    create_topic(broker.bootstrap, topic, 1)
    tid = _name("tid")
    zombie = _txn_producer(broker.bootstrap, tid)
    zombie.begin_transaction()
    _produce(zombie, topic, [b"zombie-1"])
    zombie.flush(TXN_TIMEOUT_S)

    successor = _txn_producer(broker.bootstrap, tid)  # fences the zombie, aborts its txn
    successor.begin_transaction()
    _produce(successor, topic, [b"successor"])
    successor.commit_transaction(TXN_TIMEOUT_S)

    _produce(zombie, topic, [b"zombie-2"])
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(TXN_TIMEOUT_S)
    error: KafkaError = raised.value.args[0]
    assert error.fatal() or error.txn_requires_abort(), error
    assert error.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ), error
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == [b"successor"]


@pytest.mark.timeout(120)
def test_abandoned_transaction_times_out_and_is_aborted(broker: BrokerProcess) -> None:
    topic = _name("txn-timeout")
    create_topic(broker.bootstrap, topic, 1)
    producer = _txn_producer(broker.bootstrap, _name("tid"), **{"transaction.timeout.ms": 2000})
    producer.begin_transaction()
    _produce(producer, topic, [b"abandoned"])
    producer.flush(TXN_TIMEOUT_S)
    # Never committed: the coordinator aborts it after transaction.timeout.ms, and the last
    # stable offset moves past its abort marker.
    wait_until(
        lambda: _watermarks(broker.bootstrap, topic, COMMITTED) == (0, 2),
        "the coordinator to abort the timed-out transaction",
        limit_s=60,
    )
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == []


@pytest.mark.timeout(180)
def test_transactions_survive_a_broker_restart(broker_factory: BrokerFactory) -> None:
    broker = broker_factory()
    topic = _name("txn-restart")
    create_topic(broker.bootstrap, topic, 2)
    tid = _name("tid")
    producer = _txn_producer(broker.bootstrap, tid)
    producer.begin_transaction()
    _produce(producer, topic, [b"one", b"two"], 2)
    producer.commit_transaction(TXN_TIMEOUT_S)
    producer.begin_transaction()
    _produce(producer, topic, [b"open-1", b"open-2"], 2)
    producer.flush(TXN_TIMEOUT_S)
    broker.kill()  # mid-transaction: the open transaction is in the log, not committed
    broker.start()

    # A new producer with the same id aborts the open transaction and carries on.
    successor = _txn_producer(broker.bootstrap, tid)
    successor.begin_transaction()
    _produce(successor, topic, [b"three"], 2)
    successor.commit_transaction(TXN_TIMEOUT_S)
    assert sorted(_values(broker.bootstrap, topic, 2, **COMMITTED)) == [b"one", b"three", b"two"]
    assert sorted(_values(broker.bootstrap, topic, 2, **UNCOMMITTED)) == [
        b"one",
        b"open-1",
        b"open-2",
        b"three",
        b"two",
    ]


@pytest.mark.timeout(120)
def test_kcat_transactional_produce(broker: BrokerProcess) -> None:
    kcat = require_tool("kcat")
    topic = _name("kcat-txn")
    create_topic(broker.bootstrap, topic, 1)
    lines = [f"line-{i}".encode() for i in range(1000)]
    result = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-X", f"transactional.id={_name('k')}"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == lines


@pytest.mark.timeout(120)
def test_kafka_python_transactional_producer(broker: BrokerProcess) -> None:
    from kafka import KafkaProducer

    topic = _name("kp-txn")
    create_topic(broker.bootstrap, topic, 1)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id=_name("kp"), linger_ms=5
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, b"kept", partition=0)
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send(topic, b"dropped", partition=0)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=10)
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == [b"kept"]


@pytest.mark.timeout(120)
def test_aiokafka_transactional_producer(broker: BrokerProcess) -> None:
    from aiokafka import AIOKafkaProducer

    topic = _name("aio-txn")
    create_topic(broker.bootstrap, topic, 1)

    async def main() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, transactional_id=_name("aio")
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"kept", partition=0)
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"dropped", partition=0)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(main())
    assert _values(broker.bootstrap, topic, 1, **COMMITTED) == [b"kept"]
