"""KIP-848 leaves that overlap heartbeats still in flight (issue 16, item 9): the answers
Kafka 4.3 gives, replayed against the coordinator in the order one connection delivers them
(tests/reference/test_groups_kip848.py compares the same interleaving with Kafka on the wire).
"""

from __future__ import annotations

from metamorphostreams.coordinator.consumer_group import ConsumerGroupState
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import LOGS_ID, ORDERS_ID, Harness

TP = ConsumerGroupHeartbeatRequest.TopicPartitions


def test_leave_overlapping_an_inflight_subscription_change() -> None:
    h = Harness()
    joined = h.cg_heartbeat(
        group_id="c",
        member_id="m",
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["orders"],
        topic_partitions=[],
    )
    # A new group starts at epoch 1 (empty assignment); the first assignment is epoch 2.
    assert (joined.error_code, joined.member_epoch) == (0, 2)
    owned = [TP(topic_id=ORDERS_ID, partitions=list(range(6)))]
    # The subscription changes and, before its answer, the consumer closes: both in flight.
    change = h.cg_heartbeat(
        group_id="c",
        member_id="m",
        member_epoch=2,
        subscribed_topic_names=["logs"],
        topic_partitions=owned,
    )
    assert (change.error_code, change.member_epoch) == (0, 2)  # revoke orders first
    assert change.assignment is not None and change.assignment.topic_partitions == []
    left = h.cg_heartbeat(group_id="c", member_id="m", member_epoch=-1)
    assert (left.error_code, left.member_id, left.member_epoch) == (0, "m", -1)
    group = h.consumer()
    assert (group.state, group.group_epoch, group.assignment_epoch) == (
        ConsumerGroupState.EMPTY,
        4,
        3,  # Kafka 4.3 leaves the assignment epoch behind when the last member leaves
    )
    # What the client still sends for the member that left: refused, so it rejoins.
    late = h.cg_heartbeat(group_id="c", member_id="m", member_epoch=2, topic_partitions=owned)
    assert (late.error_code, late.error_message) == (
        ErrorCode.UNKNOWN_MEMBER_ID,
        "Member m is not a member of group c.",
    )
    again = h.cg_heartbeat(group_id="c", member_id="m", member_epoch=-1)
    assert again.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    # It subscribes again: a rejoin with epoch 0 and the same member id is a new member.
    rejoin = h.cg_heartbeat(
        group_id="c",
        member_id="m",
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["logs"],
        topic_partitions=[],
    )
    assert (rejoin.error_code, rejoin.member_epoch) == (0, 5)
    assert rejoin.assignment is not None
    assert [(tp.topic_id, tp.partitions) for tp in rejoin.assignment.topic_partitions] == [
        (LOGS_ID, [0, 1, 2])
    ]
    assert h.consumer().state is ConsumerGroupState.STABLE
    # A join and its leave in flight together: answered in order, the member is gone.
    other = h.cg_heartbeat(
        group_id="c",
        member_id="o",
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["logs"],
        topic_partitions=[],
    )
    gone = h.cg_heartbeat(group_id="c", member_id="o", member_epoch=-1)
    assert (other.error_code, other.member_epoch, gone.error_code) == (0, 6, 0)
    assert list(h.consumer().members) == ["m"]
    assert h.restarted()._shard.groups["c"] == h.consumer()
