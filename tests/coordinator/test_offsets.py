"""OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups and offset retention."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from metamorphostreams.coordinator.classic_group import ClassicGroupState
from metamorphostreams.protocol._generated.delete_groups import DeleteGroupsRequest
from metamorphostreams.protocol._generated.offset_commit import OffsetCommitRequest
from metamorphostreams.protocol._generated.offset_delete import OffsetDeleteRequest
from metamorphostreams.protocol._generated.offset_fetch import OffsetFetchRequest
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import ORDERS_ID, Harness, form_group, subscription

S = ClassicGroupState
MINUTE = 60_000


def delete_offsets(h: Harness, group: str, topic: str, partitions: list[int]) -> Any:
    req = OffsetDeleteRequest(
        group_id=group,
        topics=[
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                name=topic,
                partitions=[
                    OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=p)
                    for p in partitions
                ],
            )
        ],
    )
    return h.call("offset_delete", req, 0).response


def delete_groups(h: Harness, *groups: str) -> dict[str, int]:
    resp = h.call("delete_groups", DeleteGroupsRequest(groups_names=list(groups)), 2).response
    return {r.group_id: r.error_code for r in resp.results}


def test_simple_commit_creates_simple_group_and_is_fetched_with_metadata() -> None:
    h = Harness()
    assert h.commit("s", {("orders", 0): 42, ("orders", 5): 7}, metadata="hello") == {
        ("orders", 0): 0,
        ("orders", 5): 0,
    }
    group = h.classic("s")
    assert group.state is S.EMPTY and group.protocol_type is None
    resp = h.fetch("s", {"orders": [0, 5, 3]})
    parts = {p.partition_index: p for p in resp.groups[0].topics[0].partitions}
    assert (parts[0].committed_offset, parts[0].metadata, parts[0].committed_leader_epoch) == (
        42,
        "hello",
        3,
    )
    assert parts[5].committed_offset == 7
    assert (parts[3].committed_offset, parts[3].metadata, parts[3].error_code) == (-1, "", 0)


def test_commit_null_metadata_is_stored_empty() -> None:
    h = Harness()
    h.commit("s", {("orders", 1): 1}, metadata=None)
    assert h.fetch("s", {"orders": [1]}).groups[0].topics[0].partitions[0].metadata == ""


def test_offset_metadata_too_large_per_partition() -> None:
    h = Harness(offset_metadata_max_bytes=10)
    h.commit("s", {("orders", 0): 1})
    errors = h.commit("s", {("orders", 0): 9, ("orders", 1): 2}, metadata="x" * 11)
    assert errors == {
        ("orders", 0): ErrorCode.OFFSET_METADATA_TOO_LARGE,
        ("orders", 1): ErrorCode.OFFSET_METADATA_TOO_LARGE,
    }
    assert h.committed("s", "orders", 0) == 1
    assert h.commit("s", {("orders", 0): 9}, metadata="x" * 10) == {("orders", 0): 0}


def test_commit_to_unknown_topics_and_partitions() -> None:
    h = Harness()
    errors = h.commit("s", {("orders", 0): 1, ("orders", 6): 1, ("nope", 0): 1})
    assert errors == {
        ("orders", 0): 0,
        ("orders", 6): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    # Nothing valid at all: the group is not even looked at (no simple group made).
    assert h.commit("t", {("nope", 0): 1}) == {("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert "t" not in h.coord._shard.groups


@pytest.mark.parametrize(
    ("version", "error"), [(8, ErrorCode.ILLEGAL_GENERATION), (9, ErrorCode.GROUP_ID_NOT_FOUND)]
)
def test_group_commit_to_unknown_group(version: int, error: ErrorCode) -> None:
    h = Harness()
    assert h.commit("x", {("orders", 0): 1}, generation=3, member_id="m", version=version) == {
        ("orders", 0): error
    }


def test_group_commit_validation() -> None:
    h = Harness()
    g = form_group(h, 2)
    m = g.members[0]
    ok = h.commit("g", {("orders", 0): 10}, generation=g.generation, member_id=m)
    assert ok == {("orders", 0): 0}
    assert h.commit("g", {("orders", 0): 11}, generation=g.generation + 1, member_id=m) == {
        ("orders", 0): ErrorCode.ILLEGAL_GENERATION
    }
    assert h.commit("g", {("orders", 0): 11}, generation=g.generation, member_id="x") == {
        ("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID
    }
    # A "simple" commit (no generation, no member) only goes to an empty group.
    assert h.commit("g", {("orders", 0): 11}) == {("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    h.join("g", m)
    h.join("g", g.members[1])
    assert h.classic().state is S.COMPLETING_REBALANCE
    assert h.commit("g", {("orders", 0): 11}, generation=g.generation + 1, member_id=m) == {
        ("orders", 0): ErrorCode.REBALANCE_IN_PROGRESS
    }
    assert h.committed("g", "orders", 0) == 10
    h.leave("g", [(m, None), (g.members[1], None)])
    assert h.classic().state is S.EMPTY
    assert h.commit("g", {("orders", 0): 12}) == {("orders", 0): 0}


def test_commit_v2_retention_time_sets_expire_timestamp() -> None:
    h = Harness()
    h.commit("s", {("orders", 0): 5}, version=2, retention=1_000)
    assert h.coord._offsets.get("s", "orders", 0).expire_timestamp_ms == h.now + 1_000
    h.tick(h.config.offsets_retention_check_interval_ms)
    assert h.committed("s", "orders", 0) == -1


def test_fetch_all_and_old_versions() -> None:
    h = Harness()
    h.commit("s", {("orders", 2): 3, ("logs", 0): 8})
    every = h.fetch("s", None).groups[0]
    assert {
        (t.name, p.partition_index, p.committed_offset) for t in every.topics for p in t.partitions
    } == {
        ("orders", 2, 3),
        ("logs", 0, 8),
    }
    v7 = h.fetch("s", None, version=7)
    assert {(t.name, p.partition_index) for t in v7.topics for p in t.partitions} == {
        ("orders", 2),
        ("logs", 0),
    }
    v1 = h.fetch("s", {"orders": [2, 0]}, version=1)
    assert [(p.partition_index, p.committed_offset) for p in v1.topics[0].partitions] == [
        (2, 3),
        (0, -1),
    ]
    assert h.fetch("missing", None).groups[0].topics == []
    missing = h.fetch("missing", {"orders": [0]}).groups[0]
    assert (missing.error_code, missing.topics[0].partitions[0].committed_offset) == (0, -1)
    # Wire round trip at every version, to make sure the shapes encode.
    for version in range(1, 10):
        topics = [OffsetFetchRequest.OffsetFetchRequestTopic(name="orders", partition_indexes=[2])]
        if version >= 8:
            req = OffsetFetchRequest(
                groups=[
                    OffsetFetchRequest.OffsetFetchRequestGroup(
                        group_id="s",
                        topics=[
                            OffsetFetchRequest.OffsetFetchRequestTopics(
                                name="orders", partition_indexes=[2]
                            )
                        ],
                    )
                ]
            )
        else:
            req = OffsetFetchRequest(group_id="s", topics=topics)
        resp = h.call("offset_fetch", req, version).response
        decoded = type(resp).decode(resp.to_bytes(version), version)
        topics = decoded.groups[0].topics if version >= 8 else decoded.topics
        assert topics[0].partitions[0].committed_offset == 3


def test_batched_fetch_of_several_groups() -> None:
    h = Harness()
    h.commit("a", {("orders", 0): 1})
    h.commit("b", {("orders", 0): 2})
    req = OffsetFetchRequest(
        groups=[
            OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id=g,
                topics=[
                    OffsetFetchRequest.OffsetFetchRequestTopics(
                        name="orders", partition_indexes=[0]
                    )
                ],
            )
            for g in ("a", "b", "c")
        ],
        require_stable=True,
    )
    resp = h.call("offset_fetch", req, 8).response
    assert [(g.group_id, g.topics[0].partitions[0].committed_offset) for g in resp.groups] == [
        ("a", 1),
        ("b", 2),
        ("c", -1),
    ]


def test_topic_ids_in_v10() -> None:
    h = Harness()
    req = OffsetCommitRequest(
        group_id="s",
        topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(
                topic_id=ORDERS_ID,
                partitions=[
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=1, committed_offset=9
                    )
                ],
            ),
            OffsetCommitRequest.OffsetCommitRequestTopic(
                topic_id=uuid.UUID(int=99),
                partitions=[
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=1, committed_offset=9
                    )
                ],
            ),
        ],
    )
    resp = h.call("offset_commit", req, 10).response
    assert [t.partitions[0].error_code for t in resp.topics] == [0, ErrorCode.UNKNOWN_TOPIC_ID]
    assert h.committed("s", "orders", 1) == 9
    fetch = OffsetFetchRequest(
        groups=[
            OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id="s",
                topics=[
                    OffsetFetchRequest.OffsetFetchRequestTopics(
                        topic_id=ORDERS_ID, partition_indexes=[1]
                    )
                ],
            )
        ]
    )
    got = h.call("offset_fetch", fetch, 10).response.groups[0].topics[0]
    assert (got.topic_id, got.partitions[0].committed_offset) == (ORDERS_ID, 9)


def test_offset_delete() -> None:
    h = Harness()
    assert delete_offsets(h, "missing", "orders", [0]).error_code == ErrorCode.GROUP_ID_NOT_FOUND
    # A Stable group of another protocol type: NON_EMPTY_GROUP.
    other = form_group(h, 1, group="connect", protocol_type="connect")
    assert other.members
    assert delete_offsets(h, "connect", "orders", [0]).error_code == ErrorCode.NON_EMPTY_GROUP
    # A Stable consumer group subscribed to orders: GROUP_SUBSCRIBED_TO_TOPIC for orders only.
    g = form_group(h, 1, protocols=[("range", subscription(["orders"]))])
    h.commit(
        "g", {("orders", 0): 5, ("logs", 0): 6}, generation=g.generation, member_id=g.members[0]
    )
    resp = delete_offsets(h, "g", "orders", [0])
    assert resp.topics[0].partitions[0].error_code == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
    resp = delete_offsets(h, "g", "logs", [0, 1])
    assert [p.error_code for p in resp.topics[0].partitions] == [0, 0]
    assert h.committed("g", "logs", 0) == -1
    assert h.committed("g", "orders", 0) == 5
    assert delete_offsets(h, "", "logs", [0]).error_code == ErrorCode.INVALID_GROUP_ID


def test_delete_groups() -> None:
    h = Harness()
    g = form_group(h, 1)
    h.commit("s", {("orders", 0): 1})
    assert delete_groups(h, "g", "s", "missing") == {
        "g": ErrorCode.NON_EMPTY_GROUP,
        "s": 0,
        "missing": ErrorCode.GROUP_ID_NOT_FOUND,
    }
    assert "s" not in h.coord._shard.groups
    assert h.committed("s", "orders", 0) == -1
    h.leave("g", [(g.members[0], None)])
    assert delete_groups(h, "g") == {"g": 0}
    restarted = h.restarted()
    assert restarted._shard.groups == {} and restarted._offsets.offsets == {}


def test_retention_of_empty_group_runs_from_when_it_became_empty() -> None:
    h = Harness(offsets_retention_minutes=10, offsets_retention_check_interval_ms=MINUTE)
    g = form_group(h, 1, session=10 * MINUTE)
    h.commit("g", {("orders", 0): 1}, generation=g.generation, member_id=g.members[0])
    for _ in range(4):  # still a member (heartbeating): nothing expires
        h.tick(5 * MINUTE)
        assert h.heartbeat("g", g.members[0], g.generation).error_code == 0
    assert h.committed("g", "orders", 0) == 1
    h.leave("g", [(g.members[0], None)])
    h.tick(9 * MINUTE)
    assert h.committed("g", "orders", 0) == 1
    h.tick(2 * MINUTE)  # the check runs every minute
    assert h.committed("g", "orders", 0) == -1
    assert "g" not in h.coord._shard.groups  # no offsets left and empty: the group goes too


def test_retention_of_stable_consumer_group_spares_subscribed_topics() -> None:
    h = Harness(
        offsets_retention_minutes=1,
        offsets_retention_check_interval_ms=MINUTE,
        group_max_session_timeout_ms=10 * MINUTE,
    )
    g = form_group(h, 1, protocols=[("range", subscription(["orders"]))], session=10 * MINUTE)
    h.commit(
        "g", {("orders", 0): 5, ("logs", 1): 6}, generation=g.generation, member_id=g.members[0]
    )
    h.tick(2 * MINUTE)
    assert h.committed("g", "orders", 0) == 5
    assert h.committed("g", "logs", 1) == -1


def test_simple_group_offsets_expire_by_commit_time() -> None:
    h = Harness(offsets_retention_minutes=1, offsets_retention_check_interval_ms=30_000)
    h.commit("s", {("orders", 0): 1})
    h.tick(30_000)
    h.commit("s", {("orders", 1): 2})
    h.tick(30_000)
    assert (h.committed("s", "orders", 0), h.committed("s", "orders", 1)) == (-1, 2)
    h.tick(30_000)
    assert "s" not in h.coord._shard.groups


def test_offsets_of_deleted_topics_are_tombstoned() -> None:
    h = Harness()
    h.commit("s", {("orders", 0): 1, ("logs", 0): 2})
    result = h.take(h.coord.on_topics_deleted(h.now, ["orders"]))
    assert [r.value for r in result.records] == [None]
    assert (h.committed("s", "orders", 0), h.committed("s", "logs", 0)) == (-1, 2)


def test_without_metadata_provider_commits_are_not_checked() -> None:
    from metamorphostreams.coordinator import GroupCoordinator, GroupCoordinatorConfig

    coord = GroupCoordinator(GroupCoordinatorConfig(), 50)
    req = OffsetCommitRequest(
        group_id="s",
        topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(
                name="anything",
                partitions=[
                    OffsetCommitRequest.OffsetCommitRequestPartition(
                        partition_index=99, committed_offset=1
                    )
                ],
            )
        ],
    )
    resp = coord.offset_commit(0, req, 8).response
    assert resp.topics[0].partitions[0].error_code == 0
