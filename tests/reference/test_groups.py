"""Consumer groups, raw (classic protocol) and standalone offsets, against Kafka and us.

Member ids are random on both sides; `_masked` replaces each one a scenario learnt with a
stable token ("<member-1>"), so answers compare member for member. Our broker runs with
group.initial.rebalance.delay.ms=0, like the reference Kafka (tools: reference_kafka.py),
so a lone member's JoinGroup completes at once on both.
"""

from __future__ import annotations

import time
import uuid
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
    metadata_request,
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


# Kafka's own texts are compared here: v1-3 carry Errors.message() ("NONE" on success),
# v4+ carry "" per key and the text only when the whole request fails.
FIND_COORDINATOR_VOLATILE = GROUP_VOLATILE - {"error_message"}
GROUP, TRANSACTION, SHARE, UNKNOWN_KEY_TYPE = 0, 1, 2, 3
GROUP_ID_NOT_FOUND = 69
INVALID_REQUEST = 42


@pytest.mark.parametrize("version", [1, 3, 4, 5, 6])
def test_find_coordinator_every_key_type(group_targets: Targets, version: int) -> None:
    """Share keys (v6, KIP-932) fail per key, as with share groups off; an unknown key type
    fails the whole request."""
    group = unique("g")
    share_key = f"{group}:{uuid.UUID(int=7)}:0"  # groupId:topicId:partition

    def scenario(t: Target) -> dict[str, Any]:
        out = {}
        for key_type in (GROUP, TRANSACTION, SHARE, UNKNOWN_KEY_TYPE):
            if version >= 4:
                keys = [group, share_key] if key_type == SHARE else [group]
                request = FindCoordinatorRequest[version](key_type=key_type, coordinator_keys=keys)
            else:
                request = FindCoordinatorRequest[version](key=group, key_type=key_type)
            out[f"key type {key_type}"] = _find_coordinator(t, request)
        return out

    answer = group_targets.compare(
        scenario, f"FindCoordinator v{version}", drop=FIND_COORDINATOR_VOLATILE
    )
    unknown = answer[f"key type {UNKNOWN_KEY_TYPE}"]
    codes = (
        [c["error_code"] for c in unknown["coordinators"]]
        if version >= 4
        else [unknown["error_code"]]
    )
    assert codes == [INVALID_REQUEST]


def test_describe_groups_v6_group_not_found(group_targets: Targets) -> None:
    """KIP-1043: v6 answers GROUP_ID_NOT_FOUND for a group that does not exist, without
    authorized operations (Kafka fills those in only for groups described without error)."""
    group, missing, topic = unique("dg"), unique("dg-missing"), unique("dg-topic")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        _commit(t, group, topic, {0: 1}, -1, "")  # a group with offsets only: Empty
        out = {}
        for version in (5, 6):
            for ops in (False, True):
                request = DescribeGroupsRequest[version](
                    groups=[group, missing, ""], include_authorized_operations=ops
                )
                answer = normalise(t.request(request), GROUP_VOLATILE)
                # Kafka answers in the order of its coordinator shards, not the request's.
                answer["groups"].sort(key=lambda g: g["group_id"])
                out[f"v{version}, operations {ops}"] = answer
        return out

    answer = group_targets.compare(scenario, "DescribeGroups v5 and v6", drop=GROUP_VOLATILE)
    described = {g["group_id"]: g for g in answer["v6, operations True"]["groups"]}
    assert described[group]["error_code"] == NONE
    assert described[missing]["error_code"] == GROUP_ID_NOT_FOUND


def _labelled_ids(value: Any, labels: dict[str, str]) -> Any:
    """Topic ids (random per cluster) as the names the scenario gave them."""
    if isinstance(value, dict):
        return {
            k: labels.get(str(v), f"other: {v}") if k == "topic_id" else _labelled_ids(v, labels)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_labelled_ids(v, labels) for v in value]
    return value


