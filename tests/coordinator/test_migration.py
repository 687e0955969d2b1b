"""KIP-848's online migration (issue 16, item 11): a consumer-protocol member joining a classic
group converts it to a consumer group whose classic members keep using JoinGroup, SyncGroup
and Heartbeat; the group becomes classic again when its last consumer-protocol member leaves.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from metamorphostreams.coordinator.classic_group import ClassicGroupState
from metamorphostreams.coordinator.consumer_group import ConsumerGroupState
from metamorphostreams.coordinator.records import (
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    GROUP_METADATA_KEY,
    ClassicMemberMetadata,
    ConsumerGroupMemberMetadataValue,
    decode_key,
    decode_value,
)
from metamorphostreams.protocol._generated.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import (
    ORDERS_ID,
    Harness,
    assignment,
    decode_assignment,
    durable_state,
    form_group,
    join_response,
    subscription,
    sync_response,
)
from .test_consumer_group import Client


class ClassicClient:
    """A classic consumer of an upgraded group: rejoins when told, owns what SyncGroup gives."""

    def __init__(self, h: Harness, group: str, member_id: str, generation: int) -> None:
        self.h, self.group, self.member_id, self.generation = h, group, member_id, generation
        self.owned: list[int] = []

    def protocols(self) -> list[tuple[str, bytes]]:
        owned: dict[str, list[int]] = {"orders": self.owned} if self.owned else {}
        return [("range", subscription(["orders"], owned))]

    def rejoin(self) -> None:
        joined = join_response(
            self.h, self.h.join(self.group, self.member_id, protocols=self.protocols(), version=9)
        )
        assert joined.error_code == 0, joined
        assert (joined.protocol_type, joined.protocol_name, joined.members) == (
            "consumer",
            "range",
            [],
        )
        self.generation = joined.generation_id
        synced = sync_response(
            self.h,
            self.h.sync(
                self.group,
                self.member_id,
                self.generation,
                protocol_type="consumer",
                protocol_name="range",
            ),
        )
        if synced.error_code == ErrorCode.REBALANCE_IN_PROGRESS:
            return
        assert synced.error_code == 0, synced
        self.owned = decode_assignment(synced.assignment).get("orders", [])

    def heartbeat(self) -> ErrorCode:
        code = ErrorCode(self.h.heartbeat(self.group, self.member_id, self.generation).error_code)
        if code == ErrorCode.REBALANCE_IN_PROGRESS:
            self.rejoin()
        return code


def classic_group(h: Harness, n: int = 2) -> tuple[list[ClassicClient], Any]:
    formed = form_group(h, n, protocols=[("range", subscription(["orders"]))], version=9)
    clients = [ClassicClient(h, "g", m, formed.generation) for m in formed.members]
    for c in clients:
        c.owned = decode_assignment(formed.assignments[c.member_id])["orders"]
    return clients, formed


def owners(consumers: list[Client], classics: list[ClassicClient]) -> Counter[int]:
    seen: Counter[int] = Counter()
    for c in consumers:
        seen.update(c.owned.get(ORDERS_ID, ()))
    for k in classics:
        seen.update(k.owned)
    return seen


def converge(h: Harness, consumers: list[Client], classics: list[ClassicClient]) -> None:
    for _ in range(30):
        for c in consumers:
            assert c.heartbeat().error_code == 0, c.last
            assert all(n == 1 for n in owners(consumers, classics).values())
        for k in classics:
            assert k.heartbeat() in (ErrorCode.NONE, ErrorCode.REBALANCE_IN_PROGRESS)
            assert all(n == 1 for n in owners(consumers, classics).values())
        h.tick(1_000)
        group = h.consumer("g")
        if group.state is ConsumerGroupState.STABLE and sorted(owners(consumers, classics)) == list(
            range(6)
        ):
            return
    raise AssertionError(f"no convergence: {h.consumer('g').state}")


def test_consumer_member_upgrades_a_classic_group_online() -> None:
    h = Harness()
    classics, formed = classic_group(h)
    before = len(h.log)
    joiner = Client(h, "k", group="g")
    resp = joiner.heartbeat()
    assert resp.error_code == 0, resp
    # The classic group is tombstoned, then the consumer group is written in full.
    keys = [decode_key(r.key) for r in h.log[before:]]
    assert keys[0] is not None and keys[0].version == GROUP_METADATA_KEY
    assert h.log[before].value is None
    group = h.consumer("g")
    assert set(group.members) == {*formed.members, "k"}
    for mid in formed.members:
        member = group.members[mid]
        assert member.uses_classic_protocol and member.classic is not None
        assert member.classic.session_timeout_ms == 10_000
    # The group epoch moved past the classic generation: the classic members rejoin.
    assert group.group_epoch == formed.generation + 1
    converge(h, [joiner], classics)
    counts = sorted([joiner.count(), *(len(k.owned) for k in classics)])
    assert counts == [2, 2, 2]
    described = h.call(
        "consumer_group_describe", ConsumerGroupDescribeRequest(group_ids=["g"]), 1
    ).response.groups[0]
    types = sorted(m.member_type for m in described.members)
    assert types == [0, 0, 1]  # two classic members, one consumer-protocol member
    # What the records say is what the coordinator holds.
    assert durable_state(h.restarted()) == durable_state(h.coord)


def test_classic_member_requests_to_a_consumer_group() -> None:
    h = Harness()
    classics, _ = classic_group(h)
    Client(h, "k", group="g").heartbeat()
    k = classics[0]
    assert h.heartbeat("g", "nobody", k.generation).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    wrong = h.heartbeat("g", k.member_id, k.generation + 5).error_code
    assert wrong == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat("g", "k", 2).error_code == ErrorCode.UNKNOWN_MEMBER_ID  # not classic
    # A new classic member: the member id dance, then an answer at once (never parked).
    first = join_response(
        h, h.join("g", protocols=[("range", subscription(["orders"]))], version=9)
    )
    assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    second = join_response(
        h, h.join("g", first.member_id, protocols=[("range", subscription(["orders"]))], version=9)
    )
    assert second.error_code == 0 and second.generation_id == h.consumer("g").group_epoch
    bad = join_response(h, h.join("g", protocols=[("roundrobin", subscription(["orders"]))]))
    assert bad.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # Classic members commit with their generation, which is their member epoch.
    epoch = h.consumer("g").members[first.member_id].member_epoch
    ok = h.commit("g", {("orders", 0): 3}, generation=epoch, member_id=first.member_id)
    assert ok == {("orders", 0): 0}
    stale = h.commit("g", {("orders", 0): 3}, generation=epoch + 9, member_id=first.member_id)
    assert stale == {("orders", 0): ErrorCode.ILLEGAL_GENERATION}
    # LeaveGroup removes classic members only.
    left = h.leave("g", [(first.member_id, None), ("k", None)])
    assert [m.error_code for m in left.members] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
    assert first.member_id not in h.consumer("g").members


def test_missing_the_sync_deadline_fences_a_classic_member() -> None:
    h = Harness()
    classics, _ = classic_group(h)
    Client(h, "k", group="g").heartbeat()
    k = classics[0]
    joined = join_response(h, h.join("g", k.member_id, protocols=k.protocols(), version=9))
    assert joined.error_code == 0
    h.tick(30_000)  # its rebalance timeout, no SyncGroup
    assert k.member_id not in h.consumer("g").members


def test_last_consumer_member_leaving_downgrades_the_group() -> None:
    h = Harness()
    classics, formed = classic_group(h)
    joiner = Client(h, "k", group="g")
    converge(h, [joiner], classics)
    epoch = h.consumer("g").group_epoch
    before = len(h.log)
    assert joiner.leave().error_code == 0
    group = h.classic("g")
    assert group.state is ClassicGroupState.PREPARING_REBALANCE
    assert (group.generation_id, group.protocol_type, group.protocol_name) == (
        epoch,
        "consumer",
        "range",
    )
    assert set(group.members) == set(formed.members)
    # Consumer group tombstones, then the classic group's GroupMetadata record.
    last = h.log[-1]
    key = decode_key(last.key)
    assert key is not None and key.version == GROUP_METADATA_KEY and last.value is not None
    assert all(r.value is None for r in h.log[before:-1])
    value = decode_value(GROUP_METADATA_KEY, last.value)
    assert {m.member_id for m in value.members} == set(formed.members)
    # Each keeps its target assignment; what the leaver had waits for the rebalance.
    stored = {m.member_id: decode_assignment(m.assignment)["orders"] for m in value.members}
    assert stored == {k.member_id: sorted(k.owned) for k in classics}
    # The classic members rejoin the classic rebalance; the leader assigns everything.
    for k in classics:
        assert h.heartbeat("g", k.member_id, k.generation).error_code == (
            ErrorCode.REBALANCE_IN_PROGRESS
        )
    joins = [h.join("g", k.member_id, protocols=k.protocols(), version=9) for k in classics]
    answers = [join_response(h, r) for r in joins]
    assert all(a.error_code == 0 for a in answers)
    leader = answers[0].leader
    generation = answers[0].generation_id
    assert generation == epoch + 1
    plan = {
        k.member_id: assignment({"orders": [0, 1, 2] if i else [3, 4, 5]})
        for i, k in enumerate(classics)
    }
    syncs = [
        h.sync("g", k.member_id, generation, plan if k.member_id == leader else None)
        for k in classics
    ]
    assert [sync_response(h, s).assignment for s in syncs] == [plan[k.member_id] for k in classics]
    assert h.classic("g").state is ClassicGroupState.STABLE
    assert durable_state(h.restarted()) == durable_state(h.coord)


def test_migration_policy() -> None:
    h = Harness(group_consumer_migration_policy="downgrade")
    classic_group(h)
    refused = Client(h, "k", group="g").heartbeat()
    assert (refused.error_code, refused.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group g is not a consumer group.",
    )
    h = Harness(group_consumer_migration_policy="upgrade")
    classics, _ = classic_group(h)
    joiner = Client(h, "k", group="g")
    converge(h, [joiner], classics)
    joiner.leave()
    group = h.consumer("g")  # no downgrade: a consumer group of classic members
    assert all(m.uses_classic_protocol for m in group.members.values())


def test_classic_member_metadata_record_round_trip() -> None:
    value = ConsumerGroupMemberMetadataValue(
        instance_id=None,
        rack_id=None,
        client_id="c",
        client_host="/h",
        subscribed_topic_names=("orders",),
        subscribed_topic_regex=None,
        rebalance_timeout_ms=30_000,
        server_assignor=None,
        classic_member_metadata=ClassicMemberMetadata(10_000, (("range", b"\x00\x01"),)),
    )
    assert ConsumerGroupMemberMetadataValue.decode(value.encode()) == value
    plain = ConsumerGroupMemberMetadataValue(None, None, "c", "/h", (), None, -1, None)
    assert ConsumerGroupMemberMetadataValue.decode(plain.encode()) == plain
    assert decode_key(
        b"\x00\x05" + b"\x00\x01g" + b"\x00\x01m"
    ) == decode_key(  # member key unchanged by the tagged field
        b"\x00\x05\x00\x01g\x00\x01m"
    )
    assert CONSUMER_GROUP_MEMBER_METADATA_KEY == 5
    assert uuid.UUID(int=0) != ORDERS_ID
