"""``__consumer_offsets`` stays bounded: a few groups commit about 1,000 offsets a second
(each with 1 KB of metadata, so ~1 MB/s reaches the log) for ``DURATION_S``; with 1 MiB
segments and a 100 ms cleaner backoff the partition stays at a few segments instead of
growing with the commits, and after a SIGKILL and a restart every group's last committed
offsets (and their metadata) are there.

The issue's run is 5 minutes at 1,000 commits/s with 100 MiB segments; this one scales the
segment down instead of the time, with Kafka's ``offsets.topic.segment.bytes``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType
from helpers.broker_process import BrokerFactory
from helpers.confluent import ADMIN_TIMEOUT_S, admin, client_config, create_topic, wait_until

from .conftest import Figures

OFFSETS_TOPIC = "__consumer_offsets"
SEGMENT_BYTES = 1024 * 1024
DURATION_S = 30.0
GROUPS = 3
PARTITIONS = 10  # offsets per commit call
CALLS_PER_S = 100  # x PARTITIONS = 1,000 commits a second, shared by the groups
METADATA = "m" * 1000
MAX_SEGMENTS = 5  # "a few": the active one, the cleaned one, one or two being cleaned
SETTINGS = {
    "offsets.topic.num.partitions": 1,  # every group in __consumer_offsets-0
    "offsets.topic.segment.bytes": SEGMENT_BYTES,
    "log.cleaner.backoff.ms": 100,
    "group.initial.rebalance.delay.ms": 0,
}


def _segments(partition_dir: Path) -> tuple[int, int]:
    """(live .log files, their bytes)."""
    count = size = 0
    for p in partition_dir.iterdir():
        if p.name.endswith(".log"):
            try:
                size += p.stat().st_size
            except FileNotFoundError:
                continue
            count += 1
    return count, size


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(client_config(bootstrap, **{"group.id": group, "enable.auto.commit": False}))


@pytest.mark.timeout(150)
def test_offsets_topic_stays_bounded_and_commits_survive(
    broker_factory: BrokerFactory, figures: Figures
) -> None:
    broker = broker_factory(SETTINGS)
    topic = f"committed-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    groups = [f"bounded-{i}-{uuid.uuid4().hex[:6]}" for i in range(GROUPS)]
    consumers = [_consumer(broker.bootstrap, g) for g in groups]
    try:
        for c in consumers:  # the first commit creates __consumer_offsets
            c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        partition_dir = broker.data_dir / f"{OFFSETS_TOPIC}-0"

        commits = 0
        last: dict[str, list[TopicPartition]] = {}
        samples: list[tuple[int, int]] = []
        began = time.monotonic()
        next_sample = began
        call = 0
        while (now := time.monotonic()) - began < DURATION_S:
            i = call % GROUPS
            offsets = [
                TopicPartition(topic, p, call * 10 + p, f"{METADATA}-{call}")
                for p in range(PARTITIONS)
            ]
            try:
                consumers[i].commit(offsets=offsets, asynchronous=True)
            except KafkaException as e:  # a full local queue: let it drain
                consumers[i].poll(0.05)
                raise AssertionError(f"commit refused: {e}") from None
            last[groups[i]] = offsets
            commits += PARTITIONS
            call += 1
            consumers[i].poll(0)
            if now >= next_sample:
                samples.append(_segments(partition_dir))
                next_sample = now + 0.5
            pause = began + call / CALLS_PER_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.monotonic() - began
        # The last commit of each group, synchronously: what must survive.
        for c, g in zip(consumers, groups, strict=True):
            c.commit(offsets=last[g], asynchronous=False)
        samples.append(_segments(partition_dir))
    finally:
        for c in consumers:
            c.close()

    appended = commits * (len(METADATA) + 60)
    max_segments = max(n for n, _ in samples)
    max_bytes = max(b for _, b in samples)
    figures("commits, per s", (commits, round(commits / elapsed)))
    figures("commit bytes appended (approx MB)", round(appended / 1e6, 1))
    figures("__consumer_offsets-0 max segments / max MB", (max_segments, round(max_bytes / 1e6, 2)))
    figures("__consumer_offsets-0 at the end: segments, bytes", samples[-1])
    assert appended > 10 * SEGMENT_BYTES, f"only {appended} bytes of commits: no test"
    assert max_segments <= MAX_SEGMENTS, (
        f"__consumer_offsets-0 grew to {max_segments} segments ({max_bytes} bytes) "
        f"with {appended} bytes of commits; samples {samples}"
    )

    broker.kill()
    broker.start()
    for g in groups:
        wanted = {(tp.partition, tp.offset, tp.metadata) for tp in last[g]}
        consumer = _consumer(broker.bootstrap, g)
        try:
            got: set[tuple[int, int, str | None]] = set()

            def fetched(c: Consumer = consumer, g: str = g) -> bool:
                nonlocal got
                try:
                    tps = c.committed(
                        [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5
                    )
                except KafkaException:
                    return False  # the coordinator is still loading
                got = {(tp.partition, tp.offset, tp.metadata) for tp in tps}
                return True

            wait_until(fetched, f"committed offsets of {g} after the restart")
            assert got == wanted, f"{g}: committed offsets after the restart {sorted(got)[:3]}"
        finally:
            consumer.close()


@pytest.mark.timeout(60)
def test_offsets_topic_segment_bytes_is_honoured(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(SETTINGS)
    consumer = _consumer(broker.bootstrap, f"seg-{uuid.uuid4().hex[:6]}")
    topic = f"committed-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1)
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    resource = ConfigResource(ResourceType.TOPIC, OFFSETS_TOPIC)
    client = admin(broker.bootstrap)
    (future,) = client.describe_configs([resource]).values()
    entries = future.result(timeout=ADMIN_TIMEOUT_S)
    assert entries["segment.bytes"].value == str(SEGMENT_BYTES)
