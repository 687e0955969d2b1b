"""Classic protocol: the join barrier, the sync phase and the group's state table."""

from __future__ import annotations

import pytest

from metamorphostreams.coordinator.classic_group import (
    TRANSITIONS,
    ClassicGroup,
    ClassicGroupState,
    GroupEvent,
)
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import (
    Harness,
    assignment,
    decode_assignment,
    decode_subscription,
    form_group,
    join_response,
    subscription,
    sync_response,
)

S = ClassicGroupState


def test_transition_table_is_kafkas() -> None:
    allowed = {(src, dst) for (src, _), dst in TRANSITIONS.items()}
    assert allowed == {
        (S.EMPTY, S.PREPARING_REBALANCE),
        (S.STABLE, S.PREPARING_REBALANCE),
        (S.COMPLETING_REBALANCE, S.PREPARING_REBALANCE),
        (S.PREPARING_REBALANCE, S.COMPLETING_REBALANCE),
        (S.PREPARING_REBALANCE, S.EMPTY),
        (S.COMPLETING_REBALANCE, S.STABLE),
        *((s, S.DEAD) for s in S),
    }


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", list(GroupEvent))
def test_invalid_transitions_raise(state: ClassicGroupState, event: GroupEvent) -> None:
    group = ClassicGroup("g", state=state)
    if (state, event) in TRANSITIONS:
        group.transition(event, 5)
        assert group.state is TRANSITIONS[(state, event)]
        assert group.previous_state is state
        assert group.current_state_timestamp == 5
    else:
        with pytest.raises(AssertionError):
            group.transition(event, 5)


def test_member_id_required_on_first_join_v4_plus() -> None:
    h = Harness()
    resp = join_response(h, h.join(version=4, client_id="app"))
    assert resp.error_code == ErrorCode.MEMBER_ID_REQUIRED
    assert resp.member_id.startswith("app-")
    assert resp.member_id in h.classic().pending_join_members
    assert h.classic().state is S.EMPTY


def test_join_v3_adds_member_directly() -> None:
    h = Harness()
    result = h.join(version=3)
    h.tick(6_000)
    resp = join_response(h, result)
    assert resp.error_code == 0
    assert resp.generation_id == 1
    assert resp.leader == resp.member_id
    assert [m.member_id for m in resp.members] == [resp.member_id]


def test_first_join_empty_to_preparing_then_completing_then_stable() -> None:
    h = Harness()
    member, result = h.new_member()
    group = h.classic()
    assert group.state is S.PREPARING_REBALANCE
    assert result.pending is not None and h.answer(result) is None
    h.tick(2_999)
    assert h.answer(result) is None  # the initial rebalance delay is not over
    h.tick(1)
    resp = join_response(h, result)
    assert (resp.error_code, resp.generation_id, resp.leader, resp.protocol_name) == (
        0,
        1,
        member,
        "range",
    )
    assert group.state is S.COMPLETING_REBALANCE
    sync = sync_response(h, h.sync("g", member, 1, {member: b"A"}))
    assert (sync.error_code, sync.assignment, sync.protocol_name, sync.protocol_type) == (
        0,
        b"A",
        "range",
        "consumer",
    )
    assert group.state is S.STABLE
    assert h.heartbeat("g", member, 1).error_code == 0


def test_initial_delay_is_extended_while_members_join_and_capped_by_rebalance_timeout() -> None:
    h = Harness(group_initial_rebalance_delay_ms=3_000)
    start = h.now
    _, first = h.new_member(rebalance=10_000)
    done_at = None
    while h.now - start < 15_000 and done_at is None:
        h.tick(500)
        if (h.now - start) % 2_500 == 0:
            h.new_member(rebalance=10_000)  # members keep arriving within each delay
        if first.pending not in h.coord._shard.pending:
            done_at = h.now - start
    # Each delay is extended, but never past the 10s rebalance timeout.
    assert done_at == 10_000
    resp = join_response(h, first)
    assert (resp.error_code, resp.generation_id, len(resp.members)) == (0, 1, 4)


