"""A fake-clock harness around ``GroupCoordinator`` and consumer-protocol helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from metamorphostreams.coordinator import (
    CoordinatorRecord,
    GroupCoordinator,
    GroupCoordinatorConfig,
    Result,
)
from metamorphostreams.coordinator.classic_group import ClassicGroup
from metamorphostreams.coordinator.consumer_group import ConsumerGroup
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from metamorphostreams.protocol._generated.consumer_protocol_assignment import (
    ConsumerProtocolAssignment,
)
from metamorphostreams.protocol._generated.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from metamorphostreams.protocol._generated.heartbeat import HeartbeatRequest, HeartbeatResponse
from metamorphostreams.protocol._generated.join_group import JoinGroupRequest, JoinGroupResponse
from metamorphostreams.protocol._generated.leave_group import LeaveGroupRequest, LeaveGroupResponse
from metamorphostreams.protocol._generated.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitResponse,
)
from metamorphostreams.protocol._generated.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from metamorphostreams.protocol._generated.sync_group import SyncGroupRequest, SyncGroupResponse
from metamorphostreams.protocol._primitives import Reader, Writer
from metamorphostreams.protocol.errors import ErrorCode

ORDERS_ID = uuid.UUID(int=0xA1)
LOGS_ID = uuid.UUID(int=0xB2)
DEFAULT_TOPICS = {"orders": (ORDERS_ID, 6), "logs": (LOGS_ID, 3)}


def subscription(
    topics: Iterable[str], owned: Mapping[str, Iterable[int]] = (), version: int = 1
) -> bytes:
    w = Writer()
    w.int16(version)
    owned_list = [
        ConsumerProtocolSubscription.TopicPartition(topic=t, partitions=sorted(ps))
        for t, ps in dict(owned).items()
    ]
    ConsumerProtocolSubscription(topics=list(topics), owned_partitions=owned_list).write(w, version)
    return w.getvalue()


def assignment(parts: Mapping[str, Iterable[int]], version: int = 1) -> bytes:
    w = Writer()
    w.int16(version)
    ConsumerProtocolAssignment(
        assigned_partitions=[
            ConsumerProtocolAssignment.TopicPartition(topic=t, partitions=sorted(ps))
            for t, ps in parts.items()
        ]
    ).write(w, version)
    return w.getvalue()


def decode_assignment(data: bytes) -> dict[str, list[int]]:
    if not data:
        return {}
    r = Reader(data)
    version = r.int16()
    a = ConsumerProtocolAssignment.read(r, version)
    return {tp.topic: list(tp.partitions) for tp in a.assigned_partitions}


def decode_subscription(data: bytes) -> ConsumerProtocolSubscription:
    r = Reader(data)
    version = r.int16()
    return ConsumerProtocolSubscription.read(r, version)


class Harness:
    """A coordinator, a fake clock, the log of every record and the parked answers."""

    def __init__(
        self,
        topics: Mapping[str, tuple[uuid.UUID, int]] | None = None,
        num_partitions: int = 50,
        **config: Any,
    ) -> None:
        self.config = GroupCoordinatorConfig(**config)
        self.topics = dict(DEFAULT_TOPICS if topics is None else topics)
        self.num_partitions = num_partitions
        self._n = 0
        self.coord = self._new_coordinator()
        self.now = 1_000
        self.log: list[CoordinatorRecord] = []
        self.answers: dict[int, Any] = {}

    def _uuid(self) -> uuid.UUID:
        self._n += 1
        return uuid.UUID(int=self._n)

    def _new_coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(
            self.config, self.num_partitions, metadata=lambda: self.topics, uuid_factory=self._uuid
        )

    def take(self, result: Result) -> Result:
        self.log.extend(result.records)
        for pending_id, response in result.completions:
            assert pending_id not in self.answers
            self.answers[pending_id] = response
        return result

    def tick(self, ms: int = 0) -> Result:
        self.now += ms
        return self.take(self.coord.poll(self.now))

    def answer(self, result: Result) -> Any:
        """The response of a call: direct, or arrived since as a completion (None: waiting)."""
        if result.response is not None:
            return result.response
        assert result.pending is not None
        return self.answers.pop(result.pending, None)

    def call(self, method: str, request: Any, version: int, **kw: Any) -> Result:
        return self.take(getattr(self.coord, method)(self.now, request, version, **kw))

    def restarted(self) -> GroupCoordinator:
        """A fresh coordinator that replayed every record written so far."""
        fresh = self._new_coordinator()
        for record in self.log:
            fresh.replay(record)
        return fresh

    # -- classic -------------------------------------------------------------------------

    def join(
        self,
        group: str = "g",
        member_id: str = "",
        *,
        version: int = 7,
        instance: str | None = None,
        protocols: Iterable[tuple[str, bytes]] = (("range", b"m"),),
        protocol_type: str = "consumer",
        session: int = 10_000,
        rebalance: int = 30_000,
        client_id: str = "client",
    ) -> Result:
        req = JoinGroupRequest(
            group_id=group,
            session_timeout_ms=session,
            rebalance_timeout_ms=rebalance,
            member_id=member_id,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocols=[
                JoinGroupRequest.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols
            ],
        )
        return self.call("join_group", req, version, client_id=client_id, client_host="/10.0.0.1")

    def new_member(self, group: str = "g", **kw: Any) -> tuple[str, Result]:
        """The KIP-394 dance: get a member id, then join with it (the join may park)."""
        first = self.answer(self.join(group, **kw))
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED, first
        return first.member_id, self.join(group, first.member_id, **kw)

    def sync(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes] | None = None,
        *,
        version: int = 5,
        instance: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Result:
        req = SyncGroupRequest(
            group_id=group,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            assignments=[
                SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=a)
                for m, a in (assignments or {}).items()
            ],
        )
        return self.call("sync_group", req, version)

    def heartbeat(
        self,
        group: str,
        member_id: str,
        generation: int,
        *,
        instance: str | None = None,
        version: int = 4,
    ) -> HeartbeatResponse:
        req = HeartbeatRequest(
            group_id=group,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=instance,
        )
        return self.call("heartbeat", req, version).response

    def leave(
        self, group: str, members: list[tuple[str, str | None]], *, version: int = 5
    ) -> LeaveGroupResponse:
        if version >= 3:
            req = LeaveGroupRequest(
                group_id=group,
                members=[
                    LeaveGroupRequest.MemberIdentity(member_id=m, group_instance_id=i)
                    for m, i in members
                ],
            )
        else:
            req = LeaveGroupRequest(group_id=group, member_id=members[0][0])
        return self.call("leave_group", req, version).response

    # -- offsets -------------------------------------------------------------------------

    def commit(
        self,
        group: str,
        offsets: Mapping[tuple[str, int], int],
        *,
        generation: int = -1,
        member_id: str = "",
        instance: str | None = None,
        metadata: str | None = "",
        version: int = 8,
        retention: int = -1,
    ) -> dict[tuple[str, int], int]:
        by_topic: dict[str, list[OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
        for (topic, p), off in offsets.items():
            by_topic.setdefault(topic, []).append(
                OffsetCommitRequest.OffsetCommitRequestPartition(
                    partition_index=p,
                    committed_offset=off,
                    committed_metadata=metadata,
                    committed_leader_epoch=3,
                )
            )
        req = OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            group_instance_id=instance,
            retention_time_ms=retention,
            topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(
                    name=t, topic_id=self.topics.get(t, (uuid.UUID(int=0), 0))[0], partitions=ps
                )
                for t, ps in by_topic.items()
            ],
        )
        resp: OffsetCommitResponse = self.call("offset_commit", req, version).response
        return {
            (t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions
        }

    def fetch(
        self, group: str, partitions: Mapping[str, list[int]] | None, *, version: int = 8, **kw: Any
    ) -> OffsetFetchResponse:
        if version >= 8:
            topics = (
                None
                if partitions is None
                else [
                    OffsetFetchRequest.OffsetFetchRequestTopics(name=t, partition_indexes=ps)
                    for t, ps in partitions.items()
                ]
            )
            req = OffsetFetchRequest(
                groups=[
                    OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=topics, **kw)
                ]
            )
        else:
            topics_old = (
                None
                if partitions is None
                else [
                    OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                    for t, ps in partitions.items()
                ]
            )
            req = OffsetFetchRequest(group_id=group, topics=topics_old)
        return self.call("offset_fetch", req, version).response

    def committed(self, group: str, topic: str, partition: int) -> int:
        resp = self.fetch(group, {topic: [partition]})
        return resp.groups[0].topics[0].partitions[0].committed_offset

    # -- KIP-848 -------------------------------------------------------------------------

    def cg_heartbeat(self, version: int = 1, **fields_: Any) -> ConsumerGroupHeartbeatResponse:
        req = ConsumerGroupHeartbeatRequest(**fields_)
        return self.call(
            "consumer_group_heartbeat", req, version, client_id="cid", client_host="/1.2.3.4"
        ).response

    # -- introspection -------------------------------------------------------------------

    def classic(self, group: str = "g") -> ClassicGroup:
        g = self.coord._shard.groups[group]
        assert isinstance(g, ClassicGroup)
        return g

    def consumer(self, group: str = "c") -> ConsumerGroup:
        g = self.coord._shard.groups[group]
        assert isinstance(g, ConsumerGroup)
        return g


@dataclass
class FormedGroup:
    generation: int
    leader: str
    members: list[str]
    assignments: dict[str, bytes] = field(default_factory=dict)


def form_group(h: Harness, n: int, group: str = "g", **kw: Any) -> FormedGroup:
    """n members join a fresh group, the leader assigns, everyone syncs: a Stable group."""
    joins = [h.new_member(group, **kw) for _ in range(n)]
    while any(r.pending in h.coord._shard.pending for _, r in joins):
        deadline = h.coord.next_deadline_ms()
        assert deadline is not None
        h.tick(max(deadline - h.now, 0))
    responses = [h.answer(r) for _, r in joins]
    assert all(r is not None and r.error_code == 0 for r in responses), responses
    leader = responses[0].leader
    generation = responses[0].generation_id
    members = [mid for mid, _ in joins]
    plan = {m: assignment({"orders": [i]}) for i, m in enumerate(members)}
    syncs = {m: h.sync(group, m, generation, plan if m == leader else None) for m in members}
    for m, r in syncs.items():
        resp = h.answer(r)
        assert resp is not None and resp.error_code == 0, resp
        assert resp.assignment == plan[m]
    return FormedGroup(generation, leader, members, plan)


def durable_state(coord: GroupCoordinator) -> dict[str, Any]:
    """What the records capture: offsets, Stable/Empty classic groups, KIP-848 groups."""
    shard = coord._shard
    out: dict[str, Any] = {"offsets": coord._offsets.offsets}
    for gid, g in shard.groups.items():
        if isinstance(g, ClassicGroup):
            out[gid] = (
                g.state,
                g.generation_id,
                g.protocol_type,
                g.protocol_name,
                g.leader_id,
                {
                    m.member_id: (
                        m.group_instance_id,
                        m.client_id,
                        m.client_host,
                        m.session_timeout_ms,
                        m.rebalance_timeout_ms,
                        m.metadata(g.protocol_name) if g.protocol_name else None,
                        m.assignment,
                    )
                    for m in g.members.values()
                },
            )
        else:
            out[gid] = {f.name: getattr(g, f.name) for f in fields(g)}
    return out


def join_response(h: Harness, result: Result) -> JoinGroupResponse:
    resp = h.answer(result)
    assert isinstance(resp, JoinGroupResponse), resp
    return resp


def sync_response(h: Harness, result: Result) -> SyncGroupResponse:
    resp = h.answer(result)
    assert isinstance(resp, SyncGroupResponse), resp
    return resp
