"""KIP-848: ConsumerGroupHeartbeat and ConsumerGroupDescribe, server-side assignment."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from metamorphostreams.coordinator.consumer_group import ConsumerGroupState, MemberState
from metamorphostreams.protocol._generated.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
)
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import LOGS_ID, ORDERS_ID, Harness

TP = ConsumerGroupHeartbeatRequest.TopicPartitions


class Client:
    """A KIP-848 consumer: adopts each assignment, revoking before taking (as Java does)."""

    def __init__(
        self,
        h: Harness,
        member_id: str,
        *,
        group: str = "c",
        topics: list[str] | None = None,
        regex: str | None = None,
        instance: str | None = None,
        assignor: str | None = None,
        rebalance_timeout: int = 30_000,
    ) -> None:
        self.h, self.member_id, self.group = h, member_id, group
        self.topics = ["orders"] if topics is None and regex is None else topics
        self.regex, self.instance, self.assignor = regex, instance, assignor
        self.rebalance_timeout = rebalance_timeout
        self.epoch = 0
        self.owned: dict[uuid.UUID, set[int]] = {}
        self.last: ConsumerGroupHeartbeatResponse | None = None

    def heartbeat(self, *, keep: bool = False) -> ConsumerGroupHeartbeatResponse:
        """One heartbeat; ``keep`` holds on to partitions the coordinator takes away."""
        if self.epoch == 0:
            resp = self.h.cg_heartbeat(
                group_id=self.group,
                member_id=self.member_id,
                member_epoch=0,
                instance_id=self.instance,
                rebalance_timeout_ms=self.rebalance_timeout,
                subscribed_topic_names=self.topics,
                subscribed_topic_regex=self.regex,
                server_assignor=self.assignor,
                topic_partitions=[],
            )
        else:
            resp = self.h.cg_heartbeat(
                group_id=self.group,
                member_id=self.member_id,
                member_epoch=self.epoch,
                instance_id=self.instance,
                topic_partitions=[
                    TP(topic_id=t, partitions=sorted(ps)) for t, ps in self.owned.items()
                ],
            )
        self.last = resp
        if resp.error_code:
            return resp
        self.epoch = resp.member_epoch
        if resp.assignment is not None:
            given = {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions}
            if keep:
                for t, ps in given.items():
                    self.owned.setdefault(t, set()).update(ps)
            else:
                self.owned = {t: ps for t, ps in given.items() if ps}
        return resp

    def leave(self, epoch: int = -1) -> ConsumerGroupHeartbeatResponse:
        resp = self.h.cg_heartbeat(
            group_id=self.group,
            member_id=self.member_id,
            member_epoch=epoch,
            instance_id=self.instance,
        )
        self.owned, self.epoch = {}, 0
        return resp

    def count(self) -> int:
        return sum(len(ps) for ps in self.owned.values())


def assert_no_double_ownership(clients: list[Client]) -> None:
    seen: Counter[tuple[uuid.UUID, int]] = Counter()
    for c in clients:
        seen.update((t, p) for t, ps in c.owned.items() for p in ps)
    assert all(n == 1 for n in seen.values()), seen


def run_until_stable(h: Harness, clients: list[Client], rounds: int = 20) -> None:
    for _ in range(rounds):
        for c in clients:
            resp = c.heartbeat()
            assert resp.error_code == 0, resp
            assert_no_double_ownership(clients)
        h.tick(1_000)
        group = h.consumer()
        if group.state is ConsumerGroupState.STABLE and all(
            c.owned == {t: set(ps) for t, ps in group.members[c.member_id].assigned.items()}
            for c in clients
        ):
            return
    raise AssertionError(f"no convergence: {h.consumer().state}")


def test_first_member_gets_everything() -> None:
    h = Harness()
    c = Client(h, "m1")
    resp = c.heartbeat()
    assert (resp.error_code, resp.member_id, resp.member_epoch, resp.heartbeat_interval_ms) == (
        0,
        "m1",
        2,  # a new group starts at epoch 1 with an empty assignment (KAFKA-20268)
        5_000,
    )
    assert c.owned == {ORDERS_ID: set(range(6))}
    group = h.consumer()
    assert (group.group_epoch, group.assignment_epoch, group.state) == (
        2,
        2,
        ConsumerGroupState.STABLE,
    )


def test_three_members_join_and_leave_without_double_ownership() -> None:
    h = Harness()
    clients = [Client(h, f"m{i}") for i in range(3)]
    for n in range(1, 4):
        run_until_stable(h, clients[:n])
        counts = sorted(c.count() for c in clients[:n])
        assert sum(counts) == 6 and counts[-1] - counts[0] <= 1
    assert sorted(c.count() for c in clients) == [2, 2, 2]
    # One member leaves: its partitions move to the other two.
    assert clients[2].leave().member_epoch == -1
    run_until_stable(h, clients[:2])
    assert sorted(c.count() for c in clients[:2]) == [3, 3]
    # A member is killed: after the session timeout the survivor gets everything.
    for _ in range(10):
        h.tick(5_000)
        clients[0].heartbeat()
    assert clients[1].member_id not in h.consumer().members
    run_until_stable(h, clients[:1])
    assert clients[0].owned == {ORDERS_ID: set(range(6))}
    assert clients[1].heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_revocation_before_reassignment() -> None:
    h = Harness()
    a, b = Client(h, "a"), Client(h, "b")
    a.heartbeat()
    b.heartbeat()  # joins: target gives b half of a's partitions, but a still owns them
    assert b.owned == {} and b.last is not None and b.last.member_epoch == 3
    assert h.consumer().members["b"].state is MemberState.UNRELEASED_PARTITIONS
    a.heartbeat(keep=True)  # a is told to revoke, but keeps reporting the partitions
    assert h.consumer().members["a"].state is MemberState.UNREVOKED_PARTITIONS
    b.heartbeat()
    assert b.owned == {}  # still owned by a: not handed out
    a.heartbeat()  # reporting them still: nothing moves
    assert h.consumer().members["a"].state is MemberState.UNREVOKED_PARTITIONS
    a.owned = {ORDERS_ID: {0, 1, 2}}  # the client's revocation callback completes
    a.heartbeat()
    assert h.consumer().members["a"].member_epoch == 3
    b.heartbeat()
    assert b.count() == 3 and a.count() == 3
    assert_no_double_ownership([a, b])


def test_member_that_does_not_revoke_is_fenced_after_rebalance_timeout() -> None:
    h = Harness()
    a, b = Client(h, "a", rebalance_timeout=10_000), Client(h, "b")
    a.heartbeat()
    b.heartbeat()
    a.heartbeat(keep=True)
    assert h.consumer().members["a"].state is MemberState.UNREVOKED_PARTITIONS
    h.tick(10_000)
    assert "a" not in h.consumer().members
    assert a.heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID
    b.heartbeat()
    b.heartbeat()
    assert b.count() == 6


def test_epoch_fencing() -> None:
    h = Harness()
    a = Client(h, "a")
    a.heartbeat()
    owned = [TP(topic_id=ORDERS_ID, partitions=list(range(6)))]
    ahead = h.cg_heartbeat(group_id="c", member_id="a", member_epoch=5, topic_partitions=owned)
    assert (
        ahead.error_code == ErrorCode.FENCED_MEMBER_EPOCH
        and "greater member epoch" in ahead.error_message
    )
    b = Client(h, "b")
    b.heartbeat()
    a.heartbeat()
    a.heartbeat()
    assert a.epoch == 3
    # The previous epoch is accepted when it owns a subset (the response with the bump got lost).
    lost = h.cg_heartbeat(
        group_id="c",
        member_id="a",
        member_epoch=2,
        topic_partitions=[TP(topic_id=ORDERS_ID, partitions=sorted(a.owned[ORDERS_ID]))],
    )
    assert lost.error_code == 0 and lost.member_epoch == 3
    behind = h.cg_heartbeat(group_id="c", member_id="a", member_epoch=2, topic_partitions=owned)
    assert behind.error_code == ErrorCode.FENCED_MEMBER_EPOCH
    unknown = h.cg_heartbeat(group_id="c", member_id="zz", member_epoch=3, topic_partitions=[])
    assert unknown.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    missing = h.cg_heartbeat(group_id="nope", member_id="zz", member_epoch=3, topic_partitions=[])
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    # Epoch 0 with a known member id: a rejoin, accepted (KAFKA-19233).
    rejoin = h.cg_heartbeat(
        group_id="c",
        member_id="a",
        member_epoch=0,
        rebalance_timeout_ms=1,
        subscribed_topic_names=["orders"],
        topic_partitions=[],
    )
    assert rejoin.error_code == 0 and rejoin.assignment is not None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"member_id": "", "member_epoch": 0}, "MemberId can't be empty."),
        ({"group_id": ""}, "GroupId can't be empty."),
        ({"instance_id": ""}, "InstanceId can't be empty."),
        ({"rack_id": " "}, "RackId can't be empty."),
        ({"rebalance_timeout_ms": -1}, "RebalanceTimeoutMs must be provided in first request."),
        ({"topic_partitions": None}, "TopicPartitions must be empty when (re-)joining."),
        (
            {"subscribed_topic_names": None},
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
            "when (re-)joining.",
        ),
        ({"member_epoch": -3}, "MemberEpoch is invalid."),
        ({"member_epoch": -2}, "InstanceId can't be null."),
    ],
)
def test_invalid_requests(fields: dict[str, Any], message: str) -> None:
    h = Harness()
    base: dict[str, Any] = {
        "group_id": "c",
        "member_id": "m",
        "member_epoch": 0,
        "rebalance_timeout_ms": 1000,
        "subscribed_topic_names": ["orders"],
        "topic_partitions": [],
    }
    resp = h.cg_heartbeat(**{**base, **fields})
    assert (resp.error_code, resp.error_message) == (ErrorCode.INVALID_REQUEST, message)


def test_v0_generates_the_member_id() -> None:
    h = Harness()
    resp = h.cg_heartbeat(
        version=0,
        group_id="c",
        member_id="",
        member_epoch=0,
        rebalance_timeout_ms=1,
        subscribed_topic_names=["orders"],
        topic_partitions=[],
    )
    assert resp.error_code == 0 and len(resp.member_id) == 22  # Kafka's Uuid.toString()


def test_unsupported_assignor_and_range() -> None:
    h = Harness()
    bad = Client(h, "x", assignor="sticky").heartbeat()
    assert bad.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert (
        bad.error_message
        == "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    )
    a, b = Client(h, "a", assignor="range"), Client(h, "b", assignor="range")
    run_until_stable(h, [a, b])
    assert a.owned == {ORDERS_ID: {0, 1, 2}} and b.owned == {ORDERS_ID: {3, 4, 5}}


def test_group_max_size() -> None:
    h = Harness(group_consumer_max_size=1)
    assert Client(h, "a").heartbeat().error_code == 0
    assert Client(h, "b").heartbeat().error_code == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_static_member_leave_and_rejoin_keeps_assignment() -> None:
    h = Harness()
    a, b = Client(h, "a1", instance="ia"), Client(h, "b1", instance="ib")
    run_until_stable(h, [a, b])
    before = dict(a.owned)
    assert a.leave(epoch=-2).member_epoch == -2
    assert h.consumer().members["a1"].member_epoch == -2
    intruder = Client(h, "x", instance="ib").heartbeat()
    assert intruder.error_code == ErrorCode.UNRELEASED_INSTANCE_ID
    restarted = Client(h, "a2", instance="ia")
    resp = restarted.heartbeat()
    assert resp.error_code == 0 and restarted.owned == before
    group = h.consumer()
    assert "a1" not in group.members and group.static_members["ia"] == "a2"
    fenced = h.cg_heartbeat(
        group_id="c", member_id="a1", member_epoch=3, instance_id="ia", topic_partitions=[]
    )
    assert fenced.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert b.heartbeat().error_code == 0 and b.owned


def test_static_member_session_expiry_after_temporary_leave() -> None:
    h = Harness()
    a, b = Client(h, "a1", instance="ia"), Client(h, "b1")
    run_until_stable(h, [a, b])
    a.leave(epoch=-2)
    for _ in range(10):
        h.tick(5_000)
        b.heartbeat()
    assert "a1" not in h.consumer().members
    run_until_stable(h, [b])
    assert b.count() == 6


def test_subscription_change_and_partition_growth() -> None:
    h = Harness()
    c = Client(h, "m")
    c.heartbeat()
    h.topics["orders"] = (ORDERS_ID, 8)
    c.heartbeat()
    assert c.owned == {ORDERS_ID: set(range(8))}
    resp = h.cg_heartbeat(
        group_id="c",
        member_id="m",
        member_epoch=c.epoch,
        subscribed_topic_names=["logs"],
        topic_partitions=[TP(topic_id=ORDERS_ID, partitions=list(range(8)))],
    )
    assert (
        resp.assignment is not None and resp.assignment.topic_partitions == []
    )  # revoke orders first
    c.epoch = resp.member_epoch
    c.owned = {}
    c.heartbeat()
    assert c.owned == {LOGS_ID: {0, 1, 2}}


def test_describe() -> None:
    h = Harness()
    a = Client(h, "a", instance="i")
    a.heartbeat()
    req = ConsumerGroupDescribeRequest(group_ids=["c", "missing", ""])
    resp = h.call("consumer_group_describe", req, 1).response
    c, missing, empty = resp.groups
    assert (c.group_state, c.group_epoch, c.assignment_epoch, c.assignor_name) == (
        "Stable",
        2,
        2,
        "uniform",
    )
    m = c.members[0]
    assert (
        m.member_id,
        m.instance_id,
        m.member_epoch,
        m.client_id,
        m.client_host,
        m.member_type,
    ) == ("a", "i", 2, "cid", "/1.2.3.4", 1)
    assert m.subscribed_topic_names == ["orders"]
    assert [(tp.topic_name, tp.partitions) for tp in m.assignment.topic_partitions] == [
        ("orders", list(range(6)))
    ]
    assert m.target_assignment == m.assignment
    assert (missing.error_code, missing.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group missing not found.",
    )
    assert empty.error_code == ErrorCode.INVALID_GROUP_ID
    h.commit("simple", {("orders", 0): 1})
    req2 = ConsumerGroupDescribeRequest(group_ids=["simple"])
    simple = h.call("consumer_group_describe", req2, 0).response.groups[0]
    assert (simple.error_code, simple.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group simple is not a consumer group.",
    )
    assert type(resp).decode(resp.to_bytes(1), 1) == resp


def test_offset_commit_and_fetch_with_member_epochs() -> None:
    h = Harness()
    a = Client(h, "a")
    a.heartbeat()
    ok = h.commit("c", {("orders", 0): 4}, generation=a.epoch, member_id="a", version=9)
    assert ok == {("orders", 0): 0}
    stale = h.commit("c", {("orders", 0): 5}, generation=a.epoch + 1, member_id="a", version=9)
    assert stale == {("orders", 0): ErrorCode.STALE_MEMBER_EPOCH}
    old = h.commit("c", {("orders", 0): 5}, generation=a.epoch, member_id="a", version=8)
    assert old == {("orders", 0): ErrorCode.UNSUPPORTED_VERSION}
    assert h.commit("c", {("orders", 0): 5}, generation=a.epoch, member_id="zz", version=9) == {
        ("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID
    }
    assert h.commit("c", {("orders", 0): 5}, version=9) == {
        ("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID
    }
    good = h.fetch("c", {"orders": [0]}, version=9, member_id="a", member_epoch=a.epoch).groups[0]
    assert good.topics[0].partitions[0].committed_offset == 4
    assert (
        h.fetch("c", {"orders": [0]}, version=9, member_id="a", member_epoch=9).groups[0].error_code
        == ErrorCode.STALE_MEMBER_EPOCH
    )
    assert (
        h.fetch("c", None, version=9, member_id="q", member_epoch=1).groups[0].error_code
        == ErrorCode.UNKNOWN_MEMBER_ID
    )
    assert (
        h.fetch("c", {"orders": [0]}).groups[0].topics[0].partitions[0].committed_offset == 4
    )  # admin
    a.leave()
    assert h.commit("c", {("orders", 0): 6}, version=9) == {
        ("orders", 0): 0
    }  # empty group: admin commit


def test_group_types_convert_only_when_allowed() -> None:
    h = Harness(group_consumer_migration_policy="disabled")
    a = Client(h, "a")
    a.heartbeat()
    # A classic member may join a consumer group whatever the policy (test_migration.py).
    classic = h.answer(h.join("c", protocol_type="other"))
    assert classic.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    h.join("classic")  # a classic group with a pending member: Empty, so convertible
    assert Client(h, "b", group="classic").heartbeat().error_code == 0
    assert h.consumer("classic").members
    h.answer(h.join("busy", instance="i"))  # not pending: a real member
    h.tick(3_000)
    refused = Client(h, "c", group="busy").heartbeat()
    assert (refused.error_code, refused.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group busy is not a consumer group.",
    )
    # An empty consumer group becomes classic when a classic member joins.
    a.leave()
    assert h.consumer("c").state is ConsumerGroupState.EMPTY
    member_id = h.answer(h.join("c")).member_id
    assert h.answer(h.join("c", member_id)) is None  # parked in a fresh classic group
    assert h.classic("c").members


def test_consumer_protocol_disabled() -> None:
    h = Harness(group_coordinator_rebalance_protocols=("classic",))
    assert Client(h, "a").heartbeat().error_code == ErrorCode.UNSUPPORTED_VERSION