def test_initial_delay_completes_after_quiet_period() -> None:
    h = Harness(group_initial_rebalance_delay_ms=3_000)
    _, a = h.new_member()
    h.tick(1_000)
    _, b = h.new_member()
    h.tick(2_000)  # first delay over; b joined inside it: extended by another delay
    assert h.answer(a) is None
    h.tick(3_000)
    ra, rb = join_response(h, a), join_response(h, b)
    assert ra.generation_id == rb.generation_id == 1
    assert len(ra.members) == 2 and rb.members == []


def test_followers_sync_waits_for_leader() -> None:
    h = Harness()
    a, ra = h.new_member()
    b, rb = h.new_member()
    h.tick(6_000)
    leader = join_response(h, ra).leader
    assert join_response(h, rb).leader == leader
    follower = b if leader == a else a
    parked = h.sync("g", follower, 1)
    assert parked.pending is not None and h.answer(parked) is None
    plan = {a: assignment({"orders": [0, 1, 2]}), b: assignment({"orders": [3, 4, 5]})}
    leader_sync = sync_response(h, h.sync("g", leader, 1, plan))
    assert leader_sync.assignment == plan[leader]
    follower_sync = sync_response(h, parked)
    assert decode_assignment(follower_sync.assignment) == decode_assignment(plan[follower])
    assert h.classic().state is S.STABLE


def test_member_missing_from_leader_assignment_gets_empty_bytes() -> None:
    h = Harness()
    g = form_group(h, 2)
    other = next(m for m in g.members if m != g.leader)
    # A second rebalance where the leader omits the other member.
    h.join("g", g.leader)
    r_other = h.join("g", other)
    h.tick(6_000)
    gen = join_response(h, r_other).generation_id
    parked = h.sync("g", other, gen)
    h.sync("g", g.leader, gen, {g.leader: b"L"})
    assert sync_response(h, parked).assignment == b""


def test_join_barrier_removes_members_that_do_not_rejoin() -> None:
    h = Harness()
    g = form_group(h, 3, rebalance=5_000)
    stay, gone = g.members[0], g.members[2]
    r = h.join("g", stay, rebalance=5_000)  # stay forces a rebalance (it may not be the leader)
    r2 = h.join("g", g.members[1], rebalance=5_000)
    assert h.classic().state is S.PREPARING_REBALANCE
    h.tick(4_999)
    assert h.answer(r) is None
    h.tick(1)
    resp = join_response(h, r)
    assert resp.generation_id == g.generation + 1
    assert gone not in h.classic().members
    assert join_response(h, r2).generation_id == resp.generation_id
    assert h.heartbeat("g", gone, resp.generation_id).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_barrier_completes_early_when_all_rejoin() -> None:
    h = Harness()
    g = form_group(h, 2)
    r0 = h.join("g", g.members[0])
    assert h.answer(r0) is None
    r1 = h.join("g", g.members[1])
    assert join_response(h, r1).generation_id == g.generation + 1  # answered at once
    assert join_response(h, r0).generation_id == g.generation + 1


def test_heartbeat_during_rebalance_and_generation_fencing() -> None:
    h = Harness()
    g = form_group(h, 2)
    a, b = g.members
    assert h.heartbeat("g", a, g.generation).error_code == 0
    assert h.heartbeat("g", a, g.generation + 5).error_code == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat("g", "nobody", g.generation).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nogroup", a, 1).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", a, 1).error_code == ErrorCode.INVALID_GROUP_ID
    h.join("g", a, protocols=[("range", b"changed")])
    assert h.heartbeat("g", b, g.generation).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    # Sync of the old generation during the rebalance.
    assert (
        sync_response(h, h.sync("g", b, g.generation)).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    )
    assert (
        sync_response(h, h.sync("g", b, g.generation + 7)).error_code
        == ErrorCode.ILLEGAL_GENERATION
    )


