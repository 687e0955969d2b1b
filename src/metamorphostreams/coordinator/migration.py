"""KIP-848's online migration between classic and consumer groups (Kafka's
GroupMetadataManager: convertToConsumerGroup, convertToClassicGroup and the
classicGroup{Join,Sync,Heartbeat,Leave}ToConsumerGroup handlers).

Upgrade: a consumer-protocol member (ConsumerGroupHeartbeat, epoch 0) joining a non-empty
classic group that uses the consumer embedded protocol converts it in place, when
``group.consumer.migration.policy`` allows it. The classic group is tombstoned and the
consumer group written in full: every classic member becomes a member at the group's
generation, Stable, with its last assignment as current and target assignment, and keeps
its JoinGroup protocols and session timeout (ClassicMemberMetadata). Parked JoinGroup and
SyncGroup requests are answered REBALANCE_IN_PROGRESS so their clients rejoin.

Classic members of a consumer group keep speaking JoinGroup/SyncGroup/Heartbeat/LeaveGroup:
a JoinGroup runs the member's heartbeat steps (subscription, target assignment, one
reconciliation step with the partitions its subscription says it owns) and answers at once
with the member epoch as generation and no member list (never the leader); SyncGroup gives
its current assignment in the consumer protocol's format; Heartbeat answers
REBALANCE_IN_PROGRESS while the member has something to catch up with. Missing the join or
sync deadline (its rebalance timeout) or its session fences it.

Downgrade: when the member being fenced is the last consumer-protocol member and others
remain, the consumer group is tombstoned and a Stable classic group written at generation
= group epoch, each member with its target assignment; then a rebalance starts. Not
task-safe.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from metamorphostreams.protocol._generated.consumer_protocol_assignment import (
    ConsumerProtocolAssignment,
)
from metamorphostreams.protocol._generated.consumer_protocol_subscription import (
    ConsumerProtocolSubscription,
)
from metamorphostreams.protocol._generated.join_group import JoinGroupResponse
from metamorphostreams.protocol._generated.leave_group import LeaveGroupResponse
from metamorphostreams.protocol._generated.sync_group import SyncGroupResponse
from metamorphostreams.protocol._primitives import Reader, Writer
from metamorphostreams.protocol.errors import ErrorCode, KafkaProtocolError

from ._shard import GroupError, Shard
from .classic import MEMBER_ID_REQUIRED_VERSION, UNKNOWN_MEMBER_ID, ClassicGroupManager, JoinRequest
from .classic_group import CONSUMER_PROTOCOL_TYPE, ClassicGroup, ClassicGroupMember
from .classic_group import ClassicGroupState as State
from .consumer import ConsumerGroupManager, Records
from .consumer_group import (
    ConsumerGroup,
    ConsumerGroupMember,
    MemberState,
    OwnedPartitions,
)
from .records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
    GROUP_METADATA_KEY,
    Assignment,
    ClassicMemberMetadata,
    ConsumerGroupMetadataValue,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue,
    RecordKey,
)

MAX_ASSIGNMENT_VERSION = 3  # ConsumerProtocolAssignment versions 0-3


class Migration:
    """Converts groups between the two protocols and serves classic members of consumer
    groups. Shares the shard and both managers. Not task-safe."""

    def __init__(
        self, shard: Shard, classic: ClassicGroupManager, consumer: ConsumerGroupManager
    ) -> None:
        self.shard = shard
        self.config = shard.config
        self.classic = classic
        self.consumer = consumer

    # -- upgrade -------------------------------------------------------------------------

    def can_upgrade(self, group: ClassicGroup) -> bool:
        return (
            self.config.upgrade_enabled
            and group.uses_consumer_protocol()
            and len(group.members) <= self.config.group_consumer_max_size
        )

    def upgrade(self, classic: ClassicGroup, records: Records) -> ConsumerGroup:
        """The consumer group ``classic`` becomes; its records are appended to ``records``
        (the group is materialised when they are replayed)."""
        gid = classic.group_id
        try:
            group = self._from_classic(classic)
        except (KafkaProtocolError, ValueError):
            raise GroupError(
                ErrorCode.GROUP_ID_NOT_FOUND,
                f"Cannot upgrade the classic group {gid} to consumer group because the "
                "embedded consumer protocol is malformed.",
            ) from None
        for member in list(classic.members.values()):
            rejoin = JoinGroupResponse(
                member_id=member.member_id, error_code=ErrorCode.REBALANCE_IN_PROGRESS
            )
            self.classic.answer_join(classic, member, rejoin)
            self.classic.answer_sync(
                member, SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS)
            )
        self.classic.cancel_timers(classic)
        records.append((RecordKey(GROUP_METADATA_KEY, gid), None))
        members = list(group.members.values())
        records += [
            (
                RecordKey(CONSUMER_GROUP_MEMBER_METADATA_KEY, gid, member_id=m.member_id),
                m.metadata_value(),
            )
            for m in members
        ]
        records.append(
            (
                RecordKey(CONSUMER_GROUP_METADATA_KEY, gid),
                ConsumerGroupMetadataValue(group.group_epoch),
            )
        )
        records += [
            (
                RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, gid, member_id=m.member_id),
                ConsumerGroupTargetAssignmentMemberValue(group.target_assignment[m.member_id]),
            )
            for m in members
        ]
        records.append(
            (
                RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY, gid),
                ConsumerGroupTargetAssignmentMetadataValue(group.assignment_epoch),
            )
        )
        records += [
            (
                RecordKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, gid, member_id=m.member_id),
                m.assignment_value(),
            )
            for m in members
        ]
        for m in members:
            assert m.classic is not None
            self.consumer.schedule_session_timeout(gid, m.member_id, m.classic.session_timeout_ms)
        return group

    def _from_classic(self, classic: ClassicGroup) -> ConsumerGroup:
        ids = {name: topic_id for name, (topic_id, _) in self.shard.metadata().items()}
        generation = classic.generation_id
        group = ConsumerGroup(classic.group_id, group_epoch=generation, assignment_epoch=generation)
        for cm in classic.members.values():
            protocol = classic.protocol_name or cm.protocols[0][0]
            subscription = decode_subscription(cm.metadata(protocol))
            assigned = decode_assignment(cm.assignment, ids)
            member = ConsumerGroupMember(
                cm.member_id,
                member_epoch=generation,
                previous_member_epoch=generation,
                state=MemberState.STABLE,
                instance_id=cm.group_instance_id,
                rack_id=subscription.rack_id,
                rebalance_timeout_ms=cm.rebalance_timeout_ms,
                client_id=cm.client_id,
                client_host=cm.client_host,
                subscribed_topic_names=frozenset(subscription.topics or ()),
                assigned=assigned,
                classic=ClassicMemberMetadata(cm.session_timeout_ms, tuple(cm.protocols)),
            )
            group.target_assignment[cm.member_id] = assigned
            group.update_member(member)
        return group

    # -- downgrade -----------------------------------------------------------------------

    def can_downgrade(self, group: ConsumerGroup, leaving_id: str) -> bool:
        return (
            group.all_classic_except(leaving_id)
            and len(group.members) > 1
            and self.config.downgrade_enabled
            and len(group.members) - 1 <= self.config.group_max_size
        )

    def downgrade(self, group: ConsumerGroup, leaving_id: str) -> None:
        """``leaving_id`` leaves and the classic members left form a classic group."""
        shard, gid = self.shard, group.group_id
        names = {topic_id: name for name, (topic_id, _) in shard.metadata().items()}
        classic = ClassicGroup(
            gid,
            state=State.STABLE,
            current_state_timestamp=shard.now_ms,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            generation_id=group.group_epoch,
        )
        for m in group.members.values():
            if m.member_id == leaving_id or m.classic is None:
                continue
            classic.add(
                ClassicGroupMember(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.client_host,
                    m.rebalance_timeout_ms,
                    m.classic.session_timeout_ms,
                    CONSUMER_PROTOCOL_TYPE,
                    list(m.classic.supported_protocols),
                )
            )
        classic.protocol_name = classic.select_protocol()
        classic.subscribed_topics = classic.compute_subscribed_topics()
        for cm in classic.members.values():
            version = assignment_version(cm.metadata(classic.protocol_name))
            cm.assignment = encode_assignment(
                group.target_assignment.get(cm.member_id, {}), names, version
            )
        for m in list(group.members.values()):
            self.consumer.cancel_timers(gid, m.member_id)
        for key in group.tombstone_keys():
            shard.write(key, None)
        # The classic group is kept as built (Kafka does not replay this record either).
        shard.groups[gid] = classic
        shard.write(RecordKey(GROUP_METADATA_KEY, gid), classic.to_record(), apply=False)
        for cm in classic.members.values():
            self.classic.reschedule_heartbeat(classic, cm)
        self.classic.prepare_rebalance(classic)

    # -- classic requests to a consumer group --------------------------------------------

    def join(self, group: ConsumerGroup, req: JoinRequest, pending_id: int) -> None:
        shard, gid = self.shard, group.group_id
        unknown = req.member_id == UNKNOWN_MEMBER_ID
        member_id = shard.new_uuid_string() if unknown else req.member_id
        records: Records = []
        try:
            if (
                len(group.members) >= self.config.group_consumer_max_size
                and member_id not in group.members
            ):
                raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED)
            if not group.classic_protocols_supported(
                req.protocol_type, {n for n, _ in req.protocols}
            ):
                raise GroupError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            if (
                unknown
                and req.group_instance_id is None
                and req.api_version >= MEMBER_ID_REQUIRED_VERSION
            ):
                shard.complete(
                    pending_id,
                    JoinGroupResponse(member_id=member_id, error_code=ErrorCode.MEMBER_ID_REQUIRED),
                )
                return
            joining = unknown if req.group_instance_id is not None else True
            member, replaced = self.consumer.member_for(
                group, member_id, -1, req.group_instance_id, [], joining, records, classic=True
            )
            try:
                subscription = decode_subscription(req.protocols[0][1])
            except (KafkaProtocolError, ValueError):
                raise GroupError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL) from None
            ids = {name: topic_id for name, (topic_id, _) in shard.metadata().items()}
            owned: OwnedPartitions = [
                (ids[tp.topic], list(tp.partitions))
                for tp in subscription.owned_partitions or ()
                if tp.topic in ids
            ]
            updated = replace(
                member,
                instance_id=req.group_instance_id or member.instance_id,
                rack_id=subscription.rack_id or member.rack_id,
                rebalance_timeout_ms=(
                    req.rebalance_timeout_ms
                    if req.rebalance_timeout_ms != -1
                    else member.rebalance_timeout_ms
                ),
                subscribed_topic_names=frozenset(subscription.topics or ()),
                client_id=req.client_id,
                client_host=req.client_host,
                classic=ClassicMemberMetadata(req.session_timeout_ms, tuple(req.protocols)),
            )
            reconciled = self.consumer.update_and_reconcile(
                group, member, updated, replaced, owned, records
            )
        except GroupError as e:
            shard.complete(
                pending_id, JoinGroupResponse(member_id=req.member_id, error_code=e.code)
            )
            return
        for key, value in records:
            shard.write(key, value)
        shard.timers.cancel(("cg-join", gid, member_id))
        self.consumer.schedule_session_timeout(gid, member_id, req.session_timeout_ms)
        self.consumer.schedule_fence("cg-sync", gid, member_id, req.rebalance_timeout_ms)
        shard.complete(
            pending_id,
            JoinGroupResponse(
                member_id=member_id,
                generation_id=reconciled.member_epoch,
                protocol_type=CONSUMER_PROTOCOL_TYPE,
                protocol_name=req.protocols[0][0],
                leader="",
                members=[],
            ),
        )

    def sync(
        self,
        group: ConsumerGroup,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        pending_id: int,
    ) -> None:
        shard, gid = self.shard, group.group_id
        try:
            member = self._classic_member(group, member_id, instance_id, generation_id)
            assert member.classic is not None
            first = member.classic.supported_protocols[0]
            if (protocol_type is not None and protocol_type != CONSUMER_PROTOCOL_TYPE) or (
                protocol_name is not None and protocol_name != first[0]
            ):
                raise GroupError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            if (
                group.group_epoch > member.member_epoch
                and member.state is not MemberState.UNREVOKED_PARTITIONS
            ):
                self._rejoin_deadline(gid, member)
                raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS)
        except GroupError as e:
            shard.complete(pending_id, SyncGroupResponse(error_code=e.code))
            return
        shard.timers.cancel(("cg-sync", gid, member.member_id))
        self.consumer.schedule_session_timeout(
            gid, member.member_id, member.classic.session_timeout_ms
        )
        names = {topic_id: name for name, (topic_id, _) in shard.metadata().items()}
        assignment = encode_assignment(member.assigned, names, assignment_version(first[1]))
        shard.complete(
            pending_id,
            SyncGroupResponse(
                protocol_type=protocol_type, protocol_name=protocol_name, assignment=assignment
            ),
        )

    def heartbeat(
        self, group: ConsumerGroup, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        gid = group.group_id
        try:
            member = self._classic_member(group, member_id, instance_id, generation_id)
        except GroupError as e:
            return e.code
        assert member.classic is not None
        self.consumer.schedule_session_timeout(
            gid, member.member_id, member.classic.session_timeout_ms
        )
        if (
            member.member_epoch < group.group_epoch
            or member.state is MemberState.UNREVOKED_PARTITIONS
            or (
                member.state is MemberState.UNRELEASED_PARTITIONS
                and not group.waiting_on_unreleased_partition(member)
            )
        ):
            self._rejoin_deadline(gid, member)
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(
        self, group: ConsumerGroup, identities: list[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[LeaveGroupResponse.MemberResponse]]:
        answers = []
        leaving: dict[str, ConsumerGroupMember] = {}
        for member_id, instance_id in identities:
            code = ErrorCode.NONE
            try:
                if instance_id is None:
                    member = self._known(group, member_id)
                else:
                    member = self._static(group, instance_id)
                    if member_id != UNKNOWN_MEMBER_ID and member.member_id != member_id:
                        raise GroupError(ErrorCode.FENCED_INSTANCE_ID)
                    member_id = member.member_id
                if not member.uses_classic_protocol:
                    raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
                leaving[member.member_id] = member
            except GroupError as e:
                code = e.code
            answers.append(
                LeaveGroupResponse.MemberResponse(
                    member_id=member_id, group_instance_id=instance_id, error_code=code
                )
            )
        if leaving:
            self.consumer.remove_members(group, list(leaving.values()))
        return ErrorCode.NONE, answers

    # -- helpers -------------------------------------------------------------------------

    def _rejoin_deadline(self, group_id: str, member: ConsumerGroupMember) -> None:
        if ("cg-join", group_id, member.member_id) not in self.shard.timers:
            self.consumer.schedule_fence(
                "cg-join", group_id, member.member_id, member.rebalance_timeout_ms
            )

    @staticmethod
    def _known(group: ConsumerGroup, member_id: str) -> ConsumerGroupMember:
        member = group.members.get(member_id)
        if member is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
        return member

    @staticmethod
    def _static(group: ConsumerGroup, instance_id: str) -> ConsumerGroupMember:
        member = group.static_member(instance_id)
        if member is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
        return member

    def _classic_member(
        self, group: ConsumerGroup, member_id: str, instance_id: str | None, generation_id: int
    ) -> ConsumerGroupMember:
        if instance_id is None:
            member = self._known(group, member_id)
        else:
            member = self._static(group, instance_id)
            if member.member_id != member_id:
                raise GroupError(ErrorCode.FENCED_INSTANCE_ID)
        if not member.uses_classic_protocol:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
        if generation_id != member.member_epoch:
            raise GroupError(ErrorCode.ILLEGAL_GENERATION)
        return member


# -- the consumer embedded protocol ------------------------------------------------------


def decode_subscription(data: bytes) -> ConsumerProtocolSubscription:
    """A ConsumerProtocolSubscription of any version (fields of newer versions: defaults)."""
    r = Reader(data)
    version = r.int16()
    return ConsumerProtocolSubscription.read(r, min(version, 3))


def assignment_version(subscription: bytes) -> int:
    """The assignment version that answers a subscription (Kafka: the same version)."""
    if len(subscription) < 2:
        return 0
    return max(0, min(int.from_bytes(subscription[:2], "big", signed=True), MAX_ASSIGNMENT_VERSION))


def decode_assignment(data: bytes, ids: dict[str, uuid.UUID]) -> Assignment:
    """A ConsumerProtocolAssignment as topic ids -> partitions (unknown topics dropped)."""
    if not data:
        return {}
    r = Reader(data)
    version = r.int16()
    decoded = ConsumerProtocolAssignment.read(r, min(version, MAX_ASSIGNMENT_VERSION))
    out: dict[uuid.UUID, frozenset[int]] = {}
    for tp in decoded.assigned_partitions or ():
        if tp.topic in ids and tp.partitions:
            out[ids[tp.topic]] = out.get(ids[tp.topic], frozenset()) | frozenset(tp.partitions)
    return out


def encode_assignment(assignment: Assignment, names: dict[uuid.UUID, str], version: int) -> bytes:
    w = Writer()
    w.int16(version)
    ConsumerProtocolAssignment(
        assigned_partitions=[
            ConsumerProtocolAssignment.TopicPartition(topic=names[t], partitions=sorted(ps))
            for t, ps in sorted(assignment.items(), key=lambda kv: names.get(kv[0], ""))
            if t in names
        ]
    ).write(w, version)
    return bytes(w.getvalue())
