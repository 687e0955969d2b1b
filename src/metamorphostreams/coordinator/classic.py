"""The classic group protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup (Kafka's
GroupMetadataManager, classic half).

As in Kafka, the join and sync phases live in memory and are changed directly here; a
GroupMetadata record is written where Kafka writes one (a new group, a group that became
Empty, the leader's assignment, a static member replaced in place, a deletion) and replaying
it at load rebuilds the group as Stable or Empty. Parked requests are pending ids answered
through ``Shard.complete``.
"""

from __future__ import annotations

from dataclasses import dataclass

from metamorphostreams.protocol._generated.join_group import JoinGroupResponse
from metamorphostreams.protocol._generated.leave_group import LeaveGroupResponse
from metamorphostreams.protocol._generated.sync_group import SyncGroupResponse
from metamorphostreams.protocol.errors import ErrorCode

from ._shard import GroupError, Shard
from .classic_group import ClassicGroup, ClassicGroupMember, GroupEvent
from .classic_group import ClassicGroupState as State
from .records import GROUP_METADATA_KEY, RecordKey

UNKNOWN_MEMBER_ID = ""
NO_LEADER = ""
MEMBER_ID_REQUIRED_VERSION = 4  # JoinGroup v4+: a dynamic member must rejoin with its id (KIP-394)
SKIP_ASSIGNMENT_VERSION = 9  # JoinGroup v9+: a re-joined static leader skips assigning (KIP-814)


@dataclass
class JoinRequest:
    """JoinGroup fields after version normalisation."""

    group_id: str
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    api_version: int
    client_id: str
    client_host: str


def _join_error(member_id: str, code: ErrorCode) -> JoinGroupResponse:
    return JoinGroupResponse(member_id=member_id, error_code=code)


