"""Classic protocol: static membership, session expiry, LeaveGroup and parked requests."""

from __future__ import annotations

from metamorphostreams.coordinator.classic_group import ClassicGroupState
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness, assignment, form_group, join_response, sync_response

S = ClassicGroupState


def static_group(h: Harness, instances: list[str], **kw: object) -> dict[str, str]:
    """Static members (no MEMBER_ID_REQUIRED round trip for them) in a Stable group."""
    joins = {i: h.join(instance=i, **kw) for i in instances}
    h.tick(6_000)
    responses = {i: join_response(h, r) for i, r in joins.items()}
    ids = {i: r.member_id for i, r in responses.items()}
    leader = next(iter(responses.values())).leader
    gen = next(iter(responses.values())).generation_id
    plan = {mid: assignment({"orders": [n]}) for n, mid in enumerate(ids.values())}
    parked = [
        h.sync("g", mid, gen, plan if mid == leader else None, instance=i) for i, mid in ids.items()
    ]
    assert all(sync_response(h, p).error_code == 0 for p in parked)
    return ids


def test_static_member_gets_id_without_member_id_required() -> None:
    h = Harness()
    r = h.join(instance="i-1", client_id="app")
    h.tick(3_000)
    resp = join_response(h, r)
    assert resp.error_code == 0
    assert resp.member_id.startswith("i-1-")
    assert resp.members[0].group_instance_id == "i-1"


def test_static_member_restart_keeps_assignment_without_rebalance() -> None:
    h = Harness()
    ids = static_group(h, ["i-1", "i-2"])
    group = h.classic()
    generation, old_id = group.generation_id, ids["i-2"]
    old_assignment = group.members[old_id].assignment
    # The process restarts: it rejoins with its instance id and no member id.
    resp = join_response(h, h.join(instance="i-2"))
    assert resp.error_code == 0
    assert resp.generation_id == generation  # no new generation
    assert resp.member_id != old_id
    assert group.state is S.STABLE
    assert old_id not in group.members and group.static_members["i-2"] == resp.member_id
    sync = sync_response(h, h.sync("g", resp.member_id, generation, instance="i-2"))
    assert sync.assignment == old_assignment
    # The old incarnation is fenced.
    hb = h.heartbeat("g", old_id, generation, instance="i-2")
    assert hb.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert h.heartbeat("g", resp.member_id, generation, instance="i-2").error_code == 0
    # The replacement is persisted: a restarted coordinator knows the new member id.
    loaded = h.restarted()._shard.groups["g"]
    assert resp.member_id in loaded.members


def test_static_leader_restart_v9_skips_assignment() -> None:
    h = Harness()
    ids = static_group(h, ["i-1", "i-2"])
    leader_instance = next(i for i, m in ids.items() if m == h.classic().leader_id)
    resp = join_response(h, h.join(instance=leader_instance, version=9))
    assert resp.skip_assignment is True
    assert resp.leader == resp.member_id
    assert len(resp.members) == 2
    assert h.classic().state is S.STABLE


def test_static_member_rejoin_with_new_protocol_triggers_rebalance() -> None:
    h = Harness()
    static_group(h, ["i-1", "i-2"], protocols=[("range", b"r"), ("roundrobin", b"x")])
    h.join(instance="i-2", protocols=[("roundrobin", b"x")])
    assert h.classic().state is S.PREPARING_REBALANCE


def test_static_member_rejoin_during_completing_rebalance_restarts_it() -> None:
    h = Harness()
    ids = static_group(h, ["i-1", "i-2"])
    h.join("g", ids["i-1"], instance="i-1", protocols=[("range", b"changed")])
    h.join("g", ids["i-2"], instance="i-2")
    assert h.classic().state is S.COMPLETING_REBALANCE
    h.join(instance="i-2")  # restarted with an unknown member id
    assert h.classic().state is S.PREPARING_REBALANCE


def test_fenced_instance_id_on_join_sync_heartbeat_commit() -> None:
    h = Harness()
    ids = static_group(h, ["i-1"])
    gen = h.classic().generation_id
    stale = "i-1-stale"
    resp = join_response(h, h.join("g", stale, instance="i-1"))
    assert resp.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert (resp.protocol_type, resp.protocol_name) == (None, None)
    assert (
        sync_response(h, h.sync("g", stale, gen, instance="i-1")).error_code
        == ErrorCode.FENCED_INSTANCE_ID
    )
    assert h.heartbeat("g", stale, gen, instance="i-1").error_code == ErrorCode.FENCED_INSTANCE_ID
    commit = h.commit("g", {("orders", 0): 1}, generation=gen, member_id=stale, instance="i-1")
    assert commit == {("orders", 0): ErrorCode.FENCED_INSTANCE_ID}
    unknown = h.heartbeat("g", ids["i-1"], gen, instance="i-9")
    assert unknown.error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_parked_join_of_replaced_static_member_is_fenced() -> None:
    h = Harness()
    ids = static_group(h, ["i-1", "i-2"])
    parked = h.join("g", ids["i-1"], instance="i-1", protocols=[("range", b"new")])  # rebalance
    assert h.answer(parked) is None
    h.join(instance="i-1")  # the same instance restarted meanwhile
    assert join_response(h, parked).error_code == ErrorCode.FENCED_INSTANCE_ID


