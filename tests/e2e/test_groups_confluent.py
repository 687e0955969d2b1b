"""Classic consumer groups with confluent-kafka (librdkafka): a 3-member group through a clean
leave and a SIGKILLed member, cooperative-sticky through several rebalances, and a static
member that restarts within its session timeout."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers.broker_process import BrokerFactory
from helpers.confluent import create_topic
from helpers.groups import (
    GROUP_BROKER_SETTINGS,
    SESSION_TIMEOUT_MS,
    Callback,
    ConfluentMember,
    GroupLog,
    SubprocessMember,
    classic_config,
    duplicates,
    probe_generation,
    produce_numbered,
    unique,
)

PARTITIONS = 6
BATCH = 300  # messages per phase: 50 per partition


def _batch(n: int) -> range:
    return range(n * BATCH, (n + 1) * BATCH)


@pytest.mark.timeout(120)
def test_three_members_clean_leave_then_kill(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("cg-topic"), unique("cg")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)

    a = ConfluentMember("a", broker.bootstrap, group, topic, log, classic_config())
    b = ConfluentMember("b", broker.bootstrap, group, topic, log, classic_config())
    k = SubprocessMember(
        "k",
        broker.bootstrap,
        group,
        topic,
        log,
        classic_config(),
        stderr_path=tmp_path / "member-k.stderr",
    )
    try:
        a.start()
        b.start()
        k.start()
        # Phase 1: three members, two partitions each.
        owned = log.wait_for_assignment({"a": 2, "b": 2, "k": 2}, PARTITIONS)
        log.wait_for_processed(_batch(0))
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)
        log.wait_for_processed(_batch(1))

        # Phase 2: b leaves cleanly (close() sends LeaveGroup); a and k take its partitions.
        b.stop()
        after_leave = log.wait_for_assignment({"a": 3, "k": 3}, PARTITIONS)
        assert owned["b"] <= after_leave["a"] | after_leave["k"]
        produce_numbered(broker.bootstrap, topic, _batch(2), PARTITIONS)
        log.wait_for_processed(_batch(2))
        clean = log.processed_so_far()
        assert not duplicates(clean), (
            f"messages processed twice although every member committed after processing "
            f"and left cleanly: {dict(list(duplicates(clean).items())[:5])}; {log.summary()}"
        )
        assert {p.member for p in clean} == {"a", "b", "k"}
        k_partitions = after_leave["k"]

        # Phase 3: k is SIGKILLed (no LeaveGroup); once its session expires, a owns everything.
        k.kill()
        produce_numbered(broker.bootstrap, topic, _batch(3), PARTITIONS)
        log.wait_for(
            lambda: log.assignments().get("a") == frozenset(range(PARTITIONS)),
            "a to own all partitions after k's session expired",
            limit_s=SESSION_TIMEOUT_MS / 1000 + 30,
        )
        log.wait_for_processed(_batch(3))
        late = [p for p in log.processed_so_far()[len(clean) :] if p.partition in k_partitions]
        assert late and {p.member for p in late} == {"a"}, log.summary()

        a.stop()
    finally:
        k.close()
        for member in (a, b):
            member.loop.request_stop()

    seen = log.processed_ids()
    everything = range(4 * BATCH)
    assert not [i for i in everything if seen[i] == 0], "messages never processed"
    assert set(seen) == set(everything)
    # Every commit was accepted, even those a made while the group rebalanced around it.
    assert not log.failures_so_far(), log.failures_so_far()


# --------------------------------------------------------------------------- cooperative-sticky


def _since(log: GroupLog, mark: int) -> list[Callback]:
    return log.callbacks_so_far()[mark:]


def _check_incremental(log: GroupLog, members: list[str]) -> None:
    """Replay each member's callbacks: assign only adds unowned partitions, revoke only
    removes owned ones (an eager member would revoke everything it owns)."""
    for member in members:
        owned: set[int] = set()
        for cb in (c for c in log.callbacks_so_far() if c.member == member):
            if cb.kind == "assign":
                assert not owned & cb.partitions, f"assign of already-owned partitions: {cb}"
                owned |= cb.partitions
            elif cb.kind == "revoke":
                assert cb.partitions <= owned, f"revoke of partitions not owned: {cb}"
                owned -= cb.partitions
            else:
                raise AssertionError(f"unexpected callback {cb}")


def _revoked(callbacks: list[Callback], member: str) -> set[int]:
    return {p for c in callbacks if c.member == member and c.kind == "revoke" for p in c.partitions}


@pytest.mark.timeout(150)
def test_cooperative_sticky_through_joins_and_leaves(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("coop-topic"), unique("coop")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    config = classic_config(**{"partition.assignment.strategy": "cooperative-sticky"})
    members = {
        name: ConfluentMember(name, broker.bootstrap, group, topic, log, config)
        for name in ("m1", "m2", "m3")
    }
    phase = 0

    def produce_and_drain() -> None:
        nonlocal phase
        produce_numbered(broker.bootstrap, topic, _batch(phase), PARTITIONS)
        log.wait_for_processed(_batch(phase))
        phase += 1

    try:
        members["m1"].start()
        first = log.wait_for_assignment({"m1": 6}, PARTITIONS)
        produce_and_drain()

        # m2 joins: m1 gives up exactly the 3 partitions that move, and keeps the rest.
        mark = len(log.callbacks_so_far())
        members["m2"].start()
        second = log.wait_for_assignment({"m1": 3, "m2": 3}, PARTITIONS)
        moved = _since(log, mark)
        assert _revoked(moved, "m1") == set(second["m2"]), moved
        assert second["m1"] <= first["m1"]
        produce_and_drain()

        # m3 joins: each of m1, m2 gives up one partition, no more.
        mark = len(log.callbacks_so_far())
        members["m3"].start()
        third = log.wait_for_assignment({"m1": 2, "m2": 2, "m3": 2}, PARTITIONS)
        moved = _since(log, mark)
        assert third["m1"] <= second["m1"] and third["m2"] <= second["m2"], moved
        assert _revoked(moved, "m1") | _revoked(moved, "m2") == set(third["m3"]), moved
        produce_and_drain()

        # m3 leaves: its partitions are added to m1 and m2, who revoke nothing.
        mark = len(log.callbacks_so_far())
        members["m3"].stop()
        fourth = log.wait_for_assignment({"m1": 3, "m2": 3}, PARTITIONS)
        moved = _since(log, mark)
        assert not _revoked(moved, "m1") and not _revoked(moved, "m2"), moved
        assert third["m1"] <= fourth["m1"] and third["m2"] <= fourth["m2"]
        produce_and_drain()

        # m2 leaves: m1 ends with everything, again without revoking.
        mark = len(log.callbacks_so_far())
        members["m2"].stop()
        log.wait_for_assignment({"m1": 6}, PARTITIONS)
        assert not _revoked(_since(log, mark), "m1")
        produce_and_drain()

        members["m1"].stop()
    finally:
        for member in members.values():
            member.loop.request_stop()

    _check_incremental(log, list(members))
    seen = log.processed_ids()
    assert set(seen) == set(range(phase * BATCH)), "messages lost"
    dup = duplicates(log.processed_so_far())
    assert not dup, f"processed twice: {dict(list(dup.items())[:5])}"
    assert not log.failures_so_far(), log.failures_so_far()


# --------------------------------------------------------------------------- static membership


class _Stats:
    """librdkafka statistics per member: the consumer group's rebalance count."""

    def __init__(self) -> None:
        self.rebalances: dict[str, int] = {}

    def callback(self, member: str) -> Any:
        def on_stats(raw: str) -> None:
            cgrp = json.loads(raw).get("cgrp") or {}
            if "rebalance_cnt" in cgrp:
                self.rebalances[member] = int(cgrp["rebalance_cnt"])

        return on_stats