def test_sync_errors() -> None:
    h = Harness()
    g = form_group(h, 1)
    m = g.members[0]
    assert sync_response(h, h.sync("nogroup", m, 1)).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert sync_response(h, h.sync("g", "x", 1)).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert sync_response(h, h.sync("", m, 1)).error_code == ErrorCode.INVALID_GROUP_ID
    bad_type = h.sync("g", m, g.generation, protocol_type="other")
    assert sync_response(h, bad_type).error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    bad_name = h.sync("g", m, g.generation, protocol_name="roundrobin")
    assert sync_response(h, bad_name).error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    ok = sync_response(
        h, h.sync("g", m, g.generation, protocol_type="consumer", protocol_name="range")
    )
    assert (
        ok.error_code == 0 and ok.assignment == g.assignments[m]
    )  # Stable: the current assignment


def test_protocol_agreement() -> None:
    h = Harness()
    protocols = [("cooperative-sticky", b"c"), ("range", b"r")]
    g = form_group(h, 1, protocols=protocols)
    assert h.classic().protocol_name == "cooperative-sticky"
    wrong_type = join_response(h, h.join("g", protocol_type="connect", protocols=protocols))
    assert wrong_type.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    no_common = join_response(h, h.join("g", protocols=[("roundrobin", b"x")]))
    assert no_common.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    existing = join_response(h, h.join("g", g.members[0], protocols=[("roundrobin", b"x")]))
    assert existing.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # A newcomer supporting only range: range is the one protocol everybody can speak.
    newcomer, r = h.new_member(protocols=[("range", b"r2")])
    h.join("g", g.members[0], protocols=protocols)
    h.tick(6_000)
    assert join_response(h, r).protocol_name == "range"
    assert newcomer in h.classic().members
    empty_protocols = join_response(h, h.join("fresh", protocols=[]))
    assert empty_protocols.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    empty_type = join_response(h, h.join("fresh2", protocol_type=""))
    assert empty_type.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


@pytest.mark.parametrize("session", [5_999, 1_800_001])
def test_session_timeout_bounds(session: int) -> None:
    h = Harness()
    resp = join_response(h, h.join(session=session))
    assert resp.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert "g" not in h.coord._shard.groups


def test_invalid_group_id_and_unknown_member_in_unknown_group() -> None:
    h = Harness()
    assert join_response(h, h.join("")).error_code == ErrorCode.INVALID_GROUP_ID
    resp = join_response(h, h.join("nope", "some-member"))
    assert (resp.error_code, resp.member_id) == (ErrorCode.UNKNOWN_MEMBER_ID, "some-member")


def test_group_max_size() -> None:
    h = Harness(group_max_size=2)
    form_group(h, 2)
    resp = join_response(h, h.join())
    assert resp.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert len(h.classic().members) == 2


def test_group_max_size_while_preparing_counts_joined_members() -> None:
    h = Harness(group_max_size=1)
    _, first = h.new_member()
    assert h.classic().state is S.PREPARING_REBALANCE
    assert join_response(h, h.join()).error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    h.tick(3_000)
    assert join_response(h, first).error_code == 0
    assert len(h.classic().members) == 1


def test_leader_rejoin_in_stable_triggers_rebalance_follower_same_metadata_does_not() -> None:
    h = Harness()
    g = form_group(h, 2)
    follower = next(m for m in g.members if m != g.leader)
    same = join_response(h, h.join("g", follower))
    assert (same.generation_id, same.members) == (g.generation, [])
    assert h.classic().state is S.STABLE
    h.join("g", g.leader)
    assert h.classic().state is S.PREPARING_REBALANCE


def test_rejoin_with_same_metadata_during_completing_rebalance_is_answered_again() -> None:
    h = Harness()
    g = form_group(h, 2)
    h.join("g", g.members[0])
    h.join("g", g.members[1])
    assert h.classic().state is S.COMPLETING_REBALANCE
    again = join_response(h, h.join("g", h.classic().leader_id or ""))
    assert again.generation_id == g.generation + 1 and len(again.members) == 2


