"""The same kind of test with aiokafka (asyncio), against the `kafka_bootstrap` fixture."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def round_trip(bootstrap: str) -> list[tuple[bytes | None, bytes | None]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait("events", f"event-{i}".encode(), key=b"k", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition("events", 0)])
        got = []
        while len(got) < 5:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=200), 30)
            for records in batch.values():
                got += [(r.key, r.value) for r in records]
        return got
    finally:
        await consumer.stop()


def test_events_round_trip(kafka_bootstrap: str) -> None:
    got = asyncio.run(round_trip(kafka_bootstrap))
    assert got == [(b"k", f"event-{i}".encode()) for i in range(5)]
