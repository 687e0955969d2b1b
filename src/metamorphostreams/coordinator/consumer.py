"""The KIP-848 consumer protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe (Kafka's
GroupMetadataManager, consumer half).

A heartbeat computes the records that describe the new state (member metadata, subscription
metadata, group epoch, target assignment, current assignment), then applies them through
``apply``, the replay path: a live coordinator and one rebuilt from the log are the same.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from metamorphostreams.protocol._generated.consumer_group_describe import (
    ConsumerGroupDescribeResponse,
)
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from metamorphostreams.protocol.errors import ErrorCode

from ._shard import GroupError, Shard
from .assignors import ASSIGNORS, MemberSpec
from .classic_group import ClassicGroup, ClassicGroupState
from .consumer_group import (
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    ConsumerGroup,
    ConsumerGroupMember,
    MemberState,
    OwnedPartitions,
    compile_regex,
    compute_subscription_metadata,
    new_consumer_group,
    reconcile,
)
from .records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_PARTITION_METADATA_KEY,
    CONSUMER_GROUP_REGULAR_EXPRESSION_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
    Assignment,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataValue,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue,
    RecordKey,
    TopicMetadata,
)
from .regexes import RegexResolver

MEMBER_ID_REQUIRED_VERSION = 1  # ConsumerGroupHeartbeat v1+: the client makes its member id
CONSUMER_MEMBER_TYPE = 1  # ConsumerGroupDescribe v1 MemberType: uses the consumer protocol
CLASSIC_MEMBER_TYPE = 0  # ... a classic member of a consumer group (online migration)
_REJOIN = "The member must abandon all its partitions and rejoin."

Records = list[tuple[RecordKey, Any]]

if TYPE_CHECKING:
    from .migration import Migration


class ConsumerGroupManager:
    """Runs KIP-848 groups over the shard. Not task-safe."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.config = shard.config
        self.migration: Migration | None = None  # set by the coordinator
        self.regexes = RegexResolver(self)

    def group(self, group_id: str) -> ConsumerGroup | None:
        group = self.shard.groups.get(group_id)
        return group if isinstance(group, ConsumerGroup) else None

    # -- replay --------------------------------------------------------------------------

    def _persisted_group(self, group_id: str, create: bool) -> ConsumerGroup | None:
        group = self.shard.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            return group
        if group is not None and not (isinstance(group, ClassicGroup) and group.is_simple()):
            raise AssertionError(f"group {group_id} is not a consumer group")
        if not create:
            return None
        # A simple group only holds offsets committed before; the consumer group takes over.
        new = ConsumerGroup(group_id)
        self.shard.groups[group_id] = new
        return new

    def apply(self, key: RecordKey, value: Any | None) -> None:
        """Replay one ConsumerGroup* record."""
        kind, gid, mid = key.version, key.group_id, key.member_id
        group = self._persisted_group(gid, create=value is not None)
        if group is None:
            return
        if kind == CONSUMER_GROUP_METADATA_KEY:
            if value is not None:
                group.group_epoch = value.epoch
            elif group.members or group.target_assignment:
                raise AssertionError(f"group {gid} deleted while it still has members")
            else:
                del self.shard.groups[gid]
        elif kind == CONSUMER_GROUP_REGULAR_EXPRESSION_KEY:
            if value is None:
                group.resolved_regexes.pop(key.regex, None)
            else:
                group.resolved_regexes[key.regex] = value
        elif kind == CONSUMER_GROUP_PARTITION_METADATA_KEY:
            group.subscription_metadata = (
                {} if value is None else {t.topic_name: t for t in value.topics}
            )
        elif kind == CONSUMER_GROUP_MEMBER_METADATA_KEY:
            old = group.members.get(mid)
            if value is not None:
                group.update_member((old or ConsumerGroupMember(mid)).with_metadata(value))
            elif old is not None:
                group.remove_member(mid)
        elif kind == CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY:
            group.assignment_epoch = -1 if value is None else value.assignment_epoch
        elif kind == CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY:
            if value is None:
                group.target_assignment.pop(mid, None)
            else:
                group.target_assignment[mid] = dict(value.topic_partitions)
        elif kind == CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY:
            old = group.members.get(mid)
            if value is not None:
                group.update_member((old or ConsumerGroupMember(mid)).with_assignment(value))
            elif old is not None:
                left = replace(
                    old,
                    member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                    previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                    assigned={},
                    pending_revocation={},
                )
                group.update_member(left)

    def _write_all(self, records: Records) -> None:
        for key, value in records:
            self.shard.write(key, value)

    # -- timers --------------------------------------------------------------------------

    def schedule_session_timeout(
        self, group_id: str, member_id: str, timeout_ms: int | None = None
    ) -> None:
        """(Re)start the member's session; classic members use their own session timeout."""
        if timeout_ms is None:
            timeout_ms = self.config.group_consumer_session_timeout_ms
        deadline = self.shard.now_ms + timeout_ms
        task = lambda: self._fence_by_id(group_id, member_id, None)  # noqa: E731
        self.shard.timers.schedule(("cg-session", group_id, member_id), deadline, task)

    def schedule_fence(self, kind: str, group_id: str, member_id: str, delay_ms: int) -> None:
        """A classic member's join or sync deadline: missing it fences the member."""
        task = lambda: self._fence_by_id(group_id, member_id, None)  # noqa: E731
        self.shard.timers.schedule((kind, group_id, member_id), self.shard.now_ms + delay_ms, task)

    def _schedule_rebalance_timeout(self, group_id: str, member: ConsumerGroupMember) -> None:
        deadline = self.shard.now_ms + member.rebalance_timeout_ms
        member_id, epoch = member.member_id, member.member_epoch
        task = lambda: self._fence_by_id(group_id, member_id, epoch)  # noqa: E731
        self.shard.timers.schedule(("cg-rebalance", group_id, member_id), deadline, task)

    def cancel_timers(self, group_id: str, member_id: str) -> None:
        for kind in ("cg-session", "cg-rebalance", "cg-join", "cg-sync"):
            self.shard.timers.cancel((kind, group_id, member_id))

    def _fence_by_id(self, group_id: str, member_id: str, only_epoch: int | None) -> None:
        group = self.group(group_id)
        member = None if group is None else group.members.get(member_id)
        if group is None or member is None:
            return
        if only_epoch is not None and member.member_epoch != only_epoch:
            return  # it moved on from the epoch it had to leave within the rebalance timeout
        self._fence(group, member)

    def on_loaded(self, group: ConsumerGroup) -> None:
        self.regexes.on_loaded(group)
        for member in group.members.values():
            classic = member.classic
            timeout = None if classic is None else classic.session_timeout_ms
            self.schedule_session_timeout(group.group_id, member.member_id, timeout)
            if member.state is MemberState.UNREVOKED_PARTITIONS:
                self._schedule_rebalance_timeout(group.group_id, member)

    # -- fencing -------------------------------------------------------------------------

    def _member_removal(self, gid: str, mid: str) -> Records:
        return [
            (RecordKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, gid, member_id=mid), None),
            (RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, gid, member_id=mid), None),
            (RecordKey(CONSUMER_GROUP_MEMBER_METADATA_KEY, gid, member_id=mid), None),
        ]

    def _fence(self, group: ConsumerGroup, member: ConsumerGroupMember) -> None:
        """Remove a member and bump the group epoch: the others get its partitions next.
        When only classic members are left, the group may become classic again."""
        if self.migration is not None and self.migration.can_downgrade(group, member.member_id):
            self.migration.downgrade(group, member.member_id)
            return
        self.remove_members(group, [member])

    def remove_members(self, group: ConsumerGroup, leaving: list[ConsumerGroupMember]) -> None:
        gid = group.group_id
        gone = {m.member_id for m in leaving}
        records: Records = []
        for m in leaving:
            records += self._member_removal(gid, m.member_id)
            self.cancel_timers(gid, m.member_id)
        self.regexes.on_member_removed(group, gone, records)
        others = [m for m in group.members.values() if m.member_id not in gone]
        cluster = self.shard.metadata()
        topics: set[str] = set()
        for m in others:
            topics |= m.subscribed_topics(group.resolved_regexes)
        metadata = compute_subscription_metadata(topics, cluster)
        if metadata != group.subscription_metadata:
            records.append(self.partition_metadata_record(gid, metadata))
        epoch = group.group_epoch + 1
        records.append(
            (RecordKey(CONSUMER_GROUP_METADATA_KEY, gid), ConsumerGroupMetadataValue(epoch))
        )
        self._write_all(records)

    @staticmethod
    def partition_metadata_record(
        gid: str, metadata: dict[str, TopicMetadata]
    ) -> tuple[RecordKey, Any]:
        value = ConsumerGroupPartitionMetadataValue(tuple(metadata.values()))
        return RecordKey(CONSUMER_GROUP_PARTITION_METADATA_KEY, gid), value

    # -- ConsumerGroupHeartbeat ----------------------------------------------------------

    def validate(self, req: ConsumerGroupHeartbeatRequest, version: int) -> None:
        if version >= MEMBER_ID_REQUIRED_VERSION or req.member_epoch > 0 or req.member_epoch == -1:
            _non_empty(req.member_id, "MemberId can't be empty.")
        _non_empty(req.group_id, "GroupId can't be empty.")
        _non_empty(req.instance_id, "InstanceId can't be empty.")
        _non_empty(req.rack_id, "RackId can't be empty.")
        if req.member_epoch == 0:
            if req.rebalance_timeout_ms == -1:
                raise _invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.topic_partitions is None or req.topic_partitions:
                raise _invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise _invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                    "when (re-)joining."
                )
        elif req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if req.instance_id is None:
                raise _invalid("InstanceId can't be null.")
        elif req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise _invalid("MemberEpoch is invalid.")
        if (
            req.server_assignor is not None
            and req.server_assignor not in self.config.group_consumer_assignors
        ):
            raise GroupError(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(self.config.group_consumer_assignors)}.",
            )
        if req.subscribed_topic_regex is not None:
            try:
                compile_regex(req.subscribed_topic_regex)
            except re.error as e:
                raise GroupError(
                    ErrorCode.INVALID_REGULAR_EXPRESSION,
                    f"SubscribedTopicRegex `{req.subscribed_topic_regex}` is not a valid "
                    f"regular expression: {e}.",
                ) from None

    def heartbeat(
        self, req: ConsumerGroupHeartbeatRequest, version: int, client_id: str, client_host: str
    ) -> ConsumerGroupHeartbeatResponse:
        self.validate(req, version)
        if req.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
            return self._leave(req.group_id, req.instance_id, req.member_id, req.member_epoch)
        owned: OwnedPartitions = None
        if req.topic_partitions is not None:
            owned = [(tp.topic_id, list(tp.partitions or ())) for tp in req.topic_partitions]
        return self._heartbeat(req, client_id, client_host, owned)

    def _get_or_create(self, group_id: str, create: bool, records: Records) -> ConsumerGroup:
        group = self.shard.groups.get(group_id)
        if group is None:
            if not create:
                raise GroupError(
                    ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found."
                )
            return new_consumer_group(group_id)  # materialised by replaying the records below
        if isinstance(group, ConsumerGroup):
            return group
        if create and group.state is ClassicGroupState.EMPTY:
            records.extend((key, None) for key in group.tombstone_keys())
            return new_consumer_group(group_id)
        if create and self.migration is not None and self.migration.can_upgrade(group):
            return self.migration.upgrade(group, records)
        raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")

    def _heartbeat(
        self,
        req: ConsumerGroupHeartbeatRequest,
        client_id: str,
        client_host: str,
        owned: OwnedPartitions,
    ) -> ConsumerGroupHeartbeatResponse:
        shard, gid, epoch = self.shard, req.group_id, req.member_epoch
        records: Records = []
        joining = epoch == 0
        group = self._get_or_create(gid, joining, records)
        member_id = req.member_id or shard.new_uuid_string()
        if (
            len(group.members) >= self.config.group_consumer_max_size
            and member_id not in group.members
        ):
            raise GroupError(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                "The consumer group has reached its maximum capacity of "
                f"{self.config.group_consumer_max_size} members.",
            )
        member, replaced = self.member_for(
            group, member_id, epoch, req.instance_id, owned, joining, records
        )

        # 1. The member's metadata; a subscription change bumps the group epoch.
        updated = replace(
            member,
            instance_id=req.instance_id if req.instance_id is not None else member.instance_id,
            rack_id=req.rack_id if req.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=(
                req.rebalance_timeout_ms
                if req.rebalance_timeout_ms != -1
                else member.rebalance_timeout_ms
            ),
            server_assignor=req.server_assignor
            if req.server_assignor is not None
            else member.server_assignor,
            subscribed_topic_names=(
                frozenset(req.subscribed_topic_names)
                if req.subscribed_topic_names is not None
                else member.subscribed_topic_names
            ),
            subscribed_topic_regex=(
                req.subscribed_topic_regex
                if req.subscribed_topic_regex is not None
                else member.subscribed_topic_regex
            ),
            client_id=client_id,
            client_host=client_host,
            classic=None,  # it speaks the consumer protocol now
        )
        reconciled = self.update_and_reconcile(group, member, updated, replaced, owned, records)
        self._write_all(records)
        self.schedule_session_timeout(gid, member_id)

        resp = ConsumerGroupHeartbeatResponse(
            member_id=member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.config.group_consumer_heartbeat_interval_ms,
        )
        full = epoch == 0 or (
            req.rebalance_timeout_ms != -1
            and req.subscribed_topic_names is not None
            and owned is not None
        )
        if full or reconciled.assigned != member.assigned:
            resp.assignment = ConsumerGroupHeartbeatResponse.Assignment(
                topic_partitions=[
                    ConsumerGroupHeartbeatResponse.TopicPartitions(
                        topic_id=t, partitions=sorted(ps)
                    )
                    for t, ps in sorted(reconciled.assigned.items(), key=lambda kv: str(kv[0]))
                ]
            )
        return resp

    def update_and_reconcile(
        self,
        group: ConsumerGroup,
        member: ConsumerGroupMember,
        updated: ConsumerGroupMember,
        replaced: str | None,
        owned: OwnedPartitions,
        records: Records,
    ) -> ConsumerGroupMember:
        """Kafka's three steps for a member's heartbeat (or a classic member's JoinGroup):
        its metadata (a subscription change bumps the group epoch), a new target assignment
        when the group epoch moved past it, one reconciliation step. Appends the records to
        ``records`` and returns the reconciled member."""
        shard, gid, member_id = self.shard, group.group_id, updated.member_id
        bump = shard.groups.get(gid) is not group  # a new group moves past its initial epoch
        if updated != member or member_id not in group.members:
            records.append(
                (
                    RecordKey(CONSUMER_GROUP_MEMBER_METADATA_KEY, gid, member_id=member_id),
                    updated.metadata_value(),
                )
            )
            bump = bump or updated.subscribed_topic_names != member.subscribed_topic_names
        cluster = shard.metadata()
        self.regexes.observe(cluster)
        try:
            bump = self.regexes.maybe_update(group, member, updated, records) or bump
        except re.error as e:
            raise GroupError(
                ErrorCode.INVALID_REGULAR_EXPRESSION,
                f"SubscribedTopicRegex `{updated.subscribed_topic_regex}` is not a valid "
                f"regular expression: {e}.",
            ) from None
        members = {
            m.member_id: m
            for m in group.members.values()
            if m.member_id not in (member_id, replaced)
        }
        members[member_id] = updated
        topics: set[str] = set()
        for m in members.values():
            topics |= m.subscribed_topics(group.resolved_regexes)
        metadata = compute_subscription_metadata(topics, cluster)
        if metadata != group.subscription_metadata:
            records.append(self.partition_metadata_record(gid, metadata))
            bump = True
        group_epoch = group.group_epoch
        if bump:
            group_epoch += 1
            records.append(
                (
                    RecordKey(CONSUMER_GROUP_METADATA_KEY, gid),
                    ConsumerGroupMetadataValue(group_epoch),
                )
            )

        # 2. A new target assignment when the group epoch moved past it.
        if group_epoch > group.assignment_epoch:
            targets = self._compute_targets(group, members, metadata, replaced, cluster)
            for mid in members:
                if targets.get(mid, {}) != group.target_assignment.get(mid) or (
                    mid == member_id and replaced
                ):
                    value = ConsumerGroupTargetAssignmentMemberValue(targets.get(mid, {}))
                    records.append(
                        (
                            RecordKey(
                                CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, gid, member_id=mid
                            ),
                            value,
                        )
                    )
            records.append(
                (
                    RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY, gid),
                    ConsumerGroupTargetAssignmentMetadataValue(group_epoch),
                )
            )
            target_epoch, target = group_epoch, targets.get(member_id, {})
        else:
            target_epoch = group.assignment_epoch
            target = group.target_assignment.get(replaced or member_id, {})

        # 3. One reconciliation step towards the target.
        def partition_epoch(topic_id: uuid.UUID, partition: int) -> int:
            return group.current_partition_epoch(topic_id, partition)

        reconciled = reconcile(updated, target_epoch, target, partition_epoch, owned)
        if reconciled != updated or replaced is not None or member_id not in group.members:
            records.append(
                (
                    RecordKey(
                        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, gid, member_id=member_id
                    ),
                    reconciled.assignment_value(),
                )
            )
            # Classic members have join and sync deadlines instead of a rebalance timeout.
            if reconciled.uses_classic_protocol:
                pass
            elif reconciled.state is MemberState.UNREVOKED_PARTITIONS:
                self._schedule_rebalance_timeout(gid, reconciled)
            else:
                shard.timers.cancel(("cg-rebalance", gid, member_id))
        return reconciled

    def member_for(
        self,
        group: ConsumerGroup,
        member_id: str,
        epoch: int,
        instance_id: str | None,
        owned: OwnedPartitions,
        joining: bool,
        records: Records,
        classic: bool = False,
    ) -> tuple[ConsumerGroupMember, str | None]:
        """The member a heartbeat (``classic``: a JoinGroup) is for, and the id of a static
        member it replaces. Classic members have generations, not epochs to check."""
        gid = group.group_id
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if not joining:
                    raise GroupError(
                        ErrorCode.UNKNOWN_MEMBER_ID,
                        f"Member {member_id} is not a member of group {gid}.",
                    )
                return ConsumerGroupMember(member_id), None
            if not classic:
                _check_epoch(member, epoch, owned)
            return member, None
        static = group.static_member(instance_id)
        if joining:
            if static is None:
                member = group.members.get(member_id)
                return (member or ConsumerGroupMember(member_id)), None
            if (
                not classic
                and not static.uses_classic_protocol
                and static.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
            ):
                raise GroupError(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} cannot join the "
                    f"group because the instance id is owned by {static.member_id} member.",
                )
            # The restarted static member takes over its predecessor's assignment.
            new = replace(static, member_id=member_id, member_epoch=0, previous_member_epoch=0)
            records.extend(self._member_removal(gid, static.member_id))
            records.append(
                (
                    RecordKey(CONSUMER_GROUP_MEMBER_METADATA_KEY, gid, member_id=member_id),
                    new.metadata_value(),
                )
            )
            target = ConsumerGroupTargetAssignmentMemberValue(
                group.target_assignment.get(static.member_id, {})
            )
            records.append(
                (
                    RecordKey(
                        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, gid, member_id=member_id
                    ),
                    target,
                )
            )
            records.append(
                (
                    RecordKey(
                        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, gid, member_id=member_id
                    ),
                    new.assignment_value(),
                )
            )
            self.cancel_timers(gid, static.member_id)
            return new, static.member_id
        if static is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if static.member_id != member_id:
            raise GroupError(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by "
                f"member {static.member_id}.",
            )
        if not classic:
            _check_epoch(static, epoch, owned)
        return static, None

    def _compute_targets(
        self,
        group: ConsumerGroup,
        members: dict[str, ConsumerGroupMember],
        metadata: dict[str, TopicMetadata],
        replaced: str | None,
        cluster: Any,
    ) -> dict[str, Assignment]:
        assignor_name = (
            group.preferred_assignor(members.values()) or self.config.group_consumer_assignors[0]
        )
        specs = {}
        for mid, m in members.items():
            previous = group.target_assignment.get(mid)
            if previous is None and replaced is not None and m.instance_id is not None:
                previous = group.target_assignment.get(replaced)
            topic_ids = frozenset(
                metadata[t].topic_id
                for t in m.subscribed_topics(group.resolved_regexes)
                if t in metadata
            )
            specs[mid] = MemberSpec(topic_ids, m.instance_id, m.rack_id, previous or {})
        topics = {t.topic_id: t.num_partitions for t in metadata.values()}
        return ASSIGNORS[assignor_name]().assign(specs, topics)

    def _leave(
        self, group_id: str, instance_id: str | None, member_id: str, epoch: int
    ) -> ConsumerGroupHeartbeatResponse:
        group = self.group(group_id)
        if group is None:
            raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        resp = ConsumerGroupHeartbeatResponse(member_id=member_id, member_epoch=epoch)
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                raise GroupError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {member_id} is not a member of group {group_id}.",
                )
            self._fence(group, member)
            return resp
        static = group.static_member(instance_id)
        if static is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if static.member_id != member_id:
            raise GroupError(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by "
                f"member {static.member_id}.",
            )
        if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # A static member restarting: it keeps its slot until its session expires.
            leaving = replace(
                static, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH, pending_revocation={}
            )
            key = RecordKey(
                CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, group_id, member_id=member_id
            )
            self.shard.write(key, leaving.assignment_value())
            return ConsumerGroupHeartbeatResponse(
                member_id=member_id, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH
            )
        self._fence(group, static)
        return resp

    # -- ConsumerGroupDescribe -----------------------------------------------------------

    def describe(self, group_id: str) -> ConsumerGroupDescribeResponse.DescribedGroup:
        Described = ConsumerGroupDescribeResponse.DescribedGroup
        existing = self.shard.groups.get(group_id)
        if not isinstance(existing, ConsumerGroup):
            message = (
                f"Group {group_id} not found."
                if existing is None
                else f"Group {group_id} is not a consumer group."
            )
            return Described(
                group_id=group_id, error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=message
            )
        group = existing
        names = {tid: name for name, (tid, _) in self.shard.metadata().items()}

        def assignment(a: Assignment) -> ConsumerGroupDescribeResponse.Assignment:
            return ConsumerGroupDescribeResponse.Assignment(
                topic_partitions=[
                    ConsumerGroupDescribeResponse.TopicPartitions(
                        topic_id=t, topic_name=names[t], partitions=sorted(ps)
                    )
                    for t, ps in sorted(a.items(), key=lambda kv: str(kv[0]))
                    if t in names
                ]
            )

        members = [
            ConsumerGroupDescribeResponse.Member(
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=sorted(m.subscribed_topic_names),
                subscribed_topic_regex=m.subscribed_topic_regex or "",  # Kafka's default
                assignment=assignment(m.assigned),
                target_assignment=assignment(group.target_assignment.get(m.member_id, {})),
                member_type=CLASSIC_MEMBER_TYPE
                if m.uses_classic_protocol
                else CONSUMER_MEMBER_TYPE,
            )
            for m in group.members.values()
        ]
        return Described(
            group_id=group_id,
            group_state=group.state.value,
            group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch,
            assignor_name=group.preferred_assignor() or self.config.group_consumer_assignors[0],
            members=members,
        )


def _invalid(message: str) -> GroupError:
    return GroupError(ErrorCode.INVALID_REQUEST, message)


def _non_empty(value: str | None, message: str) -> None:
    if value is not None and not value.strip():
        raise _invalid(message)


def _check_epoch(member: ConsumerGroupMember, epoch: int, owned: OwnedPartitions) -> None:
    """Kafka's member epoch check; epoch 0 is a rejoin and always accepted (KAFKA-19233)."""
    if epoch == 0:
        return
    if epoch > member.member_epoch:
        raise GroupError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a greater member epoch ({epoch}) than the one known "
            f"by the group coordinator ({member.member_epoch}). {_REJOIN}",
        )
    if epoch < member.member_epoch:
        # The response carrying the bump may have been lost: the previous epoch is fine as long
        # as the member owns no partition it was not given.
        subset = owned is not None and all(
            p in member.assigned.get(t, ()) for t, parts in owned for p in parts
        )
        if epoch != member.previous_member_epoch or not subset:
            raise GroupError(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The consumer group member has a smaller member epoch ({epoch}) than the one "
                f"known by the group coordinator ({member.member_epoch}). {_REJOIN}",
            )