def test_completing_rebalance_rejoin_with_new_metadata_cancels_syncs() -> None:
    h = Harness()
    g = form_group(h, 2)
    h.join("g", g.members[0])
    h.join("g", g.members[1])
    follower = next(m for m in g.members if m != h.classic().leader_id)
    parked = h.sync("g", follower, g.generation + 1)
    h.join("g", follower, protocols=[("range", b"new")])
    assert sync_response(h, parked).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.classic().state is S.PREPARING_REBALANCE


def test_members_that_never_sync_are_removed_after_rebalance_timeout() -> None:
    h = Harness()
    g = form_group(h, 2, rebalance=4_000, session=30_000)
    r0 = h.join("g", g.members[0], rebalance=4_000, session=30_000)
    r1 = h.join("g", g.members[1], rebalance=4_000, session=30_000)
    gen = join_response(h, r0).generation_id
    join_response(h, r1)
    h.sync(
        "g", g.members[0], gen, {m: b"x" for m in g.members}
    )  # only one syncs (it may be the leader)
    h.tick(4_000)
    group = h.classic()
    assert g.members[1] not in group.members
    assert group.state in (S.PREPARING_REBALANCE, S.COMPLETING_REBALANCE)


def test_empty_group_record_on_new_group_and_when_group_becomes_empty() -> None:
    h = Harness()
    h.join()  # MEMBER_ID_REQUIRED: the new group is committed with an empty record
    assert len(h.log) == 1
    g = form_group(h, 1)
    h.leave("g", [(g.members[0], None)])
    group = h.classic()
    assert group.state is S.EMPTY and group.generation_id == g.generation + 1
    restarted = h.restarted()
    loaded = restarted._shard.groups["g"]
    assert isinstance(loaded, ClassicGroup)
    assert (loaded.state, loaded.generation_id, loaded.protocol_type) == (S.EMPTY, 2, "consumer")


def test_cooperative_rebalancing_takes_several_rounds() -> None:
    """Incremental cooperative protocol, driven by client metadata as real clients do."""
    h = Harness()
    coop = "cooperative-sticky"
    a, ra = h.new_member(protocols=[(coop, subscription(["orders"]))])
    h.tick(6_000)
    gen = join_response(h, ra).generation_id
    h.sync("g", a, gen, {a: assignment({"orders": range(6)})})
    # b joins owning nothing: round 1, the leader (a) revokes 3,4,5 from itself, assigns none.
    b, rb = h.new_member(protocols=[(coop, subscription(["orders"]))])
    leader_view = join_response(
        h, h.join("g", a, protocols=[(coop, subscription(["orders"], {"orders": range(6)}))])
    )
    gen2 = leader_view.generation_id
    assert join_response(h, rb).generation_id == gen2 == gen + 1
    owned = {m.member_id: _owned(m.metadata) for m in leader_view.members}
    assert owned == {a: {"orders": list(range(6))}, b: {}}
    parked = h.sync("g", b, gen2)
    h.sync("g", a, gen2, {a: assignment({"orders": [0, 1, 2]}), b: assignment({})})
    assert decode_assignment(sync_response(h, parked).assignment) == {}
    # Round 2: a revoked partitions, so it rejoins; b gets 3,4,5.
    ra3 = h.join("g", a, protocols=[(coop, subscription(["orders"], {"orders": [0, 1, 2]}))])
    rb3 = h.join("g", b, protocols=[(coop, subscription(["orders"], {}))])
    gen3 = join_response(h, ra3).generation_id
    assert join_response(h, rb3).generation_id == gen3 == gen2 + 1
    parked = h.sync("g", b, gen3)
    h.sync(
        "g", a, gen3, {a: assignment({"orders": [0, 1, 2]}), b: assignment({"orders": [3, 4, 5]})}
    )
    assert decode_assignment(sync_response(h, parked).assignment) == {"orders": [3, 4, 5]}
    assert h.classic().state is S.STABLE and h.classic().generation_id == 3


def _owned(metadata: bytes) -> dict[str, list[int]]:
    sub = decode_subscription(metadata)
    return {tp.topic: list(tp.partitions) for tp in sub.owned_partitions if tp.partitions}
