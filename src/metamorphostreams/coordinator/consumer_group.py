"""A KIP-848 consumer group: members with epochs, the target assignment, and reconciliation.

The whole state is what the ConsumerGroup* records say (see ``records``); it changes only
by replaying them (``ConsumerGroupManager.apply``). ``reconcile`` is Kafka's
CurrentAssignmentBuilder: a member is given a partition only once no member owns it any
more (its partition epoch is gone), and it keeps partitions it must give up in
``pending_revocation`` until its heartbeat stops reporting them.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from metamorphostreams.protocol.errors import ErrorCode

from ._shard import GroupError
from .records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_PARTITION_METADATA_KEY,
    CONSUMER_GROUP_REGULAR_EXPRESSION_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
    Assignment,
    ClassicMemberMetadata,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupRegularExpressionValue,
    RecordKey,
    TopicMetadata,
)

ResolvedRegex = ConsumerGroupRegularExpressionValue  # topics, metadata version, timestamp

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
OFFSET_COMMIT_MIN_VERSION = 9  # members of KIP-848 groups commit with member epochs (v9+)


class MemberState(enum.IntEnum):
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


# What Python's re accepts and RE2/J (Kafka's regex engine) refuses: look-around assertions
# and back-references.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\(\?P=|(?<!\\)\\[1-9]")


@functools.lru_cache(maxsize=256)
def compile_regex(regex: str) -> re.Pattern[str]:
    """A subscription regex (Kafka uses RE2/J, whole-name match); re.error if invalid."""
    found = _NOT_RE2.search(regex)
    if found is not None:
        raise re.error(f"RE2/J does not support {found.group()!r}", regex, found.start())
    return re.compile(regex)


@dataclass(frozen=True)
class ConsumerGroupMember:
    """One member, immutable: changes make a new member (``dataclasses.replace``)."""

    member_id: str
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: frozenset[str] = frozenset()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    classic: ClassicMemberMetadata | None = None  # set while it speaks the classic protocol

    @property
    def uses_classic_protocol(self) -> bool:
        return self.classic is not None

    def is_reconciled_to(self, target_epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == target_epoch

    def subscribed_topics(self, resolved: Mapping[str, ResolvedRegex]) -> set[str]:
        """Names subscribed directly, plus what the group resolved its regex to (nothing
        while the regex is being resolved)."""
        topics = set(self.subscribed_topic_names)
        if self.subscribed_topic_regex:
            found = resolved.get(self.subscribed_topic_regex)
            if found is not None:
                topics.update(found.topics)
        return topics

    def metadata_value(self) -> ConsumerGroupMemberMetadataValue:
        return ConsumerGroupMemberMetadataValue(
            instance_id=self.instance_id,
            rack_id=self.rack_id,
            client_id=self.client_id,
            client_host=self.client_host,
            subscribed_topic_names=tuple(sorted(self.subscribed_topic_names)),
            subscribed_topic_regex=self.subscribed_topic_regex,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            server_assignor=self.server_assignor,
            classic_member_metadata=self.classic,
        )

    def assignment_value(self) -> ConsumerGroupCurrentMemberAssignmentValue:
        return ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=self.member_epoch,
            previous_member_epoch=self.previous_member_epoch,
            state=int(self.state),
            assigned_partitions=self.assigned,
            partitions_pending_revocation=self.pending_revocation,
        )

    def with_metadata(self, value: ConsumerGroupMemberMetadataValue) -> ConsumerGroupMember:
        return replace(
            self,
            instance_id=value.instance_id,
            rack_id=value.rack_id,
            client_id=value.client_id,
            client_host=value.client_host,
            subscribed_topic_names=frozenset(value.subscribed_topic_names),
            subscribed_topic_regex=value.subscribed_topic_regex,
            rebalance_timeout_ms=value.rebalance_timeout_ms,
            server_assignor=value.server_assignor,
            classic=value.classic_member_metadata,
        )

    def with_assignment(
        self, value: ConsumerGroupCurrentMemberAssignmentValue
    ) -> ConsumerGroupMember:
        try:
            state = MemberState(value.state)
        except ValueError:
            state = MemberState.UNKNOWN
        return replace(
            self,
            member_epoch=value.member_epoch,
            previous_member_epoch=value.previous_member_epoch,
            state=state,
            assigned=dict(value.assigned_partitions),
            pending_revocation=dict(value.partitions_pending_revocation),
        )


@dataclass
class ConsumerGroup:
    """Kafka's ConsumerGroup. ``partition_epochs`` maps each owned (or being revoked)
    partition to the epoch of its owner: a partition has at most one owner. Not task-safe.
    """

    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerGroupMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    subscription_metadata: dict[str, TopicMetadata] = field(default_factory=dict)
    target_assignment: dict[str, Assignment] = field(default_factory=dict)
    partition_epochs: dict[uuid.UUID, dict[int, int]] = field(default_factory=dict)
    resolved_regexes: dict[str, ResolvedRegex] = field(default_factory=dict)

    def regex_subscribers(self, regex: str) -> int:
        return sum(1 for m in self.members.values() if m.subscribed_topic_regex == regex)

    def subscribed_regexes(self) -> set[str]:
        return {m.subscribed_topic_regex for m in self.members.values() if m.subscribed_topic_regex}

    def last_regex_refresh_ms(self) -> int:
        """When the regexes were last resolved; long ago when none is (refresh at once)."""
        return max((r.timestamp for r in self.resolved_regexes.values()), default=-(2**62))

    def last_regex_version(self) -> int:
        return min((r.version for r in self.resolved_regexes.values()), default=-1)

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if all(m.is_reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return ConsumerGroupState.STABLE
        return ConsumerGroupState.RECONCILING

    def is_empty(self) -> bool:
        return not self.members

    def current_partition_epoch(self, topic_id: uuid.UUID, partition: int) -> int:
        return self.partition_epochs.get(topic_id, {}).get(partition, -1)

    def static_member(self, instance_id: str | None) -> ConsumerGroupMember | None:
        member_id = self.static_members.get(instance_id) if instance_id is not None else None
        return None if member_id is None else self.members.get(member_id)

    def target_of(self, member_id: str, instance_id: str | None = None) -> Assignment:
        if instance_id is not None:
            previous = self.static_members.get(instance_id)
            return self.target_assignment.get(previous, {}) if previous is not None else {}
        return self.target_assignment.get(member_id, {})

    def update_member(self, member: ConsumerGroupMember) -> None:
        old = self.members.get(member.member_id)
        if old is not None:
            self._remove_partition_epochs(old)
        self.members[member.member_id] = member
        self._add_partition_epochs(member.assigned, member.member_epoch)
        self._add_partition_epochs(member.pending_revocation, member.member_epoch)
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id

    def remove_member(self, member_id: str) -> None:
        old = self.members.pop(member_id, None)
        if old is None:
            return
        self._remove_partition_epochs(old)
        if old.instance_id is not None and self.static_members.get(old.instance_id) == member_id:
            del self.static_members[old.instance_id]

    def _remove_partition_epochs(self, member: ConsumerGroupMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic_id, parts in assignment.items():
                epochs = self.partition_epochs.get(topic_id, {})
                for p in parts:
                    epochs.pop(p, None)
                if not epochs:
                    self.partition_epochs.pop(topic_id, None)

    def _add_partition_epochs(self, assignment: Assignment, epoch: int) -> None:
        for topic_id, parts in assignment.items():
            epochs = self.partition_epochs.setdefault(topic_id, {})
            for p in parts:
                if p in epochs:
                    raise AssertionError(
                        f"group {self.group_id}: partition {topic_id}-{p} already owned at epoch "
                        f"{epochs[p]}"
                    )
                epochs[p] = epoch

    def subscribed_topics(self, topic_names: Iterable[str] = ()) -> set[str]:
        """Every topic a member subscribes to, by name or through a resolved regex
        (``topic_names`` is not needed any more: regexes are resolved by the group)."""
        topics: set[str] = set()
        for member in self.members.values():
            topics |= member.subscribed_topics(self.resolved_regexes)
        return topics

    def all_classic_except(self, member_id: str) -> bool:
        """Every member but ``member_id`` speaks the classic protocol."""
        return all(
            m.uses_classic_protocol for m in self.members.values() if m.member_id != member_id
        )

    def classic_protocols_supported(self, protocol_type: str, names: set[str]) -> bool:
        """Kafka's supportsClassicProtocols: a protocol every classic member supports."""
        if protocol_type != "consumer":
            return False
        if not self.members:
            return bool(names)
        classic = [m.classic for m in self.members.values() if m.classic is not None]
        return any(all(n in {p for p, _ in c.supported_protocols} for c in classic) for n in names)

    def waiting_on_unreleased_partition(self, member: ConsumerGroupMember) -> bool:
        """A partition of its target it lacks is still owned by another member."""
        target = self.target_assignment.get(member.member_id, {})
        return any(
            p not in member.assigned.get(t, frozenset())
            and self.current_partition_epoch(t, p) != -1
            for t, parts in target.items()
            for p in parts
        )

    def preferred_assignor(
        self, members: Iterable[ConsumerGroupMember] | None = None
    ) -> str | None:
        chosen = self.members.values() if members is None else members
        counts = Counter(m.server_assignor for m in chosen if m.server_assignor is not None)
        return max(counts.items(), key=lambda kv: kv[1])[0] if counts else None

    def tombstone_keys(self) -> list[RecordKey]:
        """Kafka's deletion order: members' assignments, targets, epochs, subscriptions, group."""
        gid = self.group_id
        keys = [
            RecordKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, gid, member_id=m)
            for m in self.members
        ]
        keys += [
            RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, gid, member_id=m)
            for m in self.members
        ]
        keys.append(RecordKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY, gid))
        keys += [
            RecordKey(CONSUMER_GROUP_MEMBER_METADATA_KEY, gid, member_id=m) for m in self.members
        ]
        keys += [
            RecordKey(CONSUMER_GROUP_REGULAR_EXPRESSION_KEY, gid, regex=r)
            for r in self.resolved_regexes
        ]
        keys.append(RecordKey(CONSUMER_GROUP_PARTITION_METADATA_KEY, gid))
        keys.append(RecordKey(CONSUMER_GROUP_METADATA_KEY, gid))
        return keys

    # -- offsets -------------------------------------------------------------------------

    def validate_offset_commit(self, member_id: str, member_epoch: int, api_version: int) -> None:
        if member_epoch < 0 and not self.members:
            return  # an admin or a consumer outside group management, group empty
        member = self.members.get(member_id)
        if member is None:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"Member {member_id} is not a member of group {self.group_id}.",
            )
        if member.uses_classic_protocol:
            # A classic member of a consumer group commits with its generation: the epoch.
            if member_epoch != member.member_epoch:
                raise GroupError(ErrorCode.ILLEGAL_GENERATION)
            return
        if api_version < OFFSET_COMMIT_MIN_VERSION:
            raise GroupError(
                ErrorCode.UNSUPPORTED_VERSION,
                "OffsetCommit version 9 or above must be used by members using the modern "
                "group protocol",
            )
        if member_epoch != member.member_epoch:
            raise GroupError(ErrorCode.STALE_MEMBER_EPOCH)

    def validate_offset_fetch(self, member_id: str | None, member_epoch: int) -> None:
        if member_id is None and member_epoch < 0:
            return
        member = self.members.get(member_id or "")
        if member is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)
        if member_epoch != member.member_epoch:
            raise GroupError(ErrorCode.STALE_MEMBER_EPOCH)