def test_session_expiry_removes_member_and_rebalances() -> None:
    h = Harness()
    g = form_group(h, 2, session=10_000)
    a, b = g.members
    h.tick(6_000)
    assert h.heartbeat("g", a, g.generation).error_code == 0  # only a keeps its session
    h.tick(4_000)  # b's session is over
    group = h.classic()
    assert b not in group.members
    assert group.state is S.PREPARING_REBALANCE
    assert h.heartbeat("g", a, g.generation).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    resp = join_response(h, h.join("g", a))
    assert resp.generation_id == g.generation + 1 and resp.leader == a


def test_last_member_expiring_empties_the_group() -> None:
    h = Harness()
    g = form_group(h, 1, session=10_000)
    h.tick(10_000)
    group = h.classic()
    assert group.state is S.EMPTY and not group.members
    assert group.generation_id == g.generation + 1
    assert h.heartbeat("g", g.members[0], g.generation).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_pending_member_expires_after_session_timeout() -> None:
    h = Harness()
    first = join_response(h, h.join(session=7_000))
    assert first.member_id in h.classic().pending_join_members
    h.tick(7_000)
    assert first.member_id not in h.classic().pending_join_members


def test_new_member_join_times_out_when_its_client_is_gone() -> None:
    h = Harness(group_classic_new_member_join_timeout_ms=20_000)
    g = form_group(h, 1, rebalance=60_000)
    old = g.members[0]
    newcomer, parked = h.new_member(rebalance=60_000)
    assert h.classic().state is S.PREPARING_REBALANCE
    for _ in range(4):  # the old member heartbeats but does not rejoin yet
        h.tick(5_000)
        assert h.heartbeat("g", old, g.generation).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    assert join_response(h, parked).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert newcomer not in h.classic().members
    assert old in h.classic().members


def test_offset_commit_keeps_the_session_alive() -> None:
    h = Harness()
    g = form_group(h, 1, session=10_000)
    m = g.members[0]
    for i in range(4):
        h.tick(6_000)
        assert h.commit("g", {("orders", 0): i}, generation=g.generation, member_id=m) == {
            ("orders", 0): 0
        }
    assert m in h.classic().members


def test_leave_group_batched_with_per_member_errors() -> None:
    h = Harness()
    g = form_group(h, 3)
    a, b, c = g.members
    resp = h.leave("g", [(a, None), ("ghost", None), (b, "not-static")])
    assert [(m.member_id, m.error_code) for m in resp.members] == [
        (a, 0),
        ("ghost", ErrorCode.UNKNOWN_MEMBER_ID),
        (b, ErrorCode.UNKNOWN_MEMBER_ID),
    ]
    assert resp.error_code == 0
    group = h.classic()
    assert set(group.members) == {b, c}
    assert group.state is S.PREPARING_REBALANCE


def test_leave_by_instance_id_alone_and_unknown_group() -> None:
    h = Harness()
    ids = static_group(h, ["i-1", "i-2"])
    resp = h.leave("g", [("", "i-1"), ("", "i-9")])
    assert [m.error_code for m in resp.members] == [0, ErrorCode.UNKNOWN_MEMBER_ID]
    assert ids["i-1"] not in h.classic().members
    missing = h.leave("other", [("m", None)])
    assert [m.error_code for m in missing.members] == [ErrorCode.UNKNOWN_MEMBER_ID]


def test_leave_v0_single_member_top_level_error() -> None:
    h = Harness()
    g = form_group(h, 2)
    assert h.leave("g", [("ghost", None)], version=1).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.leave("g", [(g.members[0], None)], version=0).error_code == 0
    assert h.leave("nope", [("m", None)], version=2).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_leave_of_pending_member() -> None:
    h = Harness()
    pending = join_response(h, h.join()).member_id
    resp = h.leave("g", [(pending, None)])
    assert resp.members[0].error_code == 0
    assert pending not in h.classic().pending_join_members


def test_leave_during_join_phase_completes_barrier() -> None:
    h = Harness()
    g = form_group(h, 2)
    a, b = g.members
    r = h.join("g", a, protocols=[("range", b"new")])
    assert h.answer(r) is None
    h.leave("g", [(b, None)])
    resp = join_response(h, r)
    assert resp.generation_id == g.generation + 1 and [m.member_id for m in resp.members] == [a]


def test_cancelled_request_answer_is_dropped() -> None:
    h = Harness()
    _, parked = h.new_member()
    assert parked.pending is not None
    h.coord.cancel(parked.pending)
    result = h.tick(3_000)
    assert result.completions == []
    assert h.classic().state is S.COMPLETING_REBALANCE  # the member still counts, as in Kafka


def test_superseded_parked_join_is_answered() -> None:
    h = Harness()
    member, first = h.new_member()
    second = h.join("g", member)  # the client retried on another connection
    assert join_response(h, first).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    h.tick(3_000)
    assert join_response(h, second).error_code == 0


def test_unload_makes_groups_dead_and_answers_parked_requests() -> None:
    h = Harness()
    _, parked = h.new_member()
    group = h.classic()
    result = h.take(h.coord.unload(h.now))
    assert group.state is S.DEAD
    assert join_response(h, parked).error_code == ErrorCode.NOT_COORDINATOR
    assert result.records == []
    assert h.coord._shard.groups == {}
