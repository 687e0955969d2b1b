"""Our producer and consumer against the broker: batching, acks, idempotence, callbacks,
positions, seeks, pause/resume, offset reset, and the sync facades."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from metamorphostreams.client import (
    Admin,
    AsyncConsumer,
    AsyncProducer,
    Consumer,
    KafkaError,
    MessageSizeTooLargeError,
    NewTopic,
    NoOffsetForPartitionError,
    Producer,
    TopicPartition,
    UnknownTopicOrPartitionError,
)
from metamorphostreams.client.errors import KafkaConnectionError

READ_LIMIT_S = 30.0


def _create(bootstrap: str, topic: str, partitions: int = 3) -> None:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(topic, partitions)])


async def _read(consumer: AsyncConsumer, n: int) -> list:
    got: list = []
    deadline = time.monotonic() + READ_LIMIT_S
    while len(got) < n and time.monotonic() < deadline:
        got += await consumer.poll(200)
    return got


def test_idempotent_producer_orders_each_partition(bootstrap: str) -> None:
    _create(bootstrap, "ordered")

    async def run() -> None:
        async with AsyncProducer(
            {"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.size": 200}
        ) as producer:
            assert producer.idempotent
            futures = [
                await producer.send("ordered", f"{i}".encode(), key=f"k{i % 5}")
                for i in range(2000)
            ]
            await producer.flush()
            results = [f.result() for f in futures]
        async with AsyncConsumer(
            {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}
        ) as consumer:
            consumer.assign([("ordered", p) for p in range(3)])
            got = await _read(consumer, 2000)
        assert len(got) == 2000
        per_key: dict[bytes, list[int]] = {}
        for r in sorted(got, key=lambda r: (r.partition, r.offset)):
            assert r.key is not None and r.value is not None
            per_key.setdefault(r.key, []).append(int(r.value))
        for values in per_key.values():
            assert values == sorted(values)
        offsets = Counter((md.partition, md.offset) for md in results)
        assert max(offsets.values()) == 1

    asyncio.run(run())


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(bootstrap: str, acks: str) -> None:
    topic = f"acks-{acks}"
    _create(bootstrap, topic, 1)
    with Producer({"bootstrap.servers": bootstrap, "acks": acks}) as producer:
        md = producer.send(topic, b"v")
        if acks == "0":
            assert md.offset == -1
        else:
            assert md.offset == 0
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}) as consumer:
        consumer.assign([(topic, 0)])
        got = []
        deadline = time.monotonic() + READ_LIMIT_S
        while not got and time.monotonic() < deadline:
            got = consumer.poll(0.2)
        assert [r.value for r in got] == [b"v"]


def test_null_keys_stick_to_one_partition_per_batch(bootstrap: str) -> None:
    _create(bootstrap, "sticky", 6)

    async def run() -> None:
        async with AsyncProducer({"bootstrap.servers": bootstrap, "linger.ms": 50}) as producer:
            futures = [await producer.send("sticky", b"x" * 10) for _ in range(50)]
            await producer.flush()
            partitions = {f.result().partition for f in futures}
            assert len(partitions) == 1  # 50 small records stay under batch.size
            big = [await producer.send("sticky", b"y" * 1000) for _ in range(200)]
            await producer.flush()
            assert len({f.result().partition for f in big}) > 1  # moved on after batch.size

    asyncio.run(run())


def test_delivery_callbacks_headers_timestamps(bootstrap: str) -> None:
    _create(bootstrap, "cb", 1)
    seen: list = []
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(5):
            producer.produce(
                "cb",
                f"v{i}",
                key="k",
                headers={"trace": f"t{i}", "none": None},
                timestamp=1_600_000_000_000 + i,
                on_delivery=lambda err, md: seen.append((err, md)),
            )
        producer.flush()
    assert [md.offset for err, md in seen] == [0, 1, 2, 3, 4]
    assert all(err is None for err, _ in seen)
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}) as consumer:
        consumer.assign([("cb", 0)])
        got: list = []
        deadline = time.monotonic() + READ_LIMIT_S
        while len(got) < 5 and time.monotonic() < deadline:
            got += consumer.poll(0.2)
    assert [(r.timestamp, r.headers) for r in got] == [
        (1_600_000_000_000 + i, [("trace", f"t{i}".encode()), ("none", None)]) for i in range(5)
    ]


def test_producer_errors(bootstrap: str) -> None:
    _create(bootstrap, "small", 1)

    async def run() -> None:
        async with AsyncProducer(
            {
                "bootstrap.servers": bootstrap,
                "max.block.ms": 300,
                "allow.auto.create.topics": "false",
                "max.request.size": 2000,
            }
        ) as producer:
            with pytest.raises(UnknownTopicOrPartitionError, match="no-such-topic"):
                await producer.send("no-such-topic", b"x")
            with pytest.raises(MessageSizeTooLargeError):
                await producer.send("small", b"x" * 5000)
            with pytest.raises(UnknownTopicOrPartitionError, match="partition 7"):
                await producer.send("small", b"x", partition=7)

    asyncio.run(run())


def test_unreachable_broker() -> None:
    with pytest.raises(KafkaConnectionError, match=r"cannot connect to broker 127\.0\.0\.1:1"):
        Producer({"bootstrap.servers": "127.0.0.1:1"})


def test_consumer_seek_pause_resume_positions(bootstrap: str) -> None:
    _create(bootstrap, "seek", 2)

    async def run() -> None:
        async with AsyncProducer({"bootstrap.servers": bootstrap}) as producer:
            for i in range(100):
                await producer.send("seek", str(i), partition=i % 2, timestamp=1000 + i)
            await producer.flush()
        tp0, tp1 = TopicPartition("seek", 0), TopicPartition("seek", 1)
        async with AsyncConsumer(
            {
                "bootstrap.servers": bootstrap,
                "auto.offset.reset": "earliest",
                "max.poll.records": 10,
            }
        ) as consumer:
            consumer.assign([tp0, tp1])
            batch = await consumer.poll(5000)
            assert 0 < len(batch) <= 10
            consumer.seek(tp0, 40)
            consumer.pause(tp1)
            assert consumer.paused() == {tp1}
            got = await _read(consumer, 10)
            assert all(r.partition == 0 for r in got)
            assert got[0].offset == 40
            assert await consumer.position(tp0) == got[-1].offset + 1
            consumer.resume(tp1)
            consumer.seek_to_end(tp0)
            assert await consumer.position(tp0) == 50
            assert await consumer.end_offsets([tp0]) == {tp0: 50}
            assert await consumer.beginning_offsets([tp1]) == {tp1: 0}
            # Record i has timestamp 1000 + i and went to partition i % 2 at offset i // 2.
            found = await consumer.offsets_for_times({tp1: 1051, tp0: 99999})
            assert found[tp1] == (25, 1051) and found[tp0] is None
            consumer.seek(tp1, 48)
            tail = await _read(consumer, 2)
            assert [r.offset for r in tail if r.partition == 1] == [48, 49]

    asyncio.run(run())


def test_auto_offset_reset(bootstrap: str) -> None:
    _create(bootstrap, "reset", 1)
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(3):
            producer.produce("reset", str(i))
        producer.flush()
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "latest"}) as consumer:
        consumer.assign([("reset", 0)])
        assert consumer.position(("reset", 0)) == 3
        assert consumer.poll(0.2) == []
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "none"}) as consumer:
        consumer.assign([("reset", 0)])
        with pytest.raises(NoOffsetForPartitionError):
            deadline = time.monotonic() + READ_LIMIT_S
            while time.monotonic() < deadline:
                consumer.poll(0.2)
    # An offset past the end resets with the policy.
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}) as consumer:
        consumer.assign([("reset", 0)])
        consumer.seek(("reset", 0), 1000)
        got: list = []
        deadline = time.monotonic() + READ_LIMIT_S
        while len(got) < 3 and time.monotonic() < deadline:
            got += consumer.poll(0.2)
        assert [r.offset for r in got] == [0, 1, 2]


def test_read_committed_without_transactions(bootstrap: str) -> None:
    _create(bootstrap, "rc", 1)
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        producer.send("rc", b"committed")
    with Consumer(
        {
            "bootstrap.servers": bootstrap,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    ) as consumer:
        consumer.assign([("rc", 0)])
        got: list = []
        deadline = time.monotonic() + READ_LIMIT_S
        while not got and time.monotonic() < deadline:
            got = consumer.poll(0.2)
        assert [r.value for r in got] == [b"committed"]


def test_fetch_pipelining_keeps_up(bootstrap: str) -> None:
    """Many partitions, small polls: the fetcher refills buffers while poll() drains."""
    _create(bootstrap, "wide", 12)

    async def run() -> None:
        async with AsyncProducer({"bootstrap.servers": bootstrap, "linger.ms": 20}) as producer:
            for i in range(6000):
                await producer.send("wide", b"%d" % i, partition=i % 12)
            await producer.flush()
        async with AsyncConsumer(
            {
                "bootstrap.servers": bootstrap,
                "auto.offset.reset": "earliest",
                "max.poll.records": 37,
            }
        ) as consumer:
            consumer.assign([("wide", p) for p in range(12)])
            got = await _read(consumer, 6000)
        assert len(got) == 6000
        assert len({(r.partition, r.offset) for r in got}) == 6000

    asyncio.run(run())


def test_commit_needs_group_id(bootstrap: str) -> None:
    async def run() -> None:
        async with AsyncConsumer({"bootstrap.servers": bootstrap}) as consumer:
            with pytest.raises(KafkaError, match=r"group\.id"):
                await consumer.commit({TopicPartition("x", 0): 1})
            with pytest.raises(KafkaError, match=r"group\.id"):
                consumer.subscribe(["x"])

    asyncio.run(run())
