"""``GroupCoordinator``: the group coordinator as a pure state machine.

Every entry point takes ``now_ms`` and a decoded request and returns a ``Result``: records
to append to ``__consumer_offsets`` (in order, before any response of the same Result is
sent), the response, and completions of earlier parked requests. JoinGroup and SyncGroup may
park: their Result has ``response=None`` and ``pending=<id>``; the answer arrives later in
some Result's ``completions`` as ``(id, response)``. Timers (join barrier, initial delay,
session and rebalance timeouts, offset retention) run from ``poll``; ``next_deadline_ms``
says when. At start-up the server feeds every ``__consumer_offsets`` record to ``replay``
(records returned by handlers are already applied and must not be replayed again).

Transactions (KIP-98/KIP-447): a TxnOffsetCommit Result has ``producer`` set; its records
must go out as one transactional batch of that producer, and they stay pending (invisible to
OffsetFetch) until ``complete_transaction`` reports the producer's COMMIT or ABORT marker in
their partition. At start-up, records of transactional batches are replayed with their
producer id and control batches call ``complete_transaction``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from metamorphostreams.protocol._generated.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from metamorphostreams.protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from metamorphostreams.protocol._generated.delete_groups import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
)
from metamorphostreams.protocol._generated.describe_groups import (
    DescribeGroupsRequest,
    DescribeGroupsResponse,
)
from metamorphostreams.protocol._generated.heartbeat import HeartbeatRequest, HeartbeatResponse
from metamorphostreams.protocol._generated.join_group import JoinGroupRequest, JoinGroupResponse
from metamorphostreams.protocol._generated.leave_group import LeaveGroupRequest, LeaveGroupResponse
from metamorphostreams.protocol._generated.list_groups import ListGroupsRequest, ListGroupsResponse
from metamorphostreams.protocol._generated.offset_commit import (
    OffsetCommitRequest,
)
from metamorphostreams.protocol._generated.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteResponse,
)
from metamorphostreams.protocol._generated.offset_fetch import (
    OffsetFetchRequest,
)
from metamorphostreams.protocol._generated.sync_group import SyncGroupRequest, SyncGroupResponse
from metamorphostreams.protocol._generated.txn_offset_commit import TxnOffsetCommitRequest
from metamorphostreams.protocol.errors import ErrorCode

from ._shard import JOIN_GROUP_API_KEY, SYNC_GROUP_API_KEY, GroupError, Shard, TopicMetadataProvider
from .classic import ClassicGroupManager, JoinRequest
from .classic_group import ClassicGroup, ClassicGroupMember
from .classic_group import ClassicGroupState as State
from .config import GroupCoordinatorConfig
from .consumer import ConsumerGroupManager
from .consumer_group import ConsumerGroup
from .migration import Migration
from .offsets import NO_PRODUCER_ID, OffsetManager
from .records import (
    GROUP_METADATA_KEY,
    OFFSET_COMMIT_KEY,
    OFFSET_COMMIT_KEY_V0,
    CoordinatorRecord,
    RecordKey,
    decode_key,
    decode_value,
)

EXPIRATION_KEY = ("offsets-expiration",)
LEAVE_GROUP_BATCHED_VERSION = 3  # LeaveGroup v3+: a members list with per-member errors
LIST_GROUPS_STATES_VERSION = 4
LIST_GROUPS_TYPES_VERSION = 5
DESCRIBE_GROUPS_ERROR_VERSION = 6  # DescribeGroups v6+: GROUP_ID_NOT_FOUND for unknown groups
GROUP_TYPES = ("classic", "consumer", "share", "streams")


@dataclass
class Result:
    """What one call produced. ``completions``: (pending id, response) of parked requests.

    ``producer`` (producer id, epoch), set by ``txn_offset_commit`` when it wrote records:
    they all belong to one ``__consumer_offsets`` partition and must be appended as one
    transactional batch of that producer (base sequence -1). ``revert(append_error)``, set
    with it: when that batch could not be appended, undoes the records' effects and returns
    the response to send instead (Kafka reverts to its snapshot and answers the error).
    """

    records: list[CoordinatorRecord] = field(default_factory=list)
    response: Any | None = None
    completions: list[tuple[int, Any]] = field(default_factory=list)
    pending: int | None = None
    producer: tuple[int, int] | None = None
    revert: Callable[[ErrorCode], Any] | None = field(default=None, repr=False, compare=False)


class GroupCoordinator:
    """The group coordinator for all ``__consumer_offsets`` partitions of a broker.

    ``metadata`` returns the cluster's topics (name -> (topic id, partition count)); it is
    called during requests, for KIP-848 subscriptions and to refuse commits to unknown
    partitions (without it, commits are not checked and KIP-848 groups see no topics).
    ``uuid_factory`` makes member ids (tests pass a deterministic one).
    Not task-safe: the server calls it from one task.
    """

    def __init__(
        self,
        config: GroupCoordinatorConfig,
        num_partitions: int,
        metadata: TopicMetadataProvider | None = None,
        uuid_factory: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self.config = config
        self._shard = shard = Shard(config, num_partitions, metadata or dict, uuid_factory)
        shard.check_topics = metadata is not None
        shard.apply = self._apply
        self._classic = ClassicGroupManager(shard)
        self._consumer = ConsumerGroupManager(shard)
        self._migration = Migration(shard, self._classic, self._consumer)
        self._consumer.migration = self._migration
        self._offsets = OffsetManager(shard)
        self._loaded = False

    def partition_for(self, group_id: str) -> int:
        """Kafka's mapping: abs(groupId.hashCode()) % offsets.topic.num.partitions."""
        return self._shard.partition_for(group_id)

    # -- plumbing ------------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        self._shard.now_ms = now_ms
        if not self._loaded:
            self._load()
        self._run_timers()  # what expired before this request happens before it, as in Kafka

    def _end(self, response: Any = None, pending: int | None = None) -> Result:
        self._run_timers()
        shard = self._shard
        records, completions = shard.records, shard.completions
        shard.records, shard.completions = [], []
        if pending is not None:
            for i, (pending_id, answer) in enumerate(completions):
                if pending_id == pending:
                    del completions[i]
                    return Result(records, answer, completions)
        return Result(records, response, completions, pending)

    def _run_timers(self) -> None:
        # A task runs at its deadline, as if polled on time: what it schedules is relative to
        # when it was due, not to how late the poll came.
        shard = self._shard
        now = shard.now_ms
        while (due := shard.timers.pop_expired(now)) is not None:
            shard.now_ms = due[0]
            try:
                due[1]()
            finally:
                shard.now_ms = now

    def on_loaded(self, now_ms: int) -> Result:
        """Start the timers of a replayed state (session expiry from ``now_ms``, as Kafka does
        at load). Optional: the first entry point called does it too."""
        self._begin(now_ms)
        return self._end()

    def _load(self) -> None:
        self._loaded = True
        for group in list(self._shard.groups.values()):
            if isinstance(group, ClassicGroup):
                self._classic.on_loaded(group)
            else:
                self._consumer.on_loaded(group)
        self._schedule_expiration()

    def _schedule_expiration(self) -> None:
        deadline = self._shard.now_ms + self.config.offsets_retention_check_interval_ms
        self._shard.timers.schedule(EXPIRATION_KEY, deadline, self._expire_groups)

    def _expire_groups(self) -> None:
        for group in list(self._shard.groups.values()):
            if self._offsets.expire(group) and self._is_empty(group):
                for key in group.tombstone_keys():
                    self._shard.write(key, None)
        self._schedule_expiration()

    @staticmethod
    def _is_empty(group: ClassicGroup | ConsumerGroup) -> bool:
        if isinstance(group, ClassicGroup):
            return group.state is State.EMPTY
        return group.is_empty()

    # -- replay --------------------------------------------------------------------------

    def replay(self, record: CoordinatorRecord, producer_id: int = NO_PRODUCER_ID) -> None:
        """Apply one ``__consumer_offsets`` record (start-up load). ``producer_id``: that of
        the record's batch when the batch is transactional (its offsets are then pending until
        the producer's marker is replayed through ``complete_transaction``)."""
        key = decode_key(record.key)
        if key is None:
            return  # share/streams group records: not ours
        value = decode_value(key.version, record.value)
        if key.version in (OFFSET_COMMIT_KEY_V0, OFFSET_COMMIT_KEY):
            self._offsets.apply(key, value, producer_id)
        else:
            self._apply(key, value)

    def complete_transaction(
        self, now_ms: int, partition: int, producer_id: int, committed: bool
    ) -> Result:
        """A COMMIT (``committed``) or ABORT marker of ``producer_id`` is in
        ``__consumer_offsets-<partition>``: the producer's pending offsets of the groups of
        that partition become committed offsets or are dropped (Kafka's
        replayEndTransactionMarker). Called when the marker was written, and when it is read
        at start-up: it runs no timers and writes no records."""
        self._offsets.complete_transaction(partition, producer_id, committed)
        return Result()

    def _apply(self, key: RecordKey, value: Any | None) -> None:
        if key.version in (OFFSET_COMMIT_KEY_V0, OFFSET_COMMIT_KEY):
            self._offsets.apply(key, value)
        elif key.version == GROUP_METADATA_KEY:
            groups = self._shard.groups
            if value is None:
                if isinstance(groups.get(key.group_id), ClassicGroup):
                    del groups[key.group_id]
            else:
                groups[key.group_id] = ClassicGroup.from_record(key.group_id, value)
        else:
            self._consumer.apply(key, value)

    # -- timers and parked requests ------------------------------------------------------

    def poll(self, now_ms: int) -> Result:
        """Run the timers due at ``now_ms``."""
        self._begin(now_ms)
        return self._end()

    def next_deadline_ms(self) -> int | None:
        return self._shard.timers.next_deadline()

    def cancel(self, pending_id: int) -> None:
        """The parked request's connection is gone: its answer will be dropped."""
        if pending_id in self._shard.pending:
            self._shard.cancelled.add(pending_id)

    def unload(self, now_ms: int) -> Result:
        """Give everything up (shutdown, or the partitions moved): classic groups become Dead
        and parked requests are answered NOT_COORDINATOR."""
        self._begin(now_ms)
        for group in list(self._shard.groups.values()):
            if isinstance(group, ClassicGroup):
                self._classic.unload(group)
        result = self._end()
        self._shard.groups.clear()
        self._offsets.clear()
        self._shard.timers = type(self._shard.timers)()
        self._loaded = False
        return result

    def on_topics_deleted(self, now_ms: int, topics: Iterable[str]) -> Result:
        """Tombstone the committed offsets of deleted topics."""
        self._begin(now_ms)
        self._offsets.delete_topics(topics)
        return self._end()

    # -- classic protocol ----------------------------------------------------------------

    def join_group(
        self,
        now_ms: int,
        request: JoinGroupRequest,
        api_version: int,
        *,
        client_id: str = "",
        client_host: str = "",
    ) -> Result:
        self._begin(now_ms)
        shard, cfg = self._shard, self.config
        pending = shard.new_pending(JOIN_GROUP_API_KEY, api_version)
        session = request.session_timeout_ms
        if not request.group_id:
            shard.complete(
                pending,
                JoinGroupResponse(
                    member_id=request.member_id, error_code=ErrorCode.INVALID_GROUP_ID
                ),
            )
        elif not cfg.group_min_session_timeout_ms <= session <= cfg.group_max_session_timeout_ms:
            shard.complete(
                pending,
                JoinGroupResponse(
                    member_id=request.member_id, error_code=ErrorCode.INVALID_SESSION_TIMEOUT
                ),
            )
        else:
            rebalance = session if api_version == 0 else request.rebalance_timeout_ms
            join = JoinRequest(
                request.group_id,
                request.member_id,
                request.group_instance_id,
                request.protocol_type,
                [(p.name, bytes(p.metadata)) for p in request.protocols or ()],
                session,
                rebalance,
                api_version,
                client_id,
                client_host,
            )
            existing = shard.groups.get(request.group_id)
            if isinstance(existing, ConsumerGroup) and existing.members:
                self._migration.join(existing, join, pending)  # a classic member, online
            else:
                self._classic.join(join, pending)
        return self._end(pending=pending)

    def sync_group(self, now_ms: int, request: SyncGroupRequest, api_version: int) -> Result:
        self._begin(now_ms)
        pending = self._shard.new_pending(SYNC_GROUP_API_KEY, api_version)
        if not request.group_id:
            self._shard.complete(pending, SyncGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID))
        elif isinstance(group := self._shard.groups.get(request.group_id), ConsumerGroup):
            if group.members:
                self._migration.sync(
                    group,
                    request.generation_id,
                    request.member_id,
                    request.group_instance_id,
                    request.protocol_type,
                    request.protocol_name,
                    pending,
                )
            else:
                response = SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID)
                self._shard.complete(pending, response)
        else:
            assignments = {a.member_id: bytes(a.assignment) for a in request.assignments or ()}
            self._classic.sync(
                request.group_id,
                request.generation_id,
                request.member_id,
                request.group_instance_id,
                request.protocol_type,
                request.protocol_name,
                assignments,
                pending,
            )
        return self._end(pending=pending)

    def heartbeat(self, now_ms: int, request: HeartbeatRequest, api_version: int) -> Result:
        self._begin(now_ms)
        if not request.group_id:
            error = ErrorCode.INVALID_GROUP_ID
        elif isinstance(group := self._shard.groups.get(request.group_id), ConsumerGroup):
            error = self._migration.heartbeat(
                group, request.generation_id, request.member_id, request.group_instance_id
            )
        else:
            error = self._classic.heartbeat(
                request.group_id,
                request.generation_id,
                request.member_id,
                request.group_instance_id,
            )
        return self._end(HeartbeatResponse(error_code=error))

    def leave_group(self, now_ms: int, request: LeaveGroupRequest, api_version: int) -> Result:
        self._begin(now_ms)
        if api_version >= LEAVE_GROUP_BATCHED_VERSION:
            identities = [(m.member_id, m.group_instance_id) for m in request.members or ()]
        else:
            identities = [(request.member_id, None)]
        if not request.group_id:
            return self._end(LeaveGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID))
        group = self._shard.groups.get(request.group_id)
        if isinstance(group, ConsumerGroup):
            error, members = self._migration.leave(group, identities)
        else:
            error, members = self._classic.leave(request.group_id, identities)
        if api_version < LEAVE_GROUP_BATCHED_VERSION and error == ErrorCode.NONE:
            error = next((ErrorCode(m.error_code) for m in members if m.error_code), ErrorCode.NONE)
        return self._end(LeaveGroupResponse(error_code=error, members=members))

    def _keep_alive(self, group: ClassicGroup, member_id: str) -> None:
        member: ClassicGroupMember | None = group.members.get(member_id)
        if member is not None:
            self._classic.reschedule_heartbeat(group, member)

    # -- offsets -------------------------------------------------------------------------

    def offset_commit(self, now_ms: int, request: OffsetCommitRequest, api_version: int) -> Result:
        self._begin(now_ms)
        response = self._offsets.commit(request, api_version, self._keep_alive)
        return self._end(response)

    def txn_offset_commit(
        self, now_ms: int, request: TxnOffsetCommitRequest, api_version: int
    ) -> Result:
        """Commit offsets inside the request's transaction (TxnOffsetCommit v0-5).

        Validation as Kafka's (topics and partitions must exist, group id, member and
        generation from v3, metadata size); the offsets are written as OffsetCommit records
        pending for the producer. The Result's ``producer`` is set when there are records.
        Due timers are left to ``poll`` (Kafka runs them as operations of their own), so the
        Result holds this transaction's records only.
        """
        shard = self._shard
        shard.now_ms = now_ms
        if not self._loaded:
            self._load()
        response, revert = self._offsets.txn_commit(request, api_version)
        records, completions = shard.records, shard.completions
        shard.records, shard.completions = [], []
        if not records:
            return Result(records, response, completions)
        producer = (request.producer_id, request.producer_epoch)
        return Result(records, response, completions, producer=producer, revert=revert)

    def offset_fetch(self, now_ms: int, request: OffsetFetchRequest, api_version: int) -> Result:
        self._begin(now_ms)
        return self._end(self._offsets.fetch(request, api_version))

    def offset_delete(self, now_ms: int, request: OffsetDeleteRequest, api_version: int) -> Result:
        self._begin(now_ms)
        if not request.group_id:
            return self._end(OffsetDeleteResponse(error_code=ErrorCode.INVALID_GROUP_ID))
        return self._end(self._offsets.delete(request))

    # -- group administration ------------------------------------------------------------

    def describe_groups(
        self, now_ms: int, request: DescribeGroupsRequest, api_version: int
    ) -> Result:
        self._begin(now_ms)
        D = DescribeGroupsResponse.DescribedGroup
        described = []
        for group_id in request.groups or ():
            group = self._shard.groups.get(group_id)
            if isinstance(group, ClassicGroup):
                stable = group.state is State.STABLE
                described.append(
                    D(
                        group_id=group_id,
                        group_state=group.state.value,
                        protocol_type=group.protocol_type or "",
                        protocol_data=(group.protocol_name or "") if stable else "",
                        members=[
                            m.describe(group.protocol_name if stable else None)
                            for m in group.members.values()
                        ],
                    )
                )
            elif api_version >= DESCRIBE_GROUPS_ERROR_VERSION:
                message = (
                    f"Group {group_id} not found."
                    if group is None
                    else f"Group {group_id} is not a classic group."
                )
                described.append(
                    D(
                        group_id=group_id,
                        group_state=State.DEAD.value,
                        error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                        error_message=message,
                    )
                )
            else:
                described.append(D(group_id=group_id, group_state=State.DEAD.value))
        return self._end(DescribeGroupsResponse(groups=described))

    def list_groups(self, now_ms: int, request: ListGroupsRequest, api_version: int) -> Result:
        self._begin(now_ms)
        states = set()
        if api_version >= LIST_GROUPS_STATES_VERSION:
            states = {s.strip().lower() for s in request.states_filter or ()}
        types = set()
        if api_version >= LIST_GROUPS_TYPES_VERSION:
            types = {t.strip().lower() for t in request.types_filter or ()}
            types = {t if t in GROUP_TYPES else "unknown" for t in types}
        listed = []
        for group_id, group in self._shard.groups.items():
            if isinstance(group, ClassicGroup):
                protocol_type, state, kind = group.protocol_type or "", group.state.value, "classic"
            else:
                protocol_type, state, kind = "consumer", group.state.value, "consumer"
            if (states and state.lower() not in states) or (types and kind not in types):
                continue
            listed.append(
                ListGroupsResponse.ListedGroup(
                    group_id=group_id,
                    protocol_type=protocol_type,
                    group_state=state,
                    group_type=kind,
                )
            )
        return self._end(ListGroupsResponse(groups=listed))

    def delete_groups(self, now_ms: int, request: DeleteGroupsRequest, api_version: int) -> Result:
        self._begin(now_ms)
        results = []
        for group_id in request.groups_names or ():
            group = self._shard.groups.get(group_id)
            if group is None or (isinstance(group, ClassicGroup) and group.state is State.DEAD):
                error = ErrorCode.GROUP_ID_NOT_FOUND
            elif not self._is_empty(group):
                error = ErrorCode.NON_EMPTY_GROUP
            else:
                error = ErrorCode.NONE
                self._offsets.delete_all(group_id)
                for key in group.tombstone_keys():
                    self._shard.write(key, None)
            results.append(
                DeleteGroupsResponse.DeletableGroupResult(group_id=group_id, error_code=error)
            )
        return self._end(DeleteGroupsResponse(results=results))

    # -- KIP-848 -------------------------------------------------------------------------

    def consumer_group_heartbeat(
        self,
        now_ms: int,
        request: ConsumerGroupHeartbeatRequest,
        api_version: int,
        *,
        client_id: str = "",
        client_host: str = "",
    ) -> Result:
        self._begin(now_ms)
        if not self.config.consumer_protocol_enabled:
            response = ConsumerGroupHeartbeatResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
            return self._end(response)
        try:
            response = self._consumer.heartbeat(request, api_version, client_id, client_host)
        except GroupError as e:
            response = ConsumerGroupHeartbeatResponse(error_code=e.code, error_message=e.message)
        return self._end(response)

    def consumer_group_describe(
        self, now_ms: int, request: ConsumerGroupDescribeRequest, api_version: int
    ) -> Result:
        self._begin(now_ms)
        D = ConsumerGroupDescribeResponse.DescribedGroup
        groups = []
        for group_id in request.group_ids or ():
            if not group_id:
                groups.append(D(group_id=group_id, error_code=ErrorCode.INVALID_GROUP_ID))
            else:
                groups.append(self._consumer.describe(group_id))
        return self._end(ConsumerGroupDescribeResponse(groups=groups))
