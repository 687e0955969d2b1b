"""KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe), raw, against Kafka
and us, through our generated codec (`differential.call`): kafka-python knows neither API.

The scenarios replay what clients do when their subscription changes quickly: a heartbeat
still in flight when the leave heartbeat (member epoch -1) goes out, pipelined on one
connection as the Java client and librdkafka send them; then the late heartbeats of a member
that already left, and its rejoin with epoch 0. Every answer and the group as
ConsumerGroupDescribe shows it are compared. Member ids are the client's (KIP-1082,
ConsumerGroupHeartbeat v1), so both brokers see the same ones; topic ids are dropped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory
from helpers.reference_kafka import ReferenceKafka, require_reference_kafka

from metamorphostreams.protocol._generated.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
)
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
)
from metamorphostreams.protocol._generated.find_coordinator import FindCoordinatorRequest

from .differential import (
    COORDINATOR_SETTLING,
    READY_LIMIT_S,
    VOLATILE,
    Target,
    Targets,
    call,
    create_topic,
    plain,
    unique,
)

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_VERSION = 1  # v1: the member id is the client's (KIP-1082)
DESCRIBE_VERSION = 1
TP = ConsumerGroupHeartbeatRequest.TopicPartitions
# Addresses, authorized operations and heartbeat intervals are each broker's own.
KIP848_VOLATILE = VOLATILE | {"client_host", "heartbeat_interval_ms", "authorized_operations"}
NOT_COORDINATOR = 16
# Kafka's coordinator answers these while it loads __consumer_offsets; clients retry them.
LOADING = COORDINATOR_SETTLING | {NOT_COORDINATOR}


# Kafka 4.3 batches target assignments (KIP-1263, group.consumer.assignment.interval.ms): at
# its defaults a rejoining member is answered at the old assignment epoch with nothing while
# the group stays Assigning. We compute the assignment on the heartbeat that needs it, which
# is Kafka's behaviour with the interval at 0 (tests/reference/KNOWN_DIFFERENCES.md material).
KAFKA_SETTINGS = {"group.consumer.assignment.interval.ms": 0}


@pytest.fixture(scope="module")
def kip848_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceKafka]:
    require_reference_kafka()
    with ReferenceKafka(tmp_path_factory.mktemp("kip848-kafka"), settings=KAFKA_SETTINGS) as kafka:
        yield kafka


@pytest.fixture
def kip848_targets(kip848_kafka: ReferenceKafka, broker_factory: BrokerFactory) -> Targets:
    ours = broker_factory({"group.initial.rebalance.delay.ms": 0})
    return Targets(
        kafka=Target("kafka", kip848_kafka.bootstrap), ours=Target("ours", ours.bootstrap)
    )


def pipeline(conn: wire.WireConnection, requests: Sequence[tuple[Any, int]]) -> list[Any]:
    """Send every request before reading any answer (requests in flight together)."""
    from metamorphostreams.protocol._generated import RESPONSE_CLASSES
    from metamorphostreams.protocol._generated.headers import RequestHeader, ResponseHeader
    from metamorphostreams.protocol._primitives import Reader
    from metamorphostreams.protocol.headers import (
        request_header_version,
        response_header_version,
    )

    sent = []
    for request, version in requests:
        correlation_id = wire.next_correlation_id()
        header = RequestHeader(
            request_api_key=request.API_KEY,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id="mms-reference",
        ).to_bytes(request_header_version(request.API_KEY, version))
        payload = header + request.to_bytes(version)
        conn.send_raw(len(payload).to_bytes(4, "big") + payload)
        sent.append((request.API_KEY, version, correlation_id))
    answers = []
    for api_key, version, correlation_id in sent:
        reader = Reader(conn.recv_frame())
        got = ResponseHeader.read(reader, response_header_version(api_key, version))
        assert got.correlation_id == correlation_id
        answers.append(RESPONSE_CLASSES[api_key].read(reader, version))
    return answers


def wait_coordinator(t: Target, group: str) -> None:
    """FindCoordinator until the coordinator is loaded (Kafka creates __consumer_offsets)."""
    request = FindCoordinatorRequest(key_type=0, coordinator_keys=[group])
    deadline = time.monotonic() + READY_LIMIT_S
    while True:
        (coordinator,) = call(t, request, 4).coordinators
        if coordinator.error_code not in LOADING or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def join(group: str, member_id: str, topics: list[str]) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(
        group_id=group,
        member_id=member_id,
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=topics,
        topic_partitions=[],
    )


def heartbeat(
    group: str, member_id: str, epoch: int, owned: Any, topics: list[str] | None = None
) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(
        group_id=group,
        member_id=member_id,
        member_epoch=epoch,
        subscribed_topic_names=topics,
        topic_partitions=[TP(topic_id=tp.topic_id, partitions=tp.partitions) for tp in owned],
    )


def leave(group: str, member_id: str) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(group_id=group, member_id=member_id, member_epoch=-1)


def describe(t: Target, group: str) -> Any:
    (described,) = call(t, ConsumerGroupDescribeRequest(group_ids=[group]), DESCRIBE_VERSION).groups
    return plain(described)


def settled_join(t: Target, group: str, member_id: str, topics: list[str]) -> Any:
    """The first heartbeat, retried while the new coordinator settles (Kafka, at first)."""
    deadline = time.monotonic() + READY_LIMIT_S
    while True:
        answer = call(t, join(group, member_id, topics), HEARTBEAT_VERSION)
        if answer.error_code not in LOADING or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_leave_overlapping_an_inflight_heartbeat(kip848_targets: Targets) -> None:
    orders, logs = unique("kip848-orders"), unique("kip848-logs")
    group = unique("kip848-leave")
    member = str(uuid.uuid4())

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, orders, 4)
        create_topic(t, logs, 2)
        wait_coordinator(t, group)
        out: dict[str, Any] = {}
        first = settled_join(t, group, member, [orders])
        out["join"] = plain(first)
        assert first.assignment is not None, f"{t}: {first}"
        owned = first.assignment.topic_partitions
        with t.connect() as conn:
            # The subscription changes and the consumer closes before the answer arrives.
            change, left = pipeline(
                conn,
                [
                    (heartbeat(group, member, first.member_epoch, owned, [logs]), 1),
                    (leave(group, member), 1),
                ],
            )
            out["change in flight"] = plain(change)
            out["leave"] = plain(left)
            out["described after leave"] = describe(t, group)
            # A heartbeat the client had queued before it knew it left, then a second leave.
            late, again = pipeline(
                conn,
                [
                    (heartbeat(group, member, change.member_epoch, owned), 1),
                    (leave(group, member), 1),
                ],
            )
            out["late heartbeat"] = plain(late)
            out["second leave"] = plain(again)
            # It subscribes again: a rejoin with epoch 0 and the same member id.
            rejoin = call(t, join(group, member, [logs]), HEARTBEAT_VERSION, conn=conn)
            out["rejoin"] = plain(rejoin)
            steady = call(
                t,
                heartbeat(group, member, rejoin.member_epoch, rejoin.assignment.topic_partitions),
                HEARTBEAT_VERSION,
                conn=conn,
            )
            out["next heartbeat"] = plain(steady)
            out["described after rejoin"] = describe(t, group)
            # Join and leave in flight together: the member is gone when both are answered.
            other = str(uuid.uuid4())
            joined, gone = pipeline(
                conn, [(join(group, other, [logs]), 1), (leave(group, other), 1)]
            )
            out["join then leave"] = [plain(joined), plain(gone)]
            out["described at the end"] = describe(t, group)
        return _mask(out, {member: "<member>", other: "<other>"})

    kip848_targets.compare(scenario, "KIP-848 leave in flight", drop=KIP848_VOLATILE)


def _mask(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


# --------------------------------------------------------------------------- migration


def subscription(topic: str, owned: Sequence[int] = ()) -> bytes:
    """ConsumerProtocolSubscription v1: topics, no user data, owned partitions."""
    name = topic.encode()
    out = b"\x00\x01" + b"\x00\x00\x00\x01" + len(name).to_bytes(2, "big") + name
    out += b"\xff\xff\xff\xff"  # user data: null
    if not owned:
        return out + b"\x00\x00\x00\x00"
    out += b"\x00\x00\x00\x01" + len(name).to_bytes(2, "big") + name
    return out + len(owned).to_bytes(4, "big") + b"".join(p.to_bytes(4, "big") for p in owned)


def assignment_bytes(topic: str, partitions: Sequence[int]) -> bytes:
    """ConsumerProtocolAssignment v1 of one topic."""
    name = topic.encode()
    out = b"\x00\x01\x00\x00\x00\x01" + len(name).to_bytes(2, "big") + name
    out += len(partitions).to_bytes(4, "big") + b"".join(p.to_bytes(4, "big") for p in partitions)
    return out + b"\xff\xff\xff\xff"


def test_online_upgrade_and_downgrade(kip848_targets: Targets) -> None:
    from metamorphostreams.protocol._generated.describe_groups import DescribeGroupsRequest
    from metamorphostreams.protocol._generated.heartbeat import HeartbeatRequest
    from metamorphostreams.protocol._generated.join_group import JoinGroupRequest
    from metamorphostreams.protocol._generated.sync_group import SyncGroupRequest

    topic, group = unique("migration-orders"), unique("migration")
    modern = str(uuid.uuid4())
    P = JoinGroupRequest.JoinGroupRequestProtocol

    def join_classic(t: Target, member_id: str, owned: Sequence[int] = ()) -> Any:
        request = JoinGroupRequest(
            group_id=group,
            session_timeout_ms=30_000,
            rebalance_timeout_ms=20_000,
            member_id=member_id,
            protocol_type="consumer",
            protocols=[P(name="range", metadata=subscription(topic, owned))],
        )
        return call(t, request, 9)

    def sync(t: Target, member_id: str, generation: int, assign: bytes | None) -> Any:
        A = SyncGroupRequest.SyncGroupRequestAssignment
        request = SyncGroupRequest(
            group_id=group,
            generation_id=generation,
            member_id=member_id,
            protocol_type="consumer",
            protocol_name="range",
            assignments=[] if assign is None else [A(member_id=member_id, assignment=assign)],
        )
        return call(t, request, 5)

    def heartbeat_classic(t: Target, member_id: str, generation: int) -> Any:
        request = HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id)
        return call(t, request, 4)

    def describe_classic(t: Target) -> Any:
        (described,) = call(t, DescribeGroupsRequest(groups=[group]), 5).groups
        return {"state": described.group_state, "members": len(described.members)}

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 4)
        wait_coordinator(t, group)
        out: dict[str, Any] = {}
        deadline = time.monotonic() + READY_LIMIT_S
        first = join_classic(t, "")
        while first.error_code in LOADING and time.monotonic() < deadline:
            time.sleep(0.1)
            first = join_classic(t, "")
        member = first.member_id
        joined = join_classic(t, member)
        out["classic join"] = plain(joined)
        synced = sync(t, member, joined.generation_id, assignment_bytes(topic, [0, 1, 2, 3]))
        out["classic sync"] = plain(synced)
        # A consumer-protocol member joins the classic group: the group is upgraded online.
        upgraded = call(t, join(group, modern, [topic]), HEARTBEAT_VERSION)
        out["consumer join"] = plain(upgraded)
        out["described upgraded"] = describe(t, group)
        out["classic heartbeat"] = plain(heartbeat_classic(t, member, joined.generation_id))
        # The classic member rejoins (eager: it gave everything up) and syncs.
        rejoined = join_classic(t, member)
        out["classic rejoin"] = plain(rejoined)
        out["classic resync"] = plain(sync(t, member, rejoined.generation_id, None))
        steady = call(
            t,
            heartbeat(group, modern, upgraded.member_epoch, upgraded.assignment.topic_partitions),
            HEARTBEAT_VERSION,
        )
        out["consumer heartbeat"] = plain(steady)
        out["classic heartbeat after"] = plain(heartbeat_classic(t, member, rejoined.generation_id))
        out["described shared"] = describe(t, group)
        # The consumer-protocol member leaves: the group is classic again.
        out["consumer leave"] = plain(call(t, leave(group, modern), HEARTBEAT_VERSION))
        out["described downgraded"] = describe(t, group)
        out["classic group"] = describe_classic(t)
        out["classic heartbeat downgraded"] = plain(
            heartbeat_classic(t, member, rejoined.generation_id)
        )
        last = join_classic(t, member)
        out["classic join downgraded"] = plain(last)
        masked = _mask(out, {member: "<classic>", modern: "<modern>"})
        for key in ("described upgraded", "described shared"):
            # Kafka lists members in hash order: compare them by member id.
            masked[key]["members"].sort(key=lambda m: m["member_id"])
        return masked

    kip848_targets.compare(scenario, "KIP-848 online migration", drop=KIP848_VOLATILE)


# --------------------------------------------------------------------------- regexes

REGEX_REFRESH_S = 10.5  # Kafka refreshes a group's regexes at most every 10 s
RESOLUTION_S = 1.0  # Kafka resolves off the heartbeat, on its executor: a moment later


def test_regex_resolved_after_the_literal_topics(kip848_targets: Targets) -> None:
    prefix = unique("rx")
    literal, first, later = f"{prefix}-literal", f"{prefix}-a", f"{prefix}-b"
    group = unique("kip848-regex")
    member = str(uuid.uuid4())
    regex = f"{prefix}-[ab]"

    def beat(t: Target, epoch: int, owned: Any) -> Any:
        return call(t, heartbeat(group, member, epoch, owned), HEARTBEAT_VERSION)

    def topics_of(t: Target, answer: Any) -> list[tuple[str, list[int]]]:
        """The assignment by topic name (ids differ between brokers)."""
        names = {
            tp.topic_id: tp.topic_name
            for m in call(t, ConsumerGroupDescribeRequest(group_ids=[group]), 1).groups[0].members
            for tp in m.assignment.topic_partitions
        }
        if answer.assignment is None:
            return []
        return sorted(
            (names.get(tp.topic_id, "?"), tp.partitions)
            for tp in answer.assignment.topic_partitions
        )

    def scenario(t: Target) -> dict[str, Any]:
        for name, partitions in ((literal, 2), (first, 1)):
            create_topic(t, name, partitions)
        wait_coordinator(t, group)
        out: dict[str, Any] = {}
        request = join(group, member, [literal])
        request.subscribed_topic_regex = regex
        deadline = time.monotonic() + READY_LIMIT_S
        joined = call(t, request, HEARTBEAT_VERSION)
        while joined.error_code in LOADING and time.monotonic() < deadline:
            time.sleep(0.1)
            joined = call(t, request, HEARTBEAT_VERSION)
        out["join"] = plain(joined)
        out["join topics"] = topics_of(t, joined)
        time.sleep(RESOLUTION_S)
        owned = joined.assignment.topic_partitions
        resolved = beat(t, joined.member_epoch, owned)
        out["after resolution"] = plain(resolved)
        out["after resolution topics"] = topics_of(t, resolved)
        # A new matching topic: not seen before the group's next refresh (10 s).
        create_topic(t, later, 1)
        owned = resolved.assignment.topic_partitions
        early = beat(t, resolved.member_epoch, owned)
        out["new topic, early"] = plain(early)
        time.sleep(REGEX_REFRESH_S)
        asks = beat(t, early.member_epoch, owned)
        out["refresh asked"] = plain(asks)
        time.sleep(RESOLUTION_S)
        refreshed = beat(t, asks.member_epoch, owned)
        out["refreshed"] = plain(refreshed)
        out["refreshed topics"] = topics_of(t, refreshed)
        invalid = join(group, str(uuid.uuid4()), [])
        invalid.subscribed_topic_regex = "("
        out["invalid"] = plain(call(t, invalid, HEARTBEAT_VERSION))
        for answer in out.values():
            # Topics come in id order, and ids are each broker's own: compare them sorted.
            if isinstance(answer, dict) and answer.get("assignment"):
                answer["assignment"]["topic_partitions"].sort(key=lambda tp: tp["partitions"])
        return _mask(out, {member: "<member>"})

    kip848_targets.compare(scenario, "KIP-848 regex subscription", drop=KIP848_VOLATILE)