# Kafka 4.3 starts a group at epoch 1 with an empty target assignment of epoch 1, so the first
# computed assignment is epoch 2 and a joining member never waits at epoch 0 (KAFKA-20268).
INITIAL_GROUP_EPOCH = 1


def new_consumer_group(group_id: str) -> ConsumerGroup:
    """A group created by its first member's heartbeat (or a classic group's conversion)."""
    return ConsumerGroup(
        group_id, group_epoch=INITIAL_GROUP_EPOCH, assignment_epoch=INITIAL_GROUP_EPOCH
    )


def compute_subscription_metadata(
    topics: Iterable[str], cluster: Mapping[str, tuple[uuid.UUID, int]]
) -> dict[str, TopicMetadata]:
    out = {}
    for name in topics:
        found = cluster.get(name)
        if found is not None:
            out[name] = TopicMetadata(found[0], name, found[1])
    return out


OwnedPartitions = list[tuple[uuid.UUID, list[int]]] | None


def _owns_any(owned: OwnedPartitions, partitions: Assignment) -> bool:
    if owned is None:
        return True  # not reported: assume it still owns them
    return any(p in partitions.get(tid, ()) for tid, parts in owned for p in parts)


def reconcile(
    member: ConsumerGroupMember,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions,
) -> ConsumerGroupMember:
    """Move a member one step towards its target assignment (CurrentAssignmentBuilder)."""
    if member.state is MemberState.STABLE:
        if member.member_epoch == target_epoch:
            return member
        return _next_assignment(
            member, member.member_epoch, target_epoch, target, partition_epoch, owned
        )
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
        return _next_assignment(
            member, member.member_epoch + 1, target_epoch, target, partition_epoch, owned
        )
    if member.state is MemberState.UNRELEASED_PARTITIONS:
        return _next_assignment(
            member, member.member_epoch, target_epoch, target, partition_epoch, owned
        )
    if owned is None or owned:
        raise GroupError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            "The consumer group member is in a unknown state. "
            "The member must abandon all its partitions and rejoin.",
        )
    return _next_assignment(member, target_epoch, target_epoch, target, partition_epoch, owned)


