"""Durability across restarts: clean (SIGTERM/SIGINT) and crash (SIGKILL under an acks=all,
idempotent produce stream)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from helpers import kafka_wire
from helpers.broker_process import BrokerProcess
from helpers.confluent import (
    ADMIN_TIMEOUT_S,
    DeliveryLog,
    admin,
    client_config,
    consume_all,
    crash_tolerant_producer,
    create_topic,
    offset_of,
    produce_with_backpressure,
    value_of,
)

PARTITIONS = 2
PADDING = b"p" * 1000  # 3,000 such messages fill more than one 1 MiB segment per partition
SEGMENT_BYTES = 1024 * 1024  # Kafka 4's minimum segment.bytes


def _produce(bootstrap: str, topic: str, ids: range) -> DeliveryLog:
    producer = Producer(client_config(bootstrap, **{"enable.idempotence": True, "linger.ms": 5}))
    log = DeliveryLog()
    for i in ids:
        produce_with_backpressure(
            producer,
            topic=topic,
            key=b"%d" % i,
            value=b"restart-%06d-" % i + PADDING,
            partition=i % PARTITIONS,
            on_delivery=log.callback(i),
        )
    assert producer.flush(60) == 0
    assert not log.failed, f"failed deliveries: {list(log.failed.items())[:5]}"
    assert sorted(log.delivered) == list(ids)
    return log


def _read_ids(bootstrap: str, topic: str) -> dict[int, list[tuple[int, int]]]:
    """{partition: [(offset, id), ...]} for the whole topic."""
    got = consume_all(bootstrap, topic, range(PARTITIONS))
    return {
        p: [(offset_of(m), int(value_of(m).split(b"-")[1])) for m in messages]
        for p, messages in got.items()
    }


def _expected(ids: range) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {p: [] for p in range(PARTITIONS)}
    for i in ids:
        partition = i % PARTITIONS
        out[partition].append((len(out[partition]), i))
    return out


@pytest.mark.timeout(150)
def test_clean_restart_keeps_everything_and_offsets_continue(broker: BrokerProcess) -> None:
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, PARTITIONS, config={"segment.bytes": str(SEGMENT_BYTES)})

    first = _produce(broker.bootstrap, topic, range(0, 2_000))
    broker.stop()  # SIGTERM; asserts exit code 0
    broker.start()

    assert _read_ids(broker.bootstrap, topic) == _expected(range(0, 2_000))
    metadata = admin(broker.bootstrap).list_topics(topic, timeout=ADMIN_TIMEOUT_S)
    assert len(metadata.topics[topic].partitions) == PARTITIONS

    second = _produce(broker.bootstrap, topic, range(2_000, 3_000))
    for i in range(2_000, 3_000):
        partition = i % PARTITIONS
        assert second.delivered[i] == (partition, i // PARTITIONS), f"message {i} offset"
    assert first.delivered[1_999] == (1, 999)

    broker.interrupt()  # SIGINT (Ctrl-C) is a clean shutdown too
    broker.start()
    assert _read_ids(broker.bootstrap, topic) == _expected(range(0, 3_000))


ACKED_BEFORE_KILL = 3_000  # kill once this many are acknowledged (the stream is still going)
PRODUCED_AFTER_KILL = 2_000  # keep producing into the void while the broker is down
CHUNK = 50  # messages per produce burst, between two polls: keeps requests in flight


@pytest.mark.timeout(180)
def test_kill_9_under_idempotent_acks_all_stream(broker: BrokerProcess) -> None:
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1)

    # Small requests, several in flight: some are appended but not yet acknowledged when
    # the broker dies, and get retried after the restart.
    producer, fatal = crash_tolerant_producer(broker.bootstrap, linger_ms=2, batch_num_messages=100)
    log = DeliveryLog()
    next_id = 0
    acked_at_kill: set[int] | None = None
    on_disk_at_kill: int | None = None
    stop_at: int | None = None
    while stop_at is None or next_id < stop_at:
        for _ in range(CHUNK):
            produce_with_backpressure(
                producer,
                topic=topic,
                partition=0,
                value=b"%08d" % next_id,
                on_delivery=log.callback(next_id),
            )
            next_id += 1
        producer.poll(0.001)
        if acked_at_kill is None and len(log.delivered) >= ACKED_BEFORE_KILL:
            broker.kill()
            acked_at_kill = set(log.delivered)
            on_disk_at_kill = _records_on_disk(broker, topic)
            stop_at = next_id + PRODUCED_AFTER_KILL
    assert acked_at_kill is not None
    in_flight_at_kill = (stop_at or 0) - PRODUCED_AFTER_KILL - len(acked_at_kill)

    broker.start()
    remaining = producer.flush(150)
    assert remaining == 0, f"{remaining} messages neither delivered nor failed after flush(150)"
    assert not fatal, f"idempotent producer hit fatal errors after the restart: {fatal}"

    consumed = consume_all(broker.bootstrap, topic, [0])[0]
    offsets = [offset_of(m) for m in consumed]
    ids = [int(value_of(m)) for m in consumed]
    context = (
        f"{len(acked_at_kill)} acked before kill, ~{in_flight_at_kill} unacked then, "
        f"{on_disk_at_kill} records in the segment files at the kill, "
        f"{len(log.delivered)} acked in total, {len(log.failed)} failed "
        f"(e.g. {_first(log.failed)}), {len(ids)} in the log"
    )

    print(context)  # shown with -s, and with the report when something below fails
    assert offsets == list(range(len(offsets))), f"offsets are not contiguous; {context}"
    duplicates = len(ids) - len(set(ids))
    assert duplicates == 0, f"{duplicates} duplicated messages; {context}"
    assert ids == sorted(ids), f"messages out of order; {context}"
    missing_before = sorted(acked_at_kill - set(ids))
    assert not missing_before, f"acked before the kill but lost: {missing_before[:10]}; {context}"
    missing = sorted(set(log.delivered) - set(ids))
    assert not missing, f"acked but not in the log: {missing[:10]}; {context}"
    position = {i: offset for offset, i in zip(offsets, ids, strict=True)}
    moved = [i for i, (_p, offset) in log.delivered.items() if position[i] != offset]
    assert not moved, f"acked offsets changed after the crash, e.g. {moved[:5]}; {context}"


def _records_on_disk(broker: BrokerProcess, topic: str) -> int | None:
    """Records in the partition's Kafka-format segment files (None if there are none).

    Only for the report: how many records the dead broker had written, acknowledged or not.
    """
    segments = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))
    if not segments:
        return None
    return sum(
        h.record_count for path in segments for h in kafka_wire.batch_headers(path.read_bytes())
    )


def _first(mapping: dict[int, Any]) -> Any:
    return next(iter(mapping.items()), None)


@pytest.mark.timeout(90)
def test_retried_batches_after_a_crash_are_deduplicated(broker: BrokerProcess) -> None:
    """A producer that never saw its acks resends after the broker crashed and came back.

    Kafka rebuilds each producer's last five batches (producer id, epoch, sequences, offsets)
    from the log on recovery; a resent batch among them is answered NONE with the offset it
    got the first time, and is not appended again.
    """
    topic = f"dedupe-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1)
    producer_id, epoch = kafka_wire.init_producer_id(broker.bootstrap)
    base_ts = int(time.time() * 1000) - 60_000

    def batch(sequence: int) -> bytes:
        records = [kafka_wire.Record(None, b"seq-%d" % (sequence + i), (), i) for i in range(3)]
        return kafka_wire.build_record_batch(
            records,
            base_timestamp=base_ts,
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
        )

    for sequence in (0, 3, 6):
        response = kafka_wire.produce(broker.bootstrap, topic, 0, batch(sequence))
        assert (response.error_code, response.base_offset) == (0, sequence), response

    broker.kill()
    broker.start()

    for sequence in (6, 0, 3):
        response = kafka_wire.produce(broker.bootstrap, topic, 0, batch(sequence))
        assert response.error_code == 0, f"resent seq {sequence} after restart: {response}"
        assert response.base_offset == sequence, f"resent seq {sequence} after restart: {response}"
    assert kafka_wire.latest_offset(broker.bootstrap, topic, 0) == 9, "a duplicate was appended"

    # The sequence goes on where it was.
    response = kafka_wire.produce(broker.bootstrap, topic, 0, batch(9))
    assert (response.error_code, response.base_offset) == (0, 9), response
    got = consume_all(broker.bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == [b"seq-%d" % i for i in range(12)]