@pytest.mark.timeout(120)
@pytest.mark.parametrize("restarting", ["first", "second"])
def test_static_member_restart_keeps_partitions(
    broker_factory: BrokerFactory, restarting: str
) -> None:
    """Both members are static; the one that restarts does so well within its session timeout.

    "first" joined first and so is the group leader; "second" is a follower.
    """
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("static-topic"), unique("static")
    probe_topic = unique("static-probe")  # the group commits there only to learn its generation
    create_topic(broker.bootstrap, topic, PARTITIONS)
    create_topic(broker.bootstrap, probe_topic, 1)
    log = GroupLog()
    stats = _Stats()

    def member(name: str, instance: str) -> ConfluentMember:
        config = classic_config(
            **{
                "group.instance.id": instance,
                "statistics.interval.ms": 200,
                "stats_cb": stats.callback(name),
            }
        )
        return ConfluentMember(name, broker.bootstrap, group, topic, log, config)

    first, second = member("first", "instance-1"), member("second", "instance-2")
    restarted = member("restarted", "instance-1" if restarting == "first" else "instance-2")
    stays = second if restarting == "first" else first
    leaves = first if restarting == "first" else second
    try:
        first.start()
        log.wait_for_assignment({"first": 6}, PARTITIONS)
        second.start()
        before = log.wait_for_assignment({"first": 3, "second": 3}, PARTITIONS)
        produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)
        log.wait_for_processed(_batch(0))
        log.wait_for(lambda: stays.name in stats.rebalances, "statistics of the staying member")
        mark = len(log.callbacks_so_far())
        stays_rebalances = stats.rebalances[stays.name]
        assert stays.member_id is not None
        generation = probe_generation(broker.bootstrap, group, stays.member_id, probe_topic)

        # A static member's close() sends no LeaveGroup; its replacement joins with the same
        # group.instance.id before the session expires and takes over its assignment.
        leaves.stop()
        restarted.start()
        log.wait_for(
            lambda: log.assignments().get("restarted") == before[leaves.name],
            f"the restarted member to get {sorted(before[leaves.name])} back",
            limit_s=SESSION_TIMEOUT_MS / 1000 - 1,
        )
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)
        log.wait_for_processed(_batch(1))
        # Still no change for the member that stayed once the old session would have expired.
        time.sleep(SESSION_TIMEOUT_MS / 1000 + 1)
        produce_numbered(broker.bootstrap, topic, _batch(2), PARTITIONS)
        log.wait_for_processed(_batch(2))

        after = _since(log, mark)
        stays_callbacks = [c for c in after if c.member == stays.name]
        assert not stays_callbacks, f"the staying member was rebalanced: {stays_callbacks}"
        assert log.assignments()[stays.name] == before[stays.name]
        assert stats.rebalances[stays.name] == stays_rebalances, (
            f"librdkafka counted {stats.rebalances[stays.name] - stays_rebalances} "
            f"rebalance(s) on the staying member"
        )
        restarted_callbacks = [c for c in after if c.member == "restarted"]
        assert [c.kind for c in restarted_callbacks] == ["assign"], restarted_callbacks
        # Same generation for both: the replacement joined without a rebalance.
        assert restarted.member_id is not None and restarted.member_id != leaves.member_id
        for m in (stays, restarted):
            assert m.member_id is not None
            assert probe_generation(broker.bootstrap, group, m.member_id, probe_topic) == (
                generation
            ), m.name
        stays.stop()
        restarted.stop()
    finally:
        for m in (first, second, restarted):
            m.loop.request_stop()

    counts = Counter(p.member for p in log.processed_so_far())
    assert set(log.processed_ids()) == set(range(3 * BATCH))
    assert counts["restarted"] > 0
    dup = duplicates(log.processed_so_far())
    assert not dup, f"processed twice: {dict(list(dup.items())[:5])}"
    assert not log.failures_so_far(), log.failures_so_far()
