"""Crash loop: an idempotent ``acks=all`` producer streams numbered messages while the
broker is SIGKILLed at random moments and restarted on the same port and data directory,
again and again; a group consumer reads and commits along the way.

Afterwards every acknowledged message is in the log exactly once, in order, at the offset it
was acknowledged at, with no gap in the offsets; the consumer never skipped an offset; and a
new member of its group resumes from the committed offset and reads the rest, so nothing is
lost between them.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from helpers.broker_process import BrokerFactory
from helpers.confluent import (
    DeliveryLog,
    client_config,
    consume_all,
    crash_tolerant_producer,
    create_topic,
    offset_of,
    produce_with_backpressure,
    value_of,
)

from .conftest import Figures
from .support import broker_pid, peak_rss_mib

KILLS = 6
UP_S = (0.4, 2.0)  # random time the broker runs between kills
DOWN_S = (0.0, 0.5)  # random time it stays dead
CHUNK = 100  # messages per burst; with the pause below, about 10,000 a second
PAUSE_S = 0.01
PADDING = b"-" + b"x" * 120
COMMIT_EVERY = 400  # messages the group consumer reads between synchronous commits


def _id(value: bytes) -> int:
    return int(value[:8])


@dataclass
class GroupReader:
    """A group member on its own thread: consumes, commits synchronously now and then."""

    bootstrap: str
    topic: str
    group: str
    offsets: list[int] = field(default_factory=list)  # every offset it was given, in order
    attempted: list[int] = field(default_factory=list)  # offsets it tried to commit
    committed: list[int] = field(default_factory=list)  # offsets the broker confirmed
    commit_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        consumer = Consumer(
            client_config(
                self.bootstrap,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500,
                    "fetch.wait.max.ms": 100,
                    "reconnect.backoff.ms": 50,
                    "reconnect.backoff.max.ms": 500,
                },
            )
        )
        consumer.subscribe([self.topic])
        since_commit = 0
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is None:
                        self.offsets.append(offset_of(msg))
                        since_commit += 1
                    elif err.code() != KafkaError._PARTITION_EOF:
                        self.errors.append(f"{err.name()}: {err.str()}")
                if since_commit >= COMMIT_EVERY and self.offsets:
                    since_commit = 0
                    self._commit(consumer)
            self._commit(consumer)
        finally:
            consumer.close()

    def _commit(self, consumer: Consumer) -> None:
        if not self.offsets:
            return
        self.attempted.append(self.offsets[-1] + 1)
        try:
            done = consumer.commit(asynchronous=False)
        except KafkaException as e:
            self.commit_errors.append(str(e.args[0]))
            return
        for tp in done or []:
            if tp.topic == self.topic and tp.error is None and tp.offset >= 0:
                self.committed.append(tp.offset)
                self.attempted.append(tp.offset)


@pytest.mark.timeout(240)
def test_kill_9_loop_loses_no_acknowledged_message(
    broker_factory: BrokerFactory, figures: Figures
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = broker_factory({"group.initial.rebalance.delay.ms": 0})
    topic = f"crash-loop-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1, config={"segment.bytes": str(1024 * 1024)})

    producer, fatal = crash_tolerant_producer(broker.bootstrap, linger_ms=5, batch_num_messages=200)
    reader = GroupReader(broker.bootstrap, topic, f"crash-group-{uuid.uuid4().hex[:6]}")
    reader_thread = threading.Thread(target=reader.run, name="group-reader", daemon=True)
    reader_thread.start()

    log = DeliveryLog()
    next_id = 0
    kills = 0
    restart_s: list[float] = []
    acked_at_kill: list[int] = []
    next_kill = time.monotonic() + rng.uniform(*UP_S)
    peak_rss = 0.0

    def produce_chunk(first_id: int) -> int:
        """CHUNK messages numbered from ``first_id``; the next id."""
        for message_id in range(first_id, first_id + CHUNK):
            produce_with_backpressure(
                producer,
                topic=topic,
                partition=0,
                value=b"%08d" % message_id + PADDING,
                on_delivery=log.callback(message_id),
            )
        producer.poll(PAUSE_S)
        return first_id + CHUNK

    while kills < KILLS:
        next_id = produce_chunk(next_id)
        if time.monotonic() >= next_kill:
            peak_rss = max(peak_rss, peak_rss_mib(broker_pid(broker)))
            broker.kill()
            kills += 1
            acked_at_kill.append(len(log.delivered))
            time.sleep(rng.uniform(*DOWN_S))
            began = time.monotonic()
            broker.start()
            restart_s.append(time.monotonic() - began)
            next_kill = time.monotonic() + rng.uniform(*UP_S)
    # The member stops (committing where it is); more arrives that only a new member reads.
    reader.stop.set()
    reader_thread.join(60)
    for _ in range(10):
        next_id = produce_chunk(next_id)
    remaining = producer.flush(120)
    context = f"seed {seed}, kills at {acked_at_kill} acks"
    assert remaining == 0, f"{remaining} messages neither delivered nor failed; {context}"
    assert not fatal, f"the idempotent producer hit fatal errors: {fatal}; {context}"
    assert not reader.errors, f"consumer errors: {reader.errors[:5]}; {context}"

    # The log: every acknowledged message once, in order, where it was acknowledged.
    consumed = consume_all(broker.bootstrap, topic, [0])[0]
    offsets = [offset_of(m) for m in consumed]
    ids = [_id(value_of(m)) for m in consumed]
    assert offsets == list(range(len(offsets))), f"offsets are not contiguous; {context}"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates; {context}"
    assert ids == sorted(ids), f"messages out of order; {context}"
    position = dict(zip(ids, offsets, strict=True))
    lost = sorted(set(log.delivered) - set(ids))
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:10]}; {context}"
    moved = [i for i, (_p, offset) in log.delivered.items() if position[i] != offset]
    assert not moved, f"acknowledged offsets changed, e.g. {moved[:5]}; {context}"

    # The group: the member never skipped an offset (re-reads after a crash are fine) ...
    skips = [(a, b) for a, b in zip(reader.offsets, reader.offsets[1:], strict=False) if b > a + 1]
    assert not skips, f"the group consumer skipped offsets {skips[:5]}; {context}"
    assert reader.offsets and reader.offsets[0] == 0, "the group consumer did not start at 0"
    assert reader.committed, f"no commit succeeded ({reader.commit_errors[:3]}); {context}"
    # ... its last commit survived the crashes, and a new member resumes right there.
    resumed_at, after = _resume(broker.bootstrap, topic, reader.group, len(offsets))
    assert resumed_at >= reader.committed[-1], (
        f"committed offset went back from {reader.committed[-1]} to {resumed_at}; {context}"
    )
    assert resumed_at in reader.attempted, f"resumed at {resumed_at}, never committed; {context}"
    assert after == list(range(resumed_at, len(offsets))), f"the new member lost some; {context}"
    assert len(after) >= 10 * CHUNK, f"the new member read only {len(after)}; {context}"
    seen = set(o for o in reader.offsets if o < resumed_at) | set(after)
    assert seen == set(range(len(offsets))), f"the group missed messages; {context}"

    figures("kills survived", kills)
    figures("restart s (max)", round(max(restart_s), 2))
    figures("messages produced / acked / failed", (next_id, len(log.delivered), len(log.failed)))
    figures("messages checked in the log", len(ids))
    figures(
        "group: read, commits ok / failed",
        (len(reader.offsets), len(reader.committed), len(reader.commit_errors)),
    )
    figures("group: resumed at, read after", (resumed_at, len(after)))
    figures("recoveries logged", broker.stderr_text().count("recovering unflushed segment"))
    figures(
        "peak RSS MiB (any incarnation)", round(max(peak_rss, peak_rss_mib(broker_pid(broker))), 1)
    )
    figures("seed", seed)


def _resume(bootstrap: str, topic: str, group: str, end: int) -> tuple[int, list[int]]:
    """A new member of ``group``: the committed offset it starts from, and every offset it
    reads from there to ``end``."""
    consumer = Consumer(
        client_config(
            bootstrap,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "error",
                "enable.partition.eof": True,
            },
        )
    )
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        consumer.subscribe([topic])
        got: list[int] = []
        deadline = time.monotonic() + 60
        while not got or got[-1] < end - 1:
            assert time.monotonic() < deadline, f"the new member read {len(got)} messages"
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is None:
                    got.append(offset_of(msg))
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"new member: {err.name()}: {err.str()}")
            if tp.offset == end:
                break
        return int(tp.offset), got
    finally:
        consumer.close()