class ClassicGroupManager:
    """Runs the classic protocol over the shard's groups and timers. Not task-safe."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.config = shard.config

    # -- lookups, timers, futures --------------------------------------------------------

    def group(self, group_id: str) -> ClassicGroup | None:
        group = self.shard.groups.get(group_id)
        return group if isinstance(group, ClassicGroup) else None

    def _write_group(
        self, group: ClassicGroup, assignments: dict[str, bytes] | None = None
    ) -> None:
        key = RecordKey(GROUP_METADATA_KEY, group.group_id)
        self.shard.write(key, group.to_record(assignments), apply=False)

    def _schedule(self, key: tuple[str, ...], delay_ms: int, task: object) -> None:
        self.shard.timers.schedule(key, self.shard.now_ms + delay_ms, task)  # type: ignore[arg-type]

    def reschedule_heartbeat(
        self, group: ClassicGroup, member: ClassicGroupMember, timeout_ms: int | None = None
    ) -> None:
        gid, mid = group.group_id, member.member_id
        delay = member.session_timeout_ms if timeout_ms is None else timeout_ms
        self._schedule(("hb", gid, mid), delay, lambda: self._expire_heartbeat(gid, mid))

    def _answer_join(
        self, group: ClassicGroup, member: ClassicGroupMember, response: JoinGroupResponse
    ) -> bool:
        if member.awaiting_join is None:
            return False
        pending_id, member.awaiting_join = member.awaiting_join, None
        group.num_awaiting_join -= 1
        self.shard.complete(pending_id, response)
        return True

    def _answer_sync(self, member: ClassicGroupMember, response: SyncGroupResponse) -> bool:
        if member.awaiting_sync is None:
            return False
        pending_id, member.awaiting_sync = member.awaiting_sync, None
        self.shard.complete(pending_id, response)
        return True

    # Public for the migration between group types.
    answer_join = _answer_join
    answer_sync = _answer_sync

    def cancel_timers(self, group: ClassicGroup) -> None:
        """Every timer of the group and its members (it is converted to a consumer group)."""
        gid = group.group_id
        for member_id in [*group.members, *group.pending_join_members]:
            self.shard.timers.cancel(("hb", gid, member_id))
        self.shard.timers.cancel(("join", gid))
        self.shard.timers.cancel(("sync", gid))

    def _supersede(self, pending_id: int | None, new_id: int, response: object) -> None:
        # Kafka drops a replaced future unanswered; answering it frees the server's wait.
        if pending_id is not None and pending_id != new_id:
            self.shard.complete(pending_id, response)

    def _generation_response(
        self, group: ClassicGroup, member_id: str, with_members: bool, skip: bool = False
    ) -> JoinGroupResponse:
        return JoinGroupResponse(
            members=group.join_response_members() if with_members else [],
            member_id=member_id,
            generation_id=group.generation_id,
            protocol_name=group.protocol_name,
            protocol_type=group.protocol_type,
            leader=group.leader_id or NO_LEADER,
            skip_assignment=skip,
        )

    def _remove_member(self, group: ClassicGroup, member: ClassicGroupMember) -> None:
        """Drop a member, answering its parked requests so its client rejoins."""
        self.shard.timers.cancel(("hb", group.group_id, member.member_id))
        self._answer_join(
            group, member, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.UNKNOWN_MEMBER_ID)
        )
        self._answer_sync(member, SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)

    # -- JoinGroup -----------------------------------------------------------------------

    def join(self, req: JoinRequest, pending_id: int) -> None:
        shard = self.shard
        existing = shard.groups.get(req.group_id)
        if existing is not None and not isinstance(existing, ClassicGroup):
            # An empty consumer group (a non-empty one takes classic members: migration.py)
            # gives way to a classic group.
            for key in existing.tombstone_keys():
                shard.write(key, None)
        is_unknown = req.member_id == UNKNOWN_MEMBER_ID
        group = self.group(req.group_id)
        is_new_group = group is None
        if group is None:
            if not is_unknown:
                shard.complete(pending_id, _join_error(req.member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                return
            group = ClassicGroup(req.group_id, current_state_timestamp=shard.now_ms)
            shard.groups[req.group_id] = group
        records_before = len(shard.records)
        if not self._accept_joining_member(group, req.member_id):
            member = group.members.get(req.member_id)
            if member is not None:
                self._remove_member(group, member)
            else:
                group.remove(req.member_id)
            shard.complete(
                pending_id, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.GROUP_MAX_SIZE_REACHED)
            )
        elif is_unknown:
            self._join_new_member(group, req, pending_id)
        else:
            self._join_existing_member(group, req, pending_id)
        if is_new_group and len(shard.records) == records_before:
            # Commit the new group: an empty GroupMetadata record, as Kafka writes.
            empty = ClassicGroup(
                group.group_id, current_state_timestamp=group.current_state_timestamp
            )
            self._write_group(empty)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        max_size = self.config.group_max_size
        if group.state in (State.EMPTY, State.DEAD):
            return True
        member = group.members.get(member_id)
        if group.state is State.PREPARING_REBALANCE:
            # Awaiting members, not all members: the last ones to rejoin are those kicked out.
            joined = member is not None and member.awaiting_join is not None
            return joined or group.num_awaiting_join < max_size
        return member is not None or len(group.members) < max_size

    def _join_new_member(self, group: ClassicGroup, req: JoinRequest, pending_id: int) -> None:
        if group.state is State.DEAD:
            self.shard.complete(
                pending_id, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.COORDINATOR_NOT_AVAILABLE)
            )
            return
        if not group.supports_protocols(req.protocol_type, {n for n, _ in req.protocols}):
            self.shard.complete(
                pending_id, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            )
            return
        prefix = req.group_instance_id if req.group_instance_id is not None else req.client_id
        new_member_id = f"{prefix}-{self.shard.uuid_factory()}"
        if req.group_instance_id is not None:
            old_member_id = group.static_members.get(req.group_instance_id)
            if old_member_id is not None:
                self._replace_static_member(group, req, old_member_id, new_member_id, pending_id)
            else:
                self._add_member(group, req, new_member_id, pending_id)
        elif req.api_version >= MEMBER_ID_REQUIRED_VERSION:
            group.pending_join_members.add(new_member_id)
            gid = group.group_id
            self._schedule(
                ("hb", gid, new_member_id),
                req.session_timeout_ms,
                lambda: self._expire_heartbeat(gid, new_member_id),
            )
            self.shard.complete(
                pending_id, _join_error(new_member_id, ErrorCode.MEMBER_ID_REQUIRED)
            )
        else:
            self._add_member(group, req, new_member_id, pending_id)

    def _join_existing_member(self, group: ClassicGroup, req: JoinRequest, pending_id: int) -> None:
        shard, member_id = self.shard, req.member_id
        if group.state is State.DEAD:
            shard.complete(pending_id, _join_error(member_id, ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(req.protocol_type, {n for n, _ in req.protocols}):
            shard.complete(
                pending_id, _join_error(member_id, ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            )
            return
        if member_id in group.pending_join_members:
            if req.group_instance_id is not None:
                # Kafka raises IllegalStateException here: a pending member is never static.
                shard.complete(pending_id, _join_error(member_id, ErrorCode.UNKNOWN_SERVER_ERROR))
                return
            self._add_member(group, req, member_id, pending_id)
            return
        try:
            member = group.validate_member(member_id, req.group_instance_id)
        except GroupError as e:
            resp = _join_error(member_id, e.code)
            resp.protocol_type = resp.protocol_name = None
            shard.complete(pending_id, resp)
            return
        if group.state is State.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, req, pending_id)
        elif group.state is State.COMPLETING_REBALANCE:
            if member.matches(req.protocols):
                # A lost JoinGroup response: answer again with the current generation.
                is_leader = group.leader_id == member_id
                shard.complete(pending_id, self._generation_response(group, member_id, is_leader))
            else:
                self._update_member_and_rebalance(group, member, req, pending_id)
        elif group.state is State.STABLE:
            if group.leader_id == member_id or not member.matches(req.protocols):
                # The leader rejoins to have metadata changes (new topics) reassigned.
                self._update_member_and_rebalance(group, member, req, pending_id)
            else:
                shard.complete(pending_id, self._generation_response(group, member_id, False))
        else:
            shard.complete(pending_id, _join_error(member_id, ErrorCode.UNKNOWN_MEMBER_ID))

    def _add_member(
        self, group: ClassicGroup, req: JoinRequest, member_id: str, pending_id: int
    ) -> None:
        member = ClassicGroupMember(
            member_id,
            req.group_instance_id,
            req.client_id,
            req.client_host,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            req.protocol_type,
            req.protocols,
            is_new=True,
        )
        if group.state is State.PREPARING_REBALANCE and group.previous_state is State.EMPTY:
            group.new_member_added = True
        group.add(member, pending_id)
        # A new member cannot heartbeat while parked; bound its wait instead.
        self.reschedule_heartbeat(
            group, member, self.config.group_classic_new_member_join_timeout_ms
        )
        self._maybe_prepare_rebalance_or_complete_join(group)

    def _update_member_and_rebalance(
        self, group: ClassicGroup, member: ClassicGroupMember, req: JoinRequest, pending_id: int
    ) -> None:
        superseded = _join_error(member.member_id, ErrorCode.REBALANCE_IN_PROGRESS)
        self._supersede(member.awaiting_join, pending_id, superseded)
        group.update_member(
            member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, pending_id
        )
        self._maybe_prepare_rebalance_or_complete_join(group)

    def _replace_static_member(
        self,
        group: ClassicGroup,
        req: JoinRequest,
        old_member_id: str,
        new_member_id: str,
        pending_id: int,
    ) -> None:
        """A static member rejoins with an unknown member id: it takes over its old slot."""
        assert req.group_instance_id is not None
        current_leader = group.leader_id
        old = group.members[old_member_id]
        fenced = JoinGroupResponse(
            member_id=old_member_id,
            protocol_name=None,
            protocol_type=None,
            leader=NO_LEADER,
            error_code=ErrorCode.FENCED_INSTANCE_ID,
        )
        self._answer_join(group, old, fenced)
        self._answer_sync(old, SyncGroupResponse(error_code=ErrorCode.FENCED_INSTANCE_ID))
        self.shard.timers.cancel(("hb", group.group_id, old_member_id))
        member = group.replace_static_member(req.group_instance_id, old_member_id, new_member_id)
        self.reschedule_heartbeat(group, member)
        group.update_member(
            member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, pending_id
        )
        if group.state is State.STABLE:
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance_or_complete_join(group)
                return
            # Same protocol next generation: persist the new member id, no rebalance.
            self._write_group(group)
            if req.api_version >= SKIP_ASSIGNMENT_VERSION:
                is_leader = group.leader_id == new_member_id
                resp = self._generation_response(group, new_member_id, is_leader, skip=is_leader)
            else:
                resp = self._generation_response(group, new_member_id, False)
                resp.leader = current_leader or NO_LEADER
            self._answer_join(group, member, resp)
        elif group.state is State.COMPLETING_REBALANCE:
            # The leader may already be assigning with the old member id: start over.
            self.prepare_rebalance(group)
        else:
            self._maybe_complete_join_phase(group)

    # -- the join barrier ----------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup) -> None:
        if group.can_rebalance():
            self.prepare_rebalance(group)
        else:
            self._maybe_complete_join_phase(group)

    def prepare_rebalance(self, group: ClassicGroup) -> None:
        if group.state is State.COMPLETING_REBALANCE:
            for member in group.members.values():
                member.assignment = b""
            self._propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group.pending_sync_members.clear()
        self.shard.timers.cancel(("sync", group.group_id))
        initial = group.state is State.EMPTY
        if initial:
            delay = self.config.group_initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            self._schedule_initial_join(group.group_id, delay, remaining)
        group.transition(GroupEvent.PREPARE_REBALANCE, self.shard.now_ms)
        if not initial:
            if group.has_all_members_joined():
                self._complete_join_phase(group)
            else:
                gid = group.group_id
                task = lambda: self._complete_join_by_id(gid)  # noqa: E731
                self._schedule(("join", gid), group.rebalance_timeout_ms(), task)

    def _schedule_initial_join(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        task = lambda: self._try_complete_initial_join(group_id, delay_ms, remaining_ms)  # noqa: E731
        self._schedule(("join", group_id), delay_ms, task)

    def _try_complete_initial_join(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        group = self.group(group_id)
        if group is None:
            return
        if group.new_member_added and remaining_ms != 0:
            # Members keep arriving: wait another delay, within the rebalance timeout.
            group.new_member_added = False
            new_delay = min(self.config.group_initial_rebalance_delay_ms, remaining_ms)
            self._schedule_initial_join(group_id, new_delay, max(remaining_ms - delay_ms, 0))
        else:
            self._complete_join_phase(group)

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> None:
        if (
            group.state is State.PREPARING_REBALANCE
            and group.previous_state is not State.EMPTY  # the initial delay timer decides
            and group.has_all_members_joined()
        ):
            self._complete_join_phase(group)

    def _complete_join_by_id(self, group_id: str) -> None:
        group = self.group(group_id)
        if group is not None:
            self._complete_join_phase(group)

    def _complete_join_phase(self, group: ClassicGroup) -> None:
        """Close the join barrier: drop dynamic members that did not rejoin, start a generation."""
        shard, gid = self.shard, group.group_id
        shard.timers.cancel(("join", gid))
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                self._remove_member(group, member)
        if group.state is State.DEAD:
            return
        if not group.elect_joined_leader() and group.members:
            # Nobody rejoined: wait for session expiry to clear the members out.
            task = lambda: self._complete_join_by_id(gid)  # noqa: E731
            self._schedule(("join", gid), group.rebalance_timeout_ms(), task)
            return
        group.init_next_generation(shard.now_ms)
        if group.state is State.EMPTY:
            self._write_group(group, {})
            return
        for member in group.members.values():
            is_leader = group.leader_id == member.member_id
            self._answer_join(
                group, member, self._generation_response(group, member.member_id, is_leader)
            )
            self.reschedule_heartbeat(group, member)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        task = lambda: self._expire_pending_sync(gid, generation)  # noqa: E731
        self._schedule(("sync", gid), group.rebalance_timeout_ms(), task)

    def _expire_pending_sync(self, group_id: str, generation: int) -> None:
        group = self.group(group_id)
        if group is None or group.generation_id != generation:
            return
        if group.state in (State.COMPLETING_REBALANCE, State.STABLE) and group.pending_sync_members:
            for member_id in list(group.pending_sync_members):
                self._remove_member(group, group.members[member_id])
            self.prepare_rebalance(group)

    def _expire_heartbeat(self, group_id: str, member_id: str) -> None:
        group = self.group(group_id)
        if group is None or group.state is State.DEAD:
            return
        if member_id in group.pending_join_members:
            group.remove(member_id)
            if group.state is State.PREPARING_REBALANCE and group.has_all_members_joined():
                self._complete_join_phase(group)
            return
        member = group.members.get(member_id)
        if member is None or member.has_satisfied_heartbeat():
            return
        self._remove_member(group, member)
        if group.state in (State.STABLE, State.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group)
        elif group.state is State.PREPARING_REBALANCE and group.has_all_members_joined():
            self._complete_join_phase(group)

    # -- SyncGroup -----------------------------------------------------------------------

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error == ErrorCode.NONE
        for member in group.members.values():
            resp = SyncGroupResponse(
                protocol_type=group.protocol_type if ok else None,
                protocol_name=group.protocol_name if ok else None,
                assignment=member.assignment,
                error_code=error,
            )
            if self._answer_sync(member, resp):
                self.reschedule_heartbeat(group, member)

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if (
            group.state not in (State.COMPLETING_REBALANCE, State.STABLE)
            or not group.pending_sync_members
        ):
            self.shard.timers.cancel(("sync", group.group_id))

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        pending_id: int,
    ) -> None:
        shard = self.shard
        group = self.group(group_id)
        if group is None or group.state is State.EMPTY:
            shard.complete(pending_id, SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID))
            return
        error = self._validate_sync(
            group, generation_id, member_id, instance_id, protocol_type, protocol_name
        )
        if error is not None:
            shard.complete(pending_id, SyncGroupResponse(error_code=error))
        elif group.state is State.PREPARING_REBALANCE:
            shard.complete(
                pending_id, SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS)
            )
        elif group.state is State.COMPLETING_REBALANCE:
            member = group.members[member_id]
            superseded = SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS)
            self._supersede(member.awaiting_sync, pending_id, superseded)
            member.awaiting_sync = pending_id
            self._remove_pending_sync_member(group, member_id)
            if group.leader_id == member_id:
                full = {mid: assignments.get(mid, b"") for mid in group.members}
                self._write_group(group, full)
                for mid, m in group.members.items():
                    m.assignment = full[mid]
                self._propagate_assignment(group, ErrorCode.NONE)
                group.transition(GroupEvent.ASSIGNMENT_STORED, shard.now_ms)
        else:
            self._remove_pending_sync_member(group, member_id)
            member = group.members[member_id]
            resp = SyncGroupResponse(
                protocol_type=group.protocol_type,
                protocol_name=group.protocol_name,
                assignment=member.assignment,
            )
            shard.complete(pending_id, resp)

    @staticmethod
    def _validate_sync(
        group: ClassicGroup,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> ErrorCode | None:
        if group.state is State.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            group.validate_member(member_id, instance_id)
        except GroupError as e:
            return e.code
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if _inconsistent(protocol_type, group.protocol_type) or _inconsistent(
            protocol_name, group.protocol_name
        ):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    # -- Heartbeat, LeaveGroup -----------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        group = self.group(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is State.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            member = group.validate_member(member_id, instance_id)
        except GroupError as e:
            return e.code
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state is State.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self.reschedule_heartbeat(group, member)
        if group.state is State.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(
        self, group_id: str, identities: list[tuple[str, str | None]]
    ) -> tuple[ErrorCode, list[LeaveGroupResponse.MemberResponse]]:
        """Remove members; (top-level error, per-member answers)."""

        def answer(
            member_id: str, instance_id: str | None, code: ErrorCode
        ) -> LeaveGroupResponse.MemberResponse:
            return LeaveGroupResponse.MemberResponse(
                member_id=member_id, group_instance_id=instance_id, error_code=code
            )

        group = self.group(group_id)
        if group is None:
            return ErrorCode.NONE, [
                answer(m, i, ErrorCode.UNKNOWN_MEMBER_ID) for m, i in identities
            ]
        if group.state is State.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        answers = []
        left = False
        for member_id, instance_id in identities:
            code = ErrorCode.NONE
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal by group.instance.id alone.
                static_id = (
                    group.static_members.get(instance_id) if instance_id is not None else None
                )
                if static_id is None:
                    code = ErrorCode.UNKNOWN_MEMBER_ID
                else:
                    self._remove_member(group, group.members[static_id])
            elif member_id in group.pending_join_members:
                group.remove(member_id)
                self.shard.timers.cancel(("hb", group_id, member_id))
            else:
                try:
                    member = group.validate_member(member_id, instance_id)
                    self._remove_member(group, member)
                except GroupError as e:
                    code = e.code
            left = left or code == ErrorCode.NONE
            answers.append(answer(member_id, instance_id, code))
        if left:
            if group.state in (State.STABLE, State.COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group)
            elif group.state is State.PREPARING_REBALANCE:
                self._maybe_complete_join_phase(group)
        return ErrorCode.NONE, answers

    # -- load / unload -------------------------------------------------------------------

    def on_loaded(self, group: ClassicGroup) -> None:
        for member in group.members.values():
            self.reschedule_heartbeat(group, member)
        if len(group.members) > self.config.group_max_size:
            self.prepare_rebalance(group)

    def unload(self, group: ClassicGroup) -> None:
        previous = group.state
        group.transition(GroupEvent.UNLOAD, self.shard.now_ms)
        for member in list(group.members.values()):
            self.shard.timers.cancel(("hb", group.group_id, member.member_id))
            if previous is State.PREPARING_REBALANCE:
                resp = _join_error(member.member_id, ErrorCode.NOT_COORDINATOR)
                self._answer_join(group, member, resp)
            self._answer_sync(member, SyncGroupResponse(error_code=ErrorCode.NOT_COORDINATOR))
        self.shard.timers.cancel(("join", group.group_id))
        self.shard.timers.cancel(("sync", group.group_id))


def _inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current