def test_offsets_by_topic_id(group_targets: Targets) -> None:
    """OffsetCommit and OffsetFetch v10 (KIP-848) name topics by id. KafkaApis answers
    unknown ids (UNKNOWN_TOPIC_ID) and partitions (UNKNOWN_TOPIC_OR_PARTITION) of a commit
    itself, before the coordinator's answer is merged in; a fetch's unknown ids come after
    the coordinator's topics."""
    group, first, second = unique("byid"), unique("byid-a"), unique("byid-b")
    missing, other_group = unique("byid-missing"), unique("byid-nog")
    unknown = uuid.UUID(int=0x5EED)
    zero = uuid.UUID(int=0)
    oct_ = OffsetCommitRequest.OffsetCommitRequestTopic
    ofg = OffsetFetchRequest.OffsetFetchRequestGroup

    def part(p: int, offset: int) -> Any:
        return oct_.OffsetCommitRequestPartition(
            partition_index=p,
            committed_offset=offset,
            committed_leader_epoch=-1,
            committed_metadata=f"m{p}",
        )

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, first, 2)
        create_topic(t, second, 1)
        ids = {}
        for name in (first, second):
            (described,) = t.request(metadata_request([name])).topics
            ids[name] = uuid.UUID(str(described.topic_id))
        labels = {str(ids[first]): "first", str(ids[second]): "second", str(unknown): "unknown"}
        labels.update({str(zero): "zero", "None": "zero"})

        def commit(topics: list[Any], version: int = 10, generation: int = -1) -> Any:
            request = OffsetCommitRequest[version](
                group_id=group,
                generation_id_or_member_epoch=generation,
                member_id="" if generation < 0 else "nobody",
                group_instance_id=None,
                topics=topics,
            )
            return _labelled_ids(
                normalise(t.request(request), GROUP_VOLATILE - {"topic_id"}), labels
            )

        def fetch(topics: list[Any] | None, group_id: str = group) -> Any:
            request = OffsetFetchRequest[10](
                groups=[ofg(group_id=group_id, member_id=None, member_epoch=-1, topics=topics)],
                require_stable=False,
            )
            answer = normalise(t.request(request), GROUP_VOLATILE - {"topic_id"})
            answer = _labelled_ids(answer, labels)
            if topics is None:  # all topics: Kafka's order is its hash map's
                for g in answer["groups"]:
                    g["topics"].sort(key=lambda x: x["topic_id"])
            return answer

        # The first commit may meet a coordinator that is still loading: retry, as clients do.
        deadline = time.monotonic() + READY_LIMIT_S
        while True:
            settled = commit([oct_(topic_id=ids[first], partitions=[part(0, 1)])])
            code = settled["topics"][0]["partitions"][0]["error_code"]
            if code not in (14, 15, 16) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        fot = ofg.OffsetFetchRequestTopics
        return {
            "commit": settled,
            "commit, mixed": commit(
                [
                    oct_(topic_id=ids[second], partitions=[part(0, 3)]),
                    oct_(topic_id=unknown, partitions=[part(0, 1), part(1, 1)]),
                    oct_(topic_id=ids[first], partitions=[part(1, 5), part(9, 1), part(0, 2)]),
                    oct_(topic_id=zero, partitions=[part(0, 1)]),
                ]
            ),
            "commit, only unknown": commit([oct_(topic_id=unknown, partitions=[part(0, 1)])]),
            "commit, unknown member": commit(
                [
                    oct_(topic_id=unknown, partitions=[part(0, 1)]),
                    oct_(topic_id=ids[first], partitions=[part(0, 7), part(4, 1)]),
                ],
                generation=3,
            ),
            "commit v9 by name": commit(
                [
                    oct_(name=second, partitions=[part(0, 4)]),
                    oct_(name=missing, partitions=[part(0, 1)]),
                ],
                version=9,
            ),
            "fetch": fetch(
                [
                    fot(topic_id=unknown, partition_indexes=[0]),
                    fot(topic_id=ids[first], partition_indexes=[0, 1, 7]),
                    fot(topic_id=zero, partition_indexes=[0]),
                    fot(topic_id=ids[second], partition_indexes=[0]),
                ]
            ),
            "fetch all": fetch(None),
            "fetch, unknown group": fetch(
                [
                    fot(topic_id=ids[first], partition_indexes=[0]),
                    fot(topic_id=unknown, partition_indexes=[2]),
                ],
                group_id=other_group,
            ),
        }

    answer = group_targets.compare(
        scenario, "OffsetCommit and OffsetFetch v10", drop=GROUP_VOLATILE - {"topic_id"}
    )
    mixed = answer["commit, mixed"]["topics"]
    assert [t["topic_id"] for t in mixed] == ["unknown", "first", "zero", "second"]
