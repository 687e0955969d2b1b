"""Restart = replay: the records handlers wrote rebuild the same state."""

from __future__ import annotations

from metamorphostreams.coordinator.classic_group import ClassicGroupState
from metamorphostreams.coordinator.consumer_group import ConsumerGroupState
from metamorphostreams.coordinator.records import decode_key

from .helpers import ORDERS_ID, Harness, durable_state, form_group, join_response, sync_response
from .test_consumer_group import Client, run_until_stable


def assert_replays_identically(h: Harness) -> None:
    assert durable_state(h.restarted()) == durable_state(h.coord)


def test_classic_groups_and_offsets_replay() -> None:
    h = Harness()
    g = form_group(h, 3)
    assert_replays_identically(h)
    for i, m in enumerate(g.members):
        h.commit(
            "g", {("orders", i): 100 + i}, generation=g.generation, member_id=m, metadata=f"m{i}"
        )
    h.commit("simple", {("logs", 2): 9})
    assert_replays_identically(h)
    h.leave("g", [(g.members[2], None)])
    r0, r1 = h.join("g", g.members[0]), h.join("g", g.members[1])
    gen = join_response(h, r0).generation_id
    leader = h.classic().leader_id
    follower = g.members[1] if leader == g.members[0] else g.members[0]
    join_response(h, r1)
    parked = h.sync("g", follower, gen)
    h.sync("g", leader or "", gen, {g.members[0]: b"A", g.members[1]: b"B"})
    assert sync_response(h, parked).error_code == 0
    assert_replays_identically(h)


def test_kip848_group_replays_at_every_step() -> None:
    h = Harness()
    clients = [Client(h, f"m{i}", instance="static" if i == 0 else None) for i in range(3)]
    for c in clients:
        c.heartbeat()
        assert_replays_identically(h)
    run_until_stable(h, clients)
    assert_replays_identically(h)
    clients[1].leave()
    assert_replays_identically(h)
    clients[0].leave(epoch=-2)
    assert_replays_identically(h)
    Client(h, "m0-again", instance="static").heartbeat()
    assert_replays_identically(h)
    h.commit("c", {("orders", 0): 3}, generation=clients[2].epoch, member_id="m2", version=9)
    assert_replays_identically(h)


def test_restart_then_continue() -> None:
    """A coordinator rebuilt from the log answers the group's members as before."""
    h = Harness()
    g = form_group(h, 2)
    a = Client(h, "k", group="c")
    a.heartbeat()
    h.commit("g", {("orders", 0): 77}, generation=g.generation, member_id=g.members[0])
    h.coord = h.restarted()
    assert h.heartbeat("g", g.members[0], g.generation).error_code == 0
    assert h.committed("g", "orders", 0) == 77
    sync = sync_response(h, h.sync("g", g.members[1], g.generation))
    assert sync.assignment == g.assignments[g.members[1]]
    resp = a.heartbeat()
    assert (resp.error_code, resp.member_epoch) == (0, 2)
    assert h.consumer().state is ConsumerGroupState.STABLE


def test_sessions_start_again_after_load() -> None:
    h = Harness()
    g = form_group(h, 1)
    Client(h, "k", group="c").heartbeat()
    h.coord = h.restarted()
    h.tick(0)  # load at this time: sessions run from here
    h.tick(9_999)
    assert h.classic().members
    h.tick(1)
    assert h.classic().state is ClassicGroupState.EMPTY
    assert g.members[0] not in h.classic().members
    h.tick(35_000)
    assert not h.consumer().members


def test_records_carry_their_partition() -> None:
    h = Harness(num_partitions=7)
    form_group(h, 1, group="alpha")
    h.commit("beta", {("orders", 0): 1})
    for record in h.log:
        key = decode_key(record.key)
        assert key is not None
        assert record.partition == h.coord.partition_for(key.group_id)


def test_consumer_group_deletion_replays_to_nothing() -> None:
    h = Harness()
    a = Client(h, "a")
    a.heartbeat()
    a.leave()
    from metamorphostreams.protocol._generated.delete_groups import DeleteGroupsRequest

    resp = h.call("delete_groups", DeleteGroupsRequest(groups_names=["c"]), 2).response
    assert resp.results[0].error_code == 0
    assert "c" not in h.coord._shard.groups
    assert h.restarted()._shard.groups == {}
    again = Client(h, "b")
    assert again.heartbeat().error_code == 0
    assert again.owned == {ORDERS_ID: set(range(6))}
