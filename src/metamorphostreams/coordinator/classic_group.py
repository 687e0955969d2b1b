"""A classic (JoinGroup/SyncGroup) group: members, protocol selection and its state table."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from metamorphostreams.protocol._generated.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from metamorphostreams.protocol._generated.describe_groups import DescribeGroupsResponse
from metamorphostreams.protocol._generated.join_group import JoinGroupResponse
from metamorphostreams.protocol._primitives import Reader
from metamorphostreams.protocol.errors import ErrorCode, KafkaProtocolError

from ._shard import GroupError
from .records import GROUP_METADATA_KEY, GroupMetadataValue, MemberMetadata, RecordKey

CONSUMER_PROTOCOL_TYPE = "consumer"  # ConsumerProtocol.PROTOCOL_TYPE


class ClassicGroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class GroupEvent(enum.Enum):
    PREPARE_REBALANCE = "prepare-rebalance"  # a member joins, changes, leaves or expires
    JOIN_COMPLETED = "join-completed"  # the join barrier closed with members left
    JOIN_COMPLETED_EMPTY = "join-completed-empty"  # ... and with nobody left
    ASSIGNMENT_STORED = "assignment-stored"  # the leader's SyncGroup assignment is persisted
    UNLOAD = "unload"  # the coordinator gives the partition up


S = ClassicGroupState
TRANSITIONS: dict[tuple[ClassicGroupState, GroupEvent], ClassicGroupState] = {
    (S.EMPTY, GroupEvent.PREPARE_REBALANCE): S.PREPARING_REBALANCE,
    (S.STABLE, GroupEvent.PREPARE_REBALANCE): S.PREPARING_REBALANCE,
    (S.COMPLETING_REBALANCE, GroupEvent.PREPARE_REBALANCE): S.PREPARING_REBALANCE,
    (S.PREPARING_REBALANCE, GroupEvent.JOIN_COMPLETED): S.COMPLETING_REBALANCE,
    (S.PREPARING_REBALANCE, GroupEvent.JOIN_COMPLETED_EMPTY): S.EMPTY,
    (S.COMPLETING_REBALANCE, GroupEvent.ASSIGNMENT_STORED): S.STABLE,
    **{(state, GroupEvent.UNLOAD): S.DEAD for state in ClassicGroupState},
}


@dataclass
class ClassicGroupMember:
    """One member. ``awaiting_join``/``awaiting_sync`` hold the pending id of a parked request."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    awaiting_join: int | None = None
    awaiting_sync: int | None = None
    is_new: bool = False

    def metadata(self, protocol_name: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        raise ValueError(f"member {self.member_id} does not support protocol {protocol_name}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {candidates}")

    def has_satisfied_heartbeat(self) -> bool:
        # New members can expire while parked; others waiting on the barrier are alive.
        if self.is_new:
            return False
        return self.awaiting_join is not None or self.awaiting_sync is not None

    def describe(self, protocol_name: str | None) -> DescribeGroupsResponse.DescribedGroupMember:
        return DescribeGroupsResponse.DescribedGroupMember(
            member_id=self.member_id,
            group_instance_id=self.group_instance_id,
            client_id=self.client_id,
            client_host=self.client_host,
            member_metadata=b"" if protocol_name is None else self.metadata(protocol_name),
            member_assignment=self.assignment,
        )


@dataclass
class ClassicGroup:
    """Kafka's ClassicGroup: the in-memory state of one classic group.

    Invariants: ``num_awaiting_join`` counts members with a parked JoinGroup;
    ``supported_protocols`` counts, per protocol name, the members supporting it; a static
    member's instance id maps to its member id in ``static_members``. Members keep join
    order (the first one is leader when no leader is left). Not task-safe.
    """

    group_id: str
    state: ClassicGroupState = ClassicGroupState.EMPTY
    previous_state: ClassicGroupState = ClassicGroupState.DEAD
    current_state_timestamp: int | None = None
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, ClassicGroupMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_join_members: set[str] = field(default_factory=set)
    pending_sync_members: set[str] = field(default_factory=set)
    supported_protocols: Counter[str] = field(default_factory=Counter)
    num_awaiting_join: int = 0
    subscribed_topics: set[str] | None = None
    new_member_added: bool = False

    # -- state ------------------------------------------------------------------------

    def transition(self, event: GroupEvent, now_ms: int) -> None:
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise AssertionError(
                f"group {self.group_id}: no transition from {self.state} on {event}"
            )
        self.previous_state = self.state
        self.state = target
        self.current_state_timestamp = now_ms

    def can_rebalance(self) -> bool:
        return (self.state, GroupEvent.PREPARE_REBALANCE) in TRANSITIONS

    def is_simple(self) -> bool:
        """A group made by offset commits alone: no protocol, no members."""
        return self.protocol_type is None and not self.members and not self.pending_join_members

    def uses_consumer_protocol(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    # -- membership -------------------------------------------------------------------

    def add(self, member: ClassicGroupMember, pending_id: int | None = None) -> None:
        if member.group_instance_id is not None:
            if member.group_instance_id in self.static_members:
                raise AssertionError(f"static member {member.group_instance_id} already present")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(name for name, _ in member.protocols)
        member.awaiting_join = pending_id
        if pending_id is not None:
            self.num_awaiting_join += 1
        self.pending_join_members.discard(member.member_id)

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(name for name, _ in member.protocols)
            if member.awaiting_join is not None:
                self.num_awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.discard(member_id)
        self.pending_sync_members.discard(member_id)

    def update_member(
        self,
        member: ClassicGroupMember,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        pending_id: int | None,
    ) -> None:
        self.supported_protocols.subtract(name for name, _ in member.protocols)
        member.protocols = protocols
        self.supported_protocols.update(name for name, _ in protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if pending_id is not None and member.awaiting_join is None:
            self.num_awaiting_join += 1
        elif pending_id is None and member.awaiting_join is not None:
            self.num_awaiting_join -= 1
        member.awaiting_join = pending_id

    def replace_static_member(
        self, instance_id: str, old_member_id: str, new_member_id: str
    ) -> ClassicGroupMember:
        """Give a static member's slot to a new member id; the caller fences the old requests."""
        old = self.members.pop(old_member_id)
        new = ClassicGroupMember(
            new_member_id,
            old.group_instance_id,
            old.client_id,
            old.client_host,
            old.rebalance_timeout_ms,
            old.session_timeout_ms,
            old.protocol_type,
            old.protocols,
            old.assignment,
        )
        if old.awaiting_join is not None:
            self.num_awaiting_join -= 1
        self.members[new_member_id] = new
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[instance_id] = new_member_id
        return new

    def elect_joined_leader(self) -> bool:
        """Make sure the leader is a member that rejoined; False when nobody did."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join is not None:
            return True
        for member in self.members.values():
            if member.awaiting_join is not None:
                self.leader_id = member.member_id
                return True
        return False

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_awaiting_join and not self.pending_join_members

    def not_yet_rejoined(self) -> list[ClassicGroupMember]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def validate_member(self, member_id: str, instance_id: str | None) -> ClassicGroupMember:
        if instance_id is not None:
            existing = self.static_members.get(instance_id)
            if existing is None:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
            if existing != member_id:
                raise GroupError(ErrorCode.FENCED_INSTANCE_ID)
        member = self.members.get(member_id)
        if member is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
        return member

    # -- protocols --------------------------------------------------------------------

    def supports_protocols(self, protocol_type: str, names: set[str]) -> bool:
        if self.state is ClassicGroupState.EMPTY:
            return protocol_type != "" and bool(names)
        return self.protocol_type == protocol_type and any(
            self.supported_protocols[n] == len(self.members) for n in names
        )

    def select_protocol(self) -> str:
        candidates = {n for n, c in self.supported_protocols.items() if c == len(self.members)}
        votes = Counter(m.vote(candidates) for m in self.members.values())
        return max(votes.items(), key=lambda kv: kv[1])[0]

    def compute_subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, from consumer-protocol metadata; None if unknown."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        try:
            for member in self.members.values():
                r = Reader(member.metadata(self.protocol_name))
                r.int16()  # every version starts with the v0 layout: read as v0
                sub = ConsumerProtocolSubscription.read(r, 0)
                topics.update(sub.topics or ())
        except (KafkaProtocolError, ValueError):
            return None
        return topics

    def is_subscribed_to_topic(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            return self.uses_consumer_protocol()
        return topic in self.subscribed_topics

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition(GroupEvent.JOIN_COMPLETED, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition(GroupEvent.JOIN_COMPLETED_EMPTY, now_ms)
        self.pending_sync_members.clear()

    # -- views ------------------------------------------------------------------------

    def join_response_members(self) -> list[JoinGroupResponse.JoinGroupResponseMember]:
        return [
            JoinGroupResponse.JoinGroupResponseMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                metadata=m.metadata(self.protocol_name),
            )
            for m in self.members.values()
        ]

    def to_record(self, assignments: dict[str, bytes] | None = None) -> GroupMetadataValue:
        """The GroupMetadataValue for this group; ``assignments`` overrides the members'."""
        members = tuple(
            MemberMetadata(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(self.protocol_name),
                m.assignment if assignments is None else assignments[m.member_id],
            )
            for m in self.members.values()
        )
        return GroupMetadataValue(
            protocol_type=self.protocol_type or "",
            generation=self.generation_id,
            protocol=self.protocol_name,
            leader=self.leader_id,
            current_state_timestamp=(
                -1 if self.current_state_timestamp is None else self.current_state_timestamp
            ),
            members=members,
        )

    @classmethod
    def from_record(cls, group_id: str, value: GroupMetadataValue) -> ClassicGroup:
        """The group as Kafka loads it: Stable with its members, or Empty."""
        group = cls(
            group_id,
            state=ClassicGroupState.STABLE if value.members else ClassicGroupState.EMPTY,
            current_state_timestamp=(
                None if value.current_state_timestamp == -1 else value.current_state_timestamp
            ),
            protocol_type=value.protocol_type or None,
            protocol_name=value.protocol,
            generation_id=value.generation,
            leader_id=value.leader,
        )
        for m in value.members:
            rebalance_timeout = (
                m.session_timeout if m.rebalance_timeout == -1 else m.rebalance_timeout
            )
            group.add(
                ClassicGroupMember(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    rebalance_timeout,
                    m.session_timeout,
                    value.protocol_type,
                    [(value.protocol or "", m.subscription)],
                    m.assignment,
                )
            )
        group.leader_id = value.leader
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    def tombstone_keys(self) -> list[RecordKey]:
        return [RecordKey(GROUP_METADATA_KEY, self.group_id)]
