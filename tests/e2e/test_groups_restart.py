"""A consumer group across a broker restart: committed offsets live in __consumer_offsets
and are found again, so the second run neither reprocesses nor skips anything."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import ADMIN_TIMEOUT_S, admin, create_topic
from helpers.groups import (
    GROUP_BROKER_SETTINGS,
    ConfluentMember,
    GroupLog,
    classic_config,
    duplicates,
    produce_numbered,
    unique,
)

PARTITIONS = 6
FIRST = range(0, 600)
SECOND = range(600, 900)
LIMIT = 150  # messages each first-run member processes before it closes: 300 of 600


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets; retries while the coordinator is still loading
    (Kafka answers COORDINATOR_LOAD_IN_PROGRESS right after a restart)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(PARTITIONS)]
    )
    client = admin(bootstrap)  # must outlive its futures
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        futures = client.list_consumer_group_offsets([request])
        try:
            result = futures[group].result(timeout=ADMIN_TIMEOUT_S)
            break
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    out: dict[int, int] = {}
    for tp in result.topic_partitions:
        assert tp.error is None, tp
        out[tp.partition] = tp.offset
    return out


def _run(
    broker: BrokerProcess,
    group: str,
    topic: str,
    log: GroupLog,
    limit: int | None = None,
    expect: set[int] | None = None,
) -> None:
    """Two members process until each reached `limit`, or until `expect` is processed."""
    members = [
        ConfluentMember(name, broker.bootstrap, group, topic, log, classic_config(), limit=limit)
        for name in ("x", "y")
    ]
    for member in members:
        member.start()
    try:
        if limit is not None:
            # Each member stops (close(): commit done, LeaveGroup) after `limit` messages.
            for member in members:
                member.join()
        else:
            wanted = expect or set()
            log.wait_for(lambda: wanted <= set(log.processed_ids()), "the rest to be processed")
    finally:
        for member in members:
            member.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_group_resumes_from_committed_offsets_after_restart(
    broker_factory: BrokerFactory, how: str
) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("restart-topic"), unique("restart-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_numbered(broker.bootstrap, topic, FIRST, PARTITIONS)

    first = GroupLog()
    _run(broker, group, topic, first, limit=LIMIT)
    assert not first.failures_so_far(), first.failures_so_far()
    first_ids = set(first.processed_ids())
    assert len(first_ids) == 2 * LIMIT and not duplicates(first.processed_so_far())
    before = _committed(broker.bootstrap, group, topic)
    # What was committed is exactly what was processed: the offset after the last message
    # processed per partition (or nothing for a partition nobody reached).
    processed_next: dict[int, int] = {}
    for p in first.processed_so_far():
        processed_next[p.partition] = max(processed_next.get(p.partition, 0), p.offset + 1)
    assert before == {p: processed_next.get(p, -1001) for p in range(PARTITIONS)}

    if how == "sigterm":
        broker.stop()
    else:
        broker.kill()
    broker.start()
    assert _committed(broker.bootstrap, group, topic) == before

    produce_numbered(broker.bootstrap, topic, SECOND, PARTITIONS)
    second = GroupLog()
    _run(broker, group, topic, second, expect=set(FIRST) - first_ids | set(SECOND))
    assert not second.failures_so_far(), second.failures_so_far()
    second_ids = second.processed_ids()
    again = sorted(first_ids & set(second_ids))
    assert not again, f"{len(again)} committed messages processed again, e.g. {again[:10]}"
    assert first_ids | set(second_ids) == set(FIRST) | set(SECOND)
    assert not duplicates(second.processed_so_far())
