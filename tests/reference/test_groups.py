"""Consumer groups, raw (classic protocol) and standalone offsets, against Kafka and us.

Member ids are random on both sides; `_masked` replaces each one a scenario learnt with a
stable token ("<member-1>"), so answers compare member for member. Our broker runs with
group.initial.rebalance.delay.ms=0, like the reference Kafka (tools: reference_kafka.py),
so a lone member's JoinGroup completes at once on both.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers.broker_process import BrokerFactory
from helpers.reference_kafka import ReferenceKafka
from kafka.protocol.admin import DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest
from kafka.protocol.consumer import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata import FindCoordinatorRequest

from .batches import batch
from .differential import (
    COORDINATOR_NOT_AVAILABLE,
    NONE,
    READY_LIMIT_S,
    Target,
    Targets,
    create_topic,
    normalise,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(120)

MEMBER_ID_REQUIRED = 79
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
# Different on each broker, or Kafka's own wording; members' ids are masked, not dropped.
GROUP_VOLATILE = frozenset(
    {"throttle_time_ms", "error_message", "host", "port", "client_host", "topic_id"}
)
PROTOCOL = "range"
# ConsumerProtocolSubscription v0: version, topics [string], user data (null).
SUBSCRIPTION_HEAD = b"\x00\x00"


@pytest.fixture
def group_targets(reference_kafka: ReferenceKafka, broker_factory: BrokerFactory) -> Targets:
    ours = broker_factory({"group.initial.rebalance.delay.ms": 0})
    return Targets(
        kafka=Target("kafka", reference_kafka.bootstrap), ours=Target("ours", ours.bootstrap)
    )


def _masked(value: Any, ids: list[str]) -> Any:
    """`value` as plain data, each id of `ids` replaced by a token naming its position."""
    plain = normalise(value, GROUP_VOLATILE)
    tokens = {member: f"<member-{i + 1}>" for i, member in enumerate(ids) if member}

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            return tokens.get(v, v)
        return v

    return walk(plain)


def _subscription(topic: str) -> bytes:
    name = topic.encode()
    return (
        SUBSCRIPTION_HEAD
        + b"\x00\x00\x00\x01"
        + len(name).to_bytes(2, "big")
        + name
        + (b"\xff\xff\xff\xff")
    )


def _assignment(topic: str, partitions: list[int]) -> bytes:
    name = topic.encode()
    body = b"\x00\x00\x00\x00\x00\x01" + len(name).to_bytes(2, "big") + name
    body += len(partitions).to_bytes(4, "big")
    body += b"".join(p.to_bytes(4, "big") for p in partitions)
    return body + b"\xff\xff\xff\xff"  # no user data


def _join(t: Target, group: str, topic: str, member_id: str = "") -> Any:
    return t.request(
        JoinGroupRequest[9](
            group_id=group,
            session_timeout_ms=30_000,
            rebalance_timeout_ms=10_000,
            member_id=member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=[
                JoinGroupRequest.JoinGroupRequestProtocol(
                    name=PROTOCOL, metadata=_subscription(topic)
                )
            ],
            reason=None,
        )
    )


def _commit(
    t: Target, group: str, topic: str, offsets: dict[int, int], generation: int, member: str
) -> Any:
    oct_ = OffsetCommitRequest.OffsetCommitRequestTopic
    return t.request(
        OffsetCommitRequest[8](
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member,
            group_instance_id=None,
            topics=[
                oct_(
                    name=topic,
                    partitions=[
                        oct_.OffsetCommitRequestPartition(
                            partition_index=p,
                            committed_offset=o,
                            committed_leader_epoch=-1,
                            committed_metadata=f"meta-{p}",
                        )
                        for p, o in offsets.items()
                    ],
                )
            ],
        )
    )


def _fetch_offsets(t: Target, group: str, topic: str, partitions: list[int]) -> Any:
    ofg = OffsetFetchRequest.OffsetFetchRequestGroup
    return t.request(
        OffsetFetchRequest[8](
            groups=[
                ofg(
                    group_id=group,
                    topics=[ofg.OffsetFetchRequestTopics(name=topic, partition_indexes=partitions)],
                )
            ],
            require_stable=False,
        )
    )


def _find_coordinator(t: Target, request: Any) -> Any:
    """FindCoordinator, retried while COORDINATOR_NOT_AVAILABLE, as every client does."""
    deadline = time.monotonic() + READY_LIMIT_S
    while True:
        response = t.request(request)
        codes = (
            [response.error_code]
            if request.API_VERSION < 4
            else [c.error_code for c in response.coordinators]
        )
        if COORDINATOR_NOT_AVAILABLE not in codes or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_find_coordinator(group_targets: Targets) -> None:
    one, two, three = unique("g"), unique("g"), unique("g")

    def scenario(t: Target) -> dict[str, Any]:
        v4 = FindCoordinatorRequest[4](key_type=0, coordinator_keys=[two, three])
        return {
            "v3": _find_coordinator(t, FindCoordinatorRequest[3](key=one, key_type=0)),
            "v4, two groups": _find_coordinator(t, v4),
            "v0": _find_coordinator(t, FindCoordinatorRequest[0](key=one)),
        }

    group_targets.compare(scenario, "FindCoordinator", drop=GROUP_VOLATILE)


def test_classic_group_lifecycle(group_targets: Targets) -> None:
    group = unique("classic")
    topic = unique("classic-topic")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        ids: list[str] = []
        out: dict[str, Any] = {}
        first = _join(t, group, topic)
        ids.append(first.member_id)
        out["join without member id"] = _masked(first, ids)
        # Kafka's null here vs our "" is checked by test_member_id_required_answer.
        out["join without member id"].pop("protocol_name")
        joined = _join(t, group, topic, first.member_id)
        member, generation = joined.member_id, joined.generation_id
        out["join"] = _masked(joined, ids)
        sga = SyncGroupRequest.SyncGroupRequestAssignment
        out["sync"] = _masked(
            t.request(
                SyncGroupRequest[5](
                    group_id=group,
                    generation_id=generation,
                    member_id=member,
                    group_instance_id=None,
                    protocol_type="consumer",
                    protocol_name=PROTOCOL,
                    assignments=[sga(member_id=member, assignment=_assignment(topic, [0, 1]))],
                )
            ),
            ids,
        )

        def heartbeat(generation_id: int, member_id: str) -> int:
            return int(
                t.request(
                    HeartbeatRequest[4](
                        group_id=group,
                        generation_id=generation_id,
                        member_id=member_id,
                        group_instance_id=None,
                    )
                ).error_code
            )

        out["heartbeat"] = heartbeat(generation, member)
        out["heartbeat, wrong generation"] = heartbeat(generation + 5, member)
        out["heartbeat, unknown member"] = heartbeat(generation, "nobody")
        out["commit"] = _masked(_commit(t, group, topic, {0: 3, 1: 0}, generation, member), ids)
        out["commit, stale generation"] = _masked(
            _commit(t, group, topic, {0: 4}, generation - 1, member), ids
        )
        out["commit, unknown member"] = _masked(
            _commit(t, group, topic, {0: 4}, generation, "nobody"), ids
        )
        out["fetch offsets"] = _masked(_fetch_offsets(t, group, topic, [0, 1, 2]), ids)
        describe = DescribeGroupsRequest[5](groups=[group], include_authorized_operations=False)
        out["describe stable"] = _masked(t.request(describe), ids)
        listed = t.request(ListGroupsRequest[5](states_filter=[], types_filter=[]))
        out["listed"] = [
            (g.group_id, g.protocol_type, g.group_state, g.group_type)
            for g in listed.groups
            if g.group_id == group
        ]
        mi = LeaveGroupRequest.MemberIdentity
        out["leave"] = _masked(
            t.request(
                LeaveGroupRequest[5](
                    group_id=group,
                    members=[mi(member_id=member, group_instance_id=None, reason="done")],
                )
            ),
            ids,
        )
        out["describe after leave"] = _masked(t.request(describe), ids)
        out["offsets kept"] = _masked(_fetch_offsets(t, group, topic, [0]), ids)
        return out

    answer = group_targets.compare(scenario, "a classic group's life", drop=GROUP_VOLATILE)
    assert answer["join without member id"]["error_code"] == MEMBER_ID_REQUIRED
    assert answer["join"]["error_code"] == NONE
    assert answer["heartbeat, wrong generation"] == ILLEGAL_GENERATION
    assert answer["heartbeat, unknown member"] == UNKNOWN_MEMBER_ID


def test_member_id_required_answer(group_targets: Targets) -> None:
    group, topic = unique("mir"), unique("mir-topic")

    def scenario(t: Target) -> Any:
        create_topic(t, topic, 1)
        first = _join(t, group, topic)
        return _masked(first, [first.member_id])

    answer = group_targets.compare(scenario, "JoinGroup without a member id", drop=GROUP_VOLATILE)
    assert answer["error_code"] == MEMBER_ID_REQUIRED


def test_standalone_offsets_and_group_deletion(group_targets: Targets) -> None:
    group = unique("standalone")
    never = unique("never-used")
    topic = unique("standalone-topic")
    no_topic = unique("no-topic")
    ts = int(time.time() * 1000) - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        produce(t, topic, 0, batch(5, ts))
        return {
            # generation -1 and no member: a consumer committing without a group (assign()).
            "commit": normalise(_commit(t, group, topic, {0: 5, 1: 0}, -1, ""), GROUP_VOLATILE),
            "commit, missing partition": normalise(
                _commit(t, group, topic, {7: 1}, -1, ""), GROUP_VOLATILE
            ),
            "commit, missing topic": normalise(
                _commit(t, group, no_topic, {0: 1}, -1, ""), GROUP_VOLATILE
            ),
            "fetch": normalise(_fetch_offsets(t, group, topic, [0, 1, 5]), GROUP_VOLATILE),
            "fetch, unknown group": normalise(_fetch_offsets(t, never, topic, [0]), GROUP_VOLATILE),
            "fetch v1": normalise(
                t.request(
                    OffsetFetchRequest[1](
                        group_id=group,
                        topics=[
                            OffsetFetchRequest.OffsetFetchRequestTopic(
                                name=topic, partition_indexes=[0]
                            )
                        ],
                    )
                ),
                GROUP_VOLATILE,
            ),
            "describe": normalise(
                t.request(
                    DescribeGroupsRequest[5](groups=[group], include_authorized_operations=False)
                ),
                GROUP_VOLATILE,
            ),
            # Kafka answers in the order of its coordinator shards, not the request's.
            "delete": sorted(
                (r.group_id, r.error_code)
                for r in t.request(DeleteGroupsRequest[2](groups_names=[group, never])).results
            ),
            "fetch after delete": normalise(_fetch_offsets(t, group, topic, [0]), GROUP_VOLATILE),
        }

    group_targets.compare(scenario, "standalone commits and DeleteGroups", drop=GROUP_VOLATILE)


def test_group_ids_are_per_broker_random(group_targets: Targets) -> None:
    """Sanity of the masking: member ids handed out are non-empty and unique."""

    def scenario(t: Target) -> dict[str, Any]:
        group, topic = unique("ids"), unique("ids-topic")
        create_topic(t, topic, 1)
        first = _join(t, group, topic).member_id
        second = _join(t, group, topic).member_id
        return {"non-empty": bool(first and second), "distinct": first != second}

    group_targets.compare(scenario, "member ids")
