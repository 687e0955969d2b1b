"""The KIP-848 consumer protocol (ConsumerGroupHeartbeat, server-side assignment) with
confluent-kafka `group.protocol=consumer`: three members spread six partitions, one leaves
(or is SIGKILLed), its partitions move to the others, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.broker_process import BrokerFactory
from helpers.confluent import create_topic
from helpers.groups import (
    GROUP_BROKER_SETTINGS,
    ConfluentMember,
    GroupLog,
    SubprocessMember,
    duplicates,
    produce_numbered,
    unique,
)

PARTITIONS = 6
BATCH = 300
# Heartbeats every second instead of Kafka's 5 s: members learn of new assignments sooner.
KIP848_BROKER_SETTINGS: dict[str, object] = {
    **GROUP_BROKER_SETTINGS,
    "group.consumer.heartbeat.interval.ms": 1000,
    "group.consumer.min.heartbeat.interval.ms": 1000,
}
MEMBER_CONFIG = {"group.protocol": "consumer"}
# The KIP-848 session timeout is the broker's (default 45 s, minimum 45 s); the kill test
# lowers both to the classic minimum so an expiry takes seconds.
KIP848_SESSION_TIMEOUT_MS = 6000


def _batch(n: int) -> range:
    return range(n * BATCH, (n + 1) * BATCH)


@pytest.mark.timeout(120)
def test_consumer_protocol_three_members_one_leaves(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(KIP848_BROKER_SETTINGS)
    topic, group = unique("kip848-topic"), unique("kip848")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    members = {
        name: ConfluentMember(name, broker.bootstrap, group, topic, log, MEMBER_CONFIG)
        for name in ("a", "b", "c")
    }
    try:
        produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)
        for member in members.values():
            member.start()
        spread = log.wait_for_assignment({"a": 2, "b": 2, "c": 2}, PARTITIONS)
        log.wait_for_processed(_batch(0))
        member_ids = {name: m.member_id for name, m in members.items()}
        assert all(member_ids.values()) and len(set(member_ids.values())) == 3, member_ids

        # b leaves (heartbeat with member epoch -1): a and c get its partitions.
        members["b"].stop()
        after = log.wait_for_assignment({"a": 3, "c": 3}, PARTITIONS)
        assert spread["b"] <= after["a"] | after["c"]
        # Revocation before reassignment: survivors keep what they had, only gain.
        assert spread["a"] <= after["a"] and spread["c"] <= after["c"]
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)
        log.wait_for_processed(_batch(1))
        moved = [p for p in log.processed_so_far() if p.msg_id in _batch(1)]
        assert {p.member for p in moved if p.partition in spread["b"]} <= {"a", "c"}

        for name in ("a", "c"):
            members[name].stop()
    finally:
        for member in members.values():
            member.loop.request_stop()

    assert set(log.processed_ids()) == set(range(2 * BATCH)), "messages lost"
    dup = duplicates(log.processed_so_far())
    assert not dup, f"processed twice: {dict(list(dup.items())[:5])}; {log.summary()}"
    assert not log.failures_so_far(), log.failures_so_far()


@pytest.mark.timeout(120)
def test_consumer_protocol_member_killed_session_expires(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A member SIGKILLed mid-run: the coordinator fences it when its session expires and
    the uniform assignor hands its partitions to the others; nothing is lost."""
    broker = broker_factory(
        {
            **KIP848_BROKER_SETTINGS,
            "group.consumer.session.timeout.ms": KIP848_SESSION_TIMEOUT_MS,
            "group.consumer.min.session.timeout.ms": KIP848_SESSION_TIMEOUT_MS,
        }
    )
    topic, group = unique("kip848-kill-topic"), unique("kip848-kill")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    a = ConfluentMember("a", broker.bootstrap, group, topic, log, MEMBER_CONFIG)
    b = ConfluentMember("b", broker.bootstrap, group, topic, log, MEMBER_CONFIG)
    k = SubprocessMember(
        "k",
        broker.bootstrap,
        group,
        topic,
        log,
        MEMBER_CONFIG,
        stderr_path=tmp_path / "member-k.stderr",
    )
    try:
        produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)
        a.start()
        b.start()
        k.start()
        spread = log.wait_for_assignment({"a": 2, "b": 2, "k": 2}, PARTITIONS)
        log.wait_for_processed(_batch(0))

        k.kill()
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)

        def survivors_own_everything() -> bool:
            owned = log.assignments()
            return (
                len(owned.get("a", ())) == 3
                and len(owned.get("b", ())) == 3
                and owned["a"] | owned["b"] == frozenset(range(PARTITIONS))
            )

        log.wait_for(
            survivors_own_everything,
            "a and b to take over k's partitions after its session expired",
            limit_s=KIP848_SESSION_TIMEOUT_MS / 1000 + 30,
        )
        log.wait_for_processed(_batch(1))
        late = [p for p in log.processed_so_far() if p.msg_id in _batch(1)]
        assert {p.member for p in late if p.partition in spread["k"]} <= {"a", "b"}
        a.stop()
        b.stop()
    finally:
        k.close()
        for member in (a, b):
            member.loop.request_stop()

    assert set(log.processed_ids()) == set(range(2 * BATCH)), "messages lost"
    assert not log.failures_so_far(), log.failures_so_far()
