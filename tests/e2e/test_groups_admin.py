"""ListGroups, DescribeGroups, DeleteGroups and OffsetDelete answers, field by field: through
confluent-kafka's AdminClient (which also drives ConsumerGroupDescribe for KIP-848 groups)
and raw requests encoded by kafka-python's protocol classes where the AdminClient hides
fields (protocol type, protocol name, member metadata, per-partition OffsetDelete errors).

Three groups on one broker: "active" (two classic range members), "empty" (one member that
committed and left) and "kip848" (one `group.protocol=consumer` member).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AclOperation, AdminClient
from helpers import kafka_wire
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import ADMIN_TIMEOUT_S, admin, admin_error, client_config, create_topic
from helpers.groups import GROUP_BROKER_SETTINGS, classic_config, produce_numbered, unique
from kafka import TopicPartition as KpTopicPartition
from kafka import errors as kp_errors
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin import DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest
from kafka.protocol.consumer.group import OffsetDeleteRequest

# Kafka's error codes (org.apache.kafka.common.protocol.Errors), kept local on purpose.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
GROUP_SUBSCRIBED_TO_TOPIC = 86

API_DESCRIBE_GROUPS = 15
API_LIST_GROUPS = 16
# READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS (org.apache.kafka.common.acl.AclOperation)
GROUP_OPERATION_CODES = {3, 6, 8, 10, 11}
GROUP_OPERATIONS = {
    AclOperation.READ,
    AclOperation.DELETE,
    AclOperation.DESCRIBE,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
}
CLIENT_HOST = "/127.0.0.1"  # Kafka's InetAddress.toString() of a loopback client
SETUP_LIMIT_S = 30.0

_OffsetDeleteTopic = OffsetDeleteRequest.OffsetDeleteRequestTopic
_OffsetDeletePartition = _OffsetDeleteTopic.OffsetDeleteRequestPartition


@dataclass
class _Groups:
    broker: BrokerProcess
    topic: str  # 3 partitions; every group subscribes to it
    other: str  # 1 partition; only "active" has a (manually committed) offset for it
    active: str
    empty: str
    kip848: str
    members: dict[str, ConfluentConsumer]  # "active-1", "active-2", "kip848-1"

    def assignment(self, name: str) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self.members[name].assignment()}


def _consumer(bootstrap: str, group: str, client_id: str, **extra: Any) -> ConfluentConsumer:
    settings = {
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }
    return ConfluentConsumer(client_config(bootstrap, **settings))


def _pump(consumers: list[ConfluentConsumer], done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETUP_LIMIT_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {SETUP_LIMIT_S:.0f} s waiting for {what}")
        for consumer in consumers:
            consumer.poll(0.05)


@contextmanager
def _three_groups(broker: BrokerProcess) -> Iterator[_Groups]:
    bs = broker.bootstrap
    topic, other = unique("admin-topic"), unique("admin-other")
    create_topic(bs, topic, 3)
    create_topic(bs, other, 1)
    produce_numbered(bs, topic, range(30), 3)
    active, empty, kip848 = unique("active"), unique("empty"), unique("kip848")

    # "empty": one member takes all partitions, commits offset 5 on each, leaves.
    leaver = _consumer(bs, empty, "empty-1", **classic_config())
    leaver.subscribe([topic])
    _pump([leaver], lambda: len(leaver.assignment()) == 3, "the empty group's member")
    leaver.commit(offsets=[TopicPartition(topic, p, 5) for p in range(3)], asynchronous=False)
    leaver.close()

    members = {
        "active-1": _consumer(bs, active, "active-1", **classic_config()),
        "active-2": _consumer(bs, active, "active-2", **classic_config()),
        "kip848-1": _consumer(bs, kip848, "kip848-1", **{"group.protocol": "consumer"}),
    }
    try:
        for consumer in members.values():
            consumer.subscribe([topic])
        a1, a2, k1 = members.values()
        _pump(
            list(members.values()),
            lambda: (
                len(a1.assignment()) + len(a2.assignment()) == 3
                and bool(a1.assignment())
                and bool(a2.assignment())
                and len(k1.assignment()) == 3
            ),
            "the active and kip848 groups to settle",
        )
        for consumer in (a1, a2):
            owned = [TopicPartition(topic, tp.partition, 2) for tp in consumer.assignment()]
            consumer.commit(offsets=owned, asynchronous=False)
        a1.commit(offsets=[TopicPartition(other, 0, 7)], asynchronous=False)
        k1.commit(offsets=[TopicPartition(topic, p, 3) for p in range(3)], asynchronous=False)
        yield _Groups(broker, topic, other, active, empty, kip848, members)
    finally:
        for consumer in members.values():
            consumer.close()


def _max_version(bootstrap: str, api_key: int) -> int:
    return kafka_wire.api_versions(bootstrap)[api_key][1]


def _committed(client: AdminClient, group: str) -> dict[tuple[str, int], int]:
    futures = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(timeout=ADMIN_TIMEOUT_S)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


# --------------------------------------------------------------------------- decoding


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", buf, pos)
    return buf[pos + 2 : pos + 2 + length].decode(), pos + 2 + length


def _subscription_topics(metadata: bytes) -> list[str]:
    """Topics of a ConsumerProtocolSubscription (any version: they come first)."""
    (count,) = struct.unpack_from(">i", metadata, 2)
    pos, topics = 6, []
    for _ in range(count):
        name, pos = _string(metadata, pos)
        topics.append(name)
    return topics


def _assignment_partitions(assignment: bytes) -> set[tuple[str, int]]:
    """Partitions of a ConsumerProtocolAssignment (version, [topic, [partition]], user data)."""
    (count,) = struct.unpack_from(">i", assignment, 2)
    pos, out = 6, set()
    for _ in range(count):
        topic, pos = _string(assignment, pos)
        (n,) = struct.unpack_from(">i", assignment, pos)
        pos += 4
        for partition in struct.unpack_from(f">{n}i", assignment, pos):
            out.add((topic, partition))
        pos += 4 * n
    return out


def _raw_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value, "latin-1")


# --------------------------------------------------------------------------- list + describe


@pytest.mark.timeout(90)
def test_list_and_describe_groups_field_by_field(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    with _three_groups(broker) as g:
        client = admin(broker.bootstrap)
        ours = {g.active, g.empty, g.kip848}

        # ListGroups through the AdminClient, unfiltered and filtered.
        listed = client.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S).result()
        assert not listed.errors
        summary = {
            x.group_id: (x.is_simple_consumer_group, x.state, x.type)
            for x in listed.valid
            if x.group_id in ours
        }
        assert summary == {
            g.active: (False, ConsumerGroupState.STABLE, ConsumerGroupType.CLASSIC),
            g.empty: (False, ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC),
            g.kip848: (False, ConsumerGroupState.STABLE, ConsumerGroupType.CONSUMER),
        }

        def ids(**filters: Any) -> set[str]:
            future = client.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S, **filters)
            return {x.group_id for x in future.result().valid} & ours

        assert ids(states={ConsumerGroupState.EMPTY}) == {g.empty}
        assert ids(states={ConsumerGroupState.STABLE}) == {g.active, g.kip848}
        assert ids(types={ConsumerGroupType.CONSUMER}) == {g.kip848}
        assert ids(types={ConsumerGroupType.CLASSIC}) == {g.active, g.empty}

        # Raw ListGroups at every version up to the highest served.
        with kafka_wire.WireConnection(broker.bootstrap) as conn:
            top = _max_version(broker.bootstrap, API_LIST_GROUPS)
            assert top >= 5
            for version in range(top + 1):
                fields: dict[str, Any] = {}
                if version >= 4:
                    fields["states_filter"] = []
                if version >= 5:
                    fields["types_filter"] = []
                response = conn.request(ListGroupsRequest[version](**fields))
                assert response.error_code == NONE
                rows = {x.group_id: x for x in response.groups if x.group_id in ours}
                assert set(rows) == ours, f"v{version}: {response}"
                assert {x.protocol_type for x in rows.values()} == {"consumer"}
                if version >= 4:
                    states = {k: v.group_state for k, v in rows.items()}
                    assert states == {g.active: "Stable", g.empty: "Empty", g.kip848: "Stable"}
                if version >= 5:
                    types = {k: v.group_type for k, v in rows.items()}
                    assert types == {g.active: "classic", g.empty: "classic", g.kip848: "consumer"}
            # Filters are case-insensitive, as in Kafka.
            response = conn.request(ListGroupsRequest[5](states_filter=["stable"], types_filter=[]))
            assert {x.group_id for x in response.groups} & ours == {g.active, g.kip848}
            response = conn.request(
                ListGroupsRequest[5](states_filter=[], types_filter=["Classic"])
            )
            assert {x.group_id for x in response.groups} & ours == {g.active, g.empty}

        # DescribeGroups / ConsumerGroupDescribe through the AdminClient.
        futures = client.describe_consumer_groups(
            [g.active, g.empty, g.kip848],
            request_timeout=ADMIN_TIMEOUT_S,
        )
        described = {gid: f.result() for gid, f in futures.items()}
        for gid, d in described.items():
            assert d.group_id == gid
            assert d.is_simple_consumer_group is False
            assert d.authorized_operations is None  # not asked for
            assert (d.coordinator.id, d.coordinator.host, d.coordinator.port) == (
                0,
                broker.host,
                broker.port,
            )

        active = described[g.active]
        assert (active.state, active.type, active.partition_assignor) == (
            ConsumerGroupState.STABLE,
            ConsumerGroupType.CLASSIC,
            "range",
        )
        members = {m.client_id: m for m in active.members}
        assert set(members) == {"active-1", "active-2"}
        for name, m in members.items():
            assert m.member_id == g.members[name].memberid()
            assert m.member_id.startswith(f"{name}-"), m.member_id  # Kafka: client id + "-" + uuid
            assert m.host == CLIENT_HOST
            assert m.group_instance_id is None
            assert {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} == (
                g.assignment(name)
            )

        empty = described[g.empty]
        assert (empty.state, empty.type, empty.partition_assignor, empty.members) == (
            ConsumerGroupState.EMPTY,
            ConsumerGroupType.CLASSIC,
            "",
            [],
        )

        kip848 = described[g.kip848]
        assert (kip848.state, kip848.type, kip848.partition_assignor) == (
            ConsumerGroupState.STABLE,
            ConsumerGroupType.CONSUMER,
            "uniform",
        )
        (member,) = kip848.members
        assert member.member_id == g.members["kip848-1"].memberid()
        assert (member.client_id, member.host, member.group_instance_id) == (
            "kip848-1",
            CLIENT_HOST,
            None,
        )
        everything = {(g.topic, p) for p in range(3)}
        assert {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions} == everything
        assert member.target_assignment is not None
        target = {(tp.topic, tp.partition) for tp in member.target_assignment.topic_partitions}
        assert target == everything

        # Raw DescribeGroups v5 (the highest our broker serves; v6 only adds errors for
        # unknown groups, checked below when served): what the AdminClient hides.
        nope = unique("nope")
        asked = [g.active, g.empty, g.kip848, nope]
        with kafka_wire.WireConnection(broker.bootstrap) as conn:
            response = conn.request(
                DescribeGroupsRequest[5](groups=asked, include_authorized_operations=False)
            )
        rows = {x.group_id: x for x in response.groups}
        # One per group asked; Kafka orders them by coordinator shard, not as asked.
        assert sorted(x.group_id for x in response.groups) == sorted(asked)

        row = rows[g.active]
        assert (row.error_code, row.group_state, row.protocol_type, row.protocol_data) == (
            NONE,
            "Stable",
            "consumer",
            "range",
        )
        raw_members = {m.client_id: m for m in row.members}
        assert set(raw_members) == {"active-1", "active-2"}
        for name, m in raw_members.items():
            assert m.member_id == g.members[name].memberid()
            assert (m.client_host, m.group_instance_id) == (CLIENT_HOST, None)
            assert _subscription_topics(_raw_bytes(m.member_metadata)) == [g.topic]
            assert _assignment_partitions(_raw_bytes(m.member_assignment)) == g.assignment(name)

        row = rows[g.empty]
        assert (row.error_code, row.group_state, row.protocol_type, row.protocol_data) == (
            NONE,
            "Empty",
            "consumer",
            "",
        )
        assert row.members == []

        # A KIP-848 group is not a classic group, and an unknown group does not exist:
        # DescribeGroups (below v6) answers both as Dead, without an error.
        unknown_state = (NONE, "Dead", "", "", [])
        for gid in (g.kip848, nope):
            row = rows[gid]
            got = (row.error_code, row.group_state, row.protocol_type, row.protocol_data)
            assert (*got, row.members) == unknown_state, row

        if _max_version(broker.bootstrap, API_DESCRIBE_GROUPS) >= 6:
            # KIP-1043: v6 says GROUP_ID_NOT_FOUND for both, still with state Dead.
            with kafka_wire.WireConnection(broker.bootstrap) as conn:
                response = conn.request(
                    DescribeGroupsRequest[6](groups=asked, include_authorized_operations=False)
                )
            got6 = {x.group_id: (x.error_code, x.group_state) for x in response.groups}
            assert got6 == {
                g.active: (NONE, "Stable"),
                g.empty: (NONE, "Empty"),
                g.kip848: (GROUP_ID_NOT_FOUND, "Dead"),
                nope: (GROUP_ID_NOT_FOUND, "Dead"),
            }

        # The AdminClient's view of an unknown group.
        (unknown,) = client.describe_consumer_groups([nope]).values()
        d = unknown.result(timeout=ADMIN_TIMEOUT_S)
        assert (d.state, d.members, d.partition_assignor) == (ConsumerGroupState.DEAD, [], "")
        assert d.is_simple_consumer_group is True  # no protocol type


# --------------------------------------------------------------------------- deletes


def _offset_delete(
    broker: BrokerProcess, group: str, partitions: dict[str, list[int]]
) -> tuple[int, dict[tuple[str, int], int]]:
    """(top-level error, {(topic, partition): error}) of one raw OffsetDelete v0."""
    request = OffsetDeleteRequest[0](
        group_id=group,
        topics=[
            _OffsetDeleteTopic(
                name=topic, partitions=[_OffsetDeletePartition(partition_index=p) for p in parts]
            )
            for topic, parts in partitions.items()
        ],
    )
    with kafka_wire.WireConnection(broker.bootstrap) as conn:
        response = conn.request(request)
    errors = {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }
    return response.error_code, errors


@pytest.mark.timeout(90)
def test_delete_groups_and_offset_delete(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    with _three_groups(broker) as g:
        client = admin(broker.bootstrap)
        nope = unique("nope")
        active_before = _committed(client, g.active)
        assert active_before == {
            **{(g.topic, p): 2 for p in range(3)},
            (g.other, 0): 7,
        }
        assert _committed(client, g.empty) == {(g.topic, p): 5 for p in range(3)}

        # OffsetDelete: a topic the group subscribes to is refused per partition; a topic it
        # does not subscribe to goes; an unknown group is refused as a whole.
        top, errors = _offset_delete(broker, g.active, {g.topic: [0], g.other: [0]})
        assert (top, errors) == (
            NONE,
            {(g.topic, 0): GROUP_SUBSCRIBED_TO_TOPIC, (g.other, 0): NONE},
        )
        assert _committed(client, g.active) == {(g.topic, p): 2 for p in range(3)}

        top, errors = _offset_delete(broker, g.kip848, {g.topic: [1]})
        assert (top, errors) == (NONE, {(g.topic, 1): GROUP_SUBSCRIBED_TO_TOPIC})

        top, errors = _offset_delete(broker, nope, {g.topic: [0]})
        assert (top, errors) == (GROUP_ID_NOT_FOUND, {})

        # An empty group subscribes to nothing: its offsets can go, one partition at a time.
        top, errors = _offset_delete(broker, g.empty, {g.topic: [0]})
        assert (top, errors) == (NONE, {(g.topic, 0): NONE})
        assert _committed(client, g.empty) == {(g.topic, 1): 5, (g.topic, 2): 5}

        # The same through kafka-python's admin client.
        kp_admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="mms-e2e")
        try:
            result = kp_admin.delete_group_offsets(g.active, [KpTopicPartition(g.topic, 2)])
            assert result == {KpTopicPartition(g.topic, 2): kp_errors.GroupSubscribedToTopicError}
            with pytest.raises(kp_errors.GroupIdNotFoundError):
                kp_admin.delete_group_offsets(nope, [KpTopicPartition(g.topic, 0)])
        finally:
            kp_admin.close()

        # DeleteGroups through the AdminClient: one future per group.
        futures = client.delete_consumer_groups(
            [g.active, g.kip848, nope], request_timeout=ADMIN_TIMEOUT_S
        )
        codes = {gid: admin_error(f).code() for gid, f in futures.items()}
        assert codes == {
            g.active: KafkaError.NON_EMPTY_GROUP,
            g.kip848: KafkaError.NON_EMPTY_GROUP,
            nope: KafkaError.GROUP_ID_NOT_FOUND,
        }
        (deleted,) = client.delete_consumer_groups([g.empty]).values()
        assert deleted.result(timeout=ADMIN_TIMEOUT_S) is None

        # Gone: not listed, described as Dead, no offsets left.
        listed = client.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S).result()
        assert g.empty not in {x.group_id for x in listed.valid}
        assert {g.active, g.kip848} <= {x.group_id for x in listed.valid}
        assert _committed(client, g.empty) == {}
        (after,) = client.describe_consumer_groups([g.empty]).values()
        assert after.result(timeout=ADMIN_TIMEOUT_S).state == ConsumerGroupState.DEAD

        # Raw DeleteGroups: one result per group (Kafka orders them by coordinator shard,
        # not as asked); the deleted group is now unknown.
        with kafka_wire.WireConnection(broker.bootstrap) as conn:
            response = conn.request(
                DeleteGroupsRequest[2](groups_names=[g.active, g.empty, nope, g.kip848])
            )
        results = [(r.group_id, r.error_code) for r in response.results]
        assert len(results) == 4
        assert dict(results) == {
            g.active: NON_EMPTY_GROUP,
            g.empty: GROUP_ID_NOT_FOUND,
            nope: GROUP_ID_NOT_FOUND,
            g.kip848: NON_EMPTY_GROUP,
        }
        # The refused deletes left the live groups and their offsets alone.
        assert _committed(client, g.active) == {(g.topic, p): 2 for p in range(3)}
        assert _committed(client, g.kip848) == {(g.topic, p): 3 for p in range(3)}


@pytest.mark.timeout(90)
def test_describe_groups_authorized_operations(broker_factory: BrokerFactory) -> None:
    """Asked for them, Kafka without an authorizer lists every operation a group supports,
    for any group id (known, KIP-848 or unknown), in DescribeGroups and ConsumerGroupDescribe."""
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    with _three_groups(broker) as g:
        client = admin(broker.bootstrap)
        nope = unique("nope")
        with kafka_wire.WireConnection(broker.bootstrap) as conn:
            response = conn.request(
                DescribeGroupsRequest[5](
                    groups=[g.active, g.empty, g.kip848, nope],
                    include_authorized_operations=True,
                )
            )
        got = {x.group_id: set(x.authorized_operations or ()) for x in response.groups}
        assert got == dict.fromkeys([g.active, g.empty, g.kip848, nope], GROUP_OPERATION_CODES)

        futures = client.describe_consumer_groups(
            [g.active, g.empty, g.kip848],
            request_timeout=ADMIN_TIMEOUT_S,
            include_authorized_operations=True,
        )
        ops = {gid: set(f.result().authorized_operations or ()) for gid, f in futures.items()}
        assert ops == dict.fromkeys([g.active, g.empty, g.kip848], GROUP_OPERATIONS)


@pytest.mark.timeout(60)
def test_offset_delete_unknown_partition(broker_factory: BrokerFactory) -> None:
    """OffsetDelete names a partition or topic that does not exist: Kafka answers that
    partition UNKNOWN_TOPIC_OR_PARTITION and deletes the others."""
    broker = broker_factory(GROUP_BROKER_SETTINGS)
    topic, group = unique("od-topic"), unique("od-group")
    create_topic(broker.bootstrap, topic, 2)
    committer = _consumer(broker.bootstrap, group, "od-1")
    committer.commit(offsets=[TopicPartition(topic, p, 4) for p in range(2)], asynchronous=False)
    committer.close()
    missing = unique("missing")

    top, errors = _offset_delete(broker, group, {topic: [0, 9], missing: [0]})
    assert (top, errors) == (
        NONE,
        {
            (topic, 0): NONE,
            (topic, 9): UNKNOWN_TOPIC_OR_PARTITION,
            (missing, 0): UNKNOWN_TOPIC_OR_PARTITION,
        },
    )
    assert _committed(admin(broker.bootstrap), group) == {(topic, 1): 4}