def _next_assignment(
    member: ConsumerGroupMember,
    member_epoch: int,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions,
) -> ConsumerGroupMember:
    unreleased = False
    assigned: Assignment = {}
    revoking: Assignment = {}
    to_assign: Assignment = {}
    for topic_id in set(target) | set(member.assigned):
        wanted = target.get(topic_id, frozenset())
        current = member.assigned.get(topic_id, frozenset())
        keep = current & wanted
        revoke = current - keep
        free = {p for p in wanted - keep if partition_epoch(topic_id, p) == -1}
        unreleased = unreleased or len(free) < len(wanted - keep)
        if keep:
            assigned[topic_id] = frozenset(keep)
        if revoke:
            revoking[topic_id] = frozenset(revoke)
        if free:
            to_assign[topic_id] = frozenset(free)

    def with_epoch(
        epoch: int, state: MemberState, parts: Assignment, pending: Assignment
    ) -> ConsumerGroupMember:
        return replace(
            member,
            previous_member_epoch=member.member_epoch,
            member_epoch=epoch,
            state=state,
            assigned=parts,
            pending_revocation=pending,
        )

    if revoking and _owns_any(owned, revoking):
        # Revoke first; the member stays in its epoch until it reports them gone.
        return with_epoch(member_epoch, MemberState.UNREVOKED_PARTITIONS, assigned, revoking)
    if to_assign:
        merged = {
            t: assigned.get(t, frozenset()) | to_assign.get(t, frozenset())
            for t in set(assigned) | set(to_assign)
        }
        state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
        return with_epoch(target_epoch, state, merged, {})
    if unreleased:
        return with_epoch(target_epoch, MemberState.UNRELEASED_PARTITIONS, assigned, {})
    return with_epoch(target_epoch, MemberState.STABLE, assigned, {})
