"""Every answer encodes at every version the broker serves (no null where Kafka has none)."""

from __future__ import annotations

from typing import Any

import pytest

from metamorphostreams.protocol._generated.delete_groups import DeleteGroupsRequest
from metamorphostreams.protocol._generated.describe_groups import DescribeGroupsRequest
from metamorphostreams.protocol._generated.heartbeat import HeartbeatRequest
from metamorphostreams.protocol._generated.join_group import JoinGroupRequest
from metamorphostreams.protocol._generated.leave_group import LeaveGroupRequest
from metamorphostreams.protocol._generated.list_groups import ListGroupsRequest
from metamorphostreams.protocol._generated.offset_commit import OffsetCommitRequest
from metamorphostreams.protocol._generated.offset_delete import OffsetDeleteRequest
from metamorphostreams.protocol._generated.sync_group import SyncGroupRequest
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness, form_group


def round_trip(resp: Any, version: int) -> Any:
    return type(resp).decode(resp.to_bytes(version), version)


@pytest.mark.parametrize("version", range(0, 10))
def test_join_group_answers_encode(version: int) -> None:
    h = Harness()
    g = form_group(h, 2)
    answers = []
    for member_id, instance in [("", None), ("ghost", None), (g.members[0], None), ("x", "i")]:
        req = JoinGroupRequest(
            group_id="g",
            session_timeout_ms=10_000,
            rebalance_timeout_ms=30_000,
            member_id=member_id,
            group_instance_id=instance if version >= 5 else None,
            protocol_type="consumer",
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"m")],
        )
        result = h.call("join_group", req, version)
        h.tick(6_000)
        answer = h.answer(result)
        if answer is not None:
            answers.append(answer)
    assert answers
    for a in answers:
        assert round_trip(a, version).error_code == a.error_code


@pytest.mark.parametrize("version", range(0, 6))
def test_sync_heartbeat_leave_answers_encode(version: int) -> None:
    h = Harness()
    g = form_group(h, 2)
    sync = h.call(
        "sync_group",
        SyncGroupRequest(group_id="g", generation_id=g.generation, member_id=g.members[0]),
        version,
    )
    assert round_trip(h.answer(sync), version).assignment == g.assignments[g.members[0]]
    hb = h.call(
        "heartbeat",
        HeartbeatRequest(group_id="g", generation_id=9, member_id=g.members[0]),
        min(version, 4),
    )
    assert round_trip(hb.response, min(version, 4)).error_code == ErrorCode.ILLEGAL_GENERATION
    leave = LeaveGroupRequest(
        group_id="g",
        member_id="ghost",
        members=[
            LeaveGroupRequest.MemberIdentity(member_id="ghost"),
            LeaveGroupRequest.MemberIdentity(member_id=g.members[1]),
        ],
    )
    resp = round_trip(h.call("leave_group", leave, version).response, version)
    assert resp.error_code == (ErrorCode.UNKNOWN_MEMBER_ID if version < 3 else 0)


@pytest.mark.parametrize("version", range(2, 11))
def test_offset_commit_answers_encode(version: int) -> None:
    h = Harness()
    req = OffsetCommitRequest(
        group_id="s",
        topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(
                name="orders",
                topic_id=h.topics["orders"][0],
                partitions=[
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=p, committed_offset=1
                    )
                    for p in (0, 9)
                ],
            )
        ],
    )
    resp = round_trip(h.call("offset_commit", req, version).response, version)
    assert [p.error_code for p in resp.topics[0].partitions] == [
        0,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ]


def test_admin_answers_encode() -> None:
    h = Harness()
    form_group(h, 1)
    for version in range(0, 7):
        resp = h.call(
            "describe_groups", DescribeGroupsRequest(groups=["g", "nope"]), version
        ).response
        assert [g.group_state for g in round_trip(resp, version).groups] == ["Stable", "Dead"]
    for version in range(0, 6):
        resp = h.call("list_groups", ListGroupsRequest(), version).response
        assert [g.group_id for g in round_trip(resp, version).groups] == ["g"]
    for version in range(0, 3):
        resp = h.call("delete_groups", DeleteGroupsRequest(groups_names=["g"]), version).response
        assert round_trip(resp, version).results[0].error_code == ErrorCode.NON_EMPTY_GROUP
    # A Stable "consumer" group whose subscriptions cannot be read counts as subscribed to all.
    delete = OffsetDeleteRequest(
        group_id="g",
        topics=[
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                name="logs",
                partitions=[OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=0)],
            )
        ],
    )
    resp = round_trip(h.call("offset_delete", delete, 0).response, 0)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
