"""Partition state in a real ZooKeeper: creation, the controller's elections, the leader's ISR
writes, and the pure election rules."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from metamorphostreams.cluster import zk_partitions
from metamorphostreams.cluster import zk_paths as zp
from metamorphostreams.cluster.zk_controller import (
    ControllerContext,
    ControllerMovedError,
    register_controller_and_increment_epoch,
)
from metamorphostreams.cluster.zk_partitions import (
    ELECTION_PREFERRED,
    ELECTION_UNCLEAN,
    ElectionOutcome,
    elect,
    elect_leaders,
    elect_partitions,
    elect_preferred,
    elect_unclean,
    initial_partition_state,
    partition_state_ops,
    read_assignments,
    read_partition_state,
    rebalance_candidates,
    reconcile_leaders,
    update_isr,
)
from metamorphostreams.cluster.zk_txn import CreateOp, commit
from metamorphostreams.protocol.errors import ErrorCode

KazooFactory = Callable[..., KazooClient]
RECOVERING = zp.LEADER_RECOVERY_RECOVERING


def controller(client: KazooClient, broker_id: int = 1) -> ControllerContext:
    return register_controller_and_increment_epoch(client, broker_id, int(time.time() * 1000))


def create_topic(
    ctx: ControllerContext,
    topic: str,
    partitions: dict[int, list[int]],
    live: set[int] | None = None,
) -> dict[str, zp.TopicAssignment]:
    """The topic znode and its partition states in one transaction, as a controller would."""
    ctx.client.ensure_path(zp.TOPICS_PATH)
    assignment = zp.TopicAssignment(None, partitions)
    ops = partition_state_ops(topic, partitions, ctx.epoch, with_root=True, live=live)
    commit(ctx.client, [CreateOp(zp.topic_path(topic), assignment.encode()), *ops])
    return {topic: assignment}


def state(ctx: ControllerContext, topic: str = "t", partition: int = 0) -> zp.PartitionState:
    found = read_partition_state(ctx.client, topic, partition)
    assert found is not None
    return found


# -- creation ---------------------------------------------------------------------------------


def test_new_partitions_lead_on_the_first_live_replica(kazoo_factory: KazooFactory) -> None:
    ctx = controller(kazoo_factory())
    create_topic(ctx, "t", {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2]}, live={1, 2})
    assert state(ctx, "t", 0) == zp.PartitionState(1, 0, (1, 2), ctx.epoch)
    assert state(ctx, "t", 1) == zp.PartitionState(2, 0, (2, 1), ctx.epoch)
    assert state(ctx, "t", 2) == zp.PartitionState(1, 0, (1, 2), ctx.epoch)
    data, _ = ctx.client.get(zp.partition_state_path("t", 0))
    assert data == b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2]}'


def test_initial_state_without_live_set_or_live_replica() -> None:
    assert initial_partition_state([3, 1, 2], 4) == zp.PartitionState(3, 0, (3, 1, 2), 4)
    assert initial_partition_state([3, 1], 4, live={9}) == zp.PartitionState(-1, 0, (3, 1), 4)


# -- the controller's elections ---------------------------------------------------------------


def test_dead_follower_leaves_the_isr_without_a_new_leader_epoch(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    assert elect_leaders(ctx, topics, {1, 2, 3}) == 0
    assert elect_leaders(ctx, topics, {1, 2}) == 1
    after = state(ctx)
    assert (after.leader, after.leader_epoch, after.isr, after.zk_version) == (1, 0, (1, 2), 1)
    assert elect_leaders(ctx, topics, {1, 2}) == 0  # nothing more to do


def test_dead_leader_fails_over_to_the_next_isr_member(
    kazoo_factory: KazooFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    with caplog.at_level(logging.INFO, logger=zk_partitions.__name__):
        assert elect_leaders(ctx, topics, {2, 3}) == 1
    assert state(ctx) == zp.PartitionState(2, 1, (2, 3), ctx.epoch, zk_version=1)
    assert "partition t-0: leader 1 -> 2, leader epoch 1, ISR [2, 3]" in caplog.text
    # The old leader's return does not give it back its leadership (no preferred election).
    assert elect_leaders(ctx, topics, {1, 2, 3}) == 0


def test_no_leader_while_the_whole_isr_is_dead_until_a_member_returns(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    elect_leaders(ctx, topics, {2, 3})
    assert elect_leaders(ctx, topics, set()) == 1
    assert state(ctx) == zp.PartitionState(-1, 2, (2, 3), ctx.epoch, zk_version=2)
    assert elect_leaders(ctx, topics, set()) == 0  # no second bump
    assert elect_leaders(ctx, topics, {1}) == 0  # 1 left the ISR: not eligible (clean only)
    assert state(ctx).leader == zp.NO_LEADER
    assert elect_leaders(ctx, topics, {1, 3}) == 1
    assert state(ctx) == zp.PartitionState(3, 3, (3,), ctx.epoch, zk_version=3)


def test_unclean_election_only_where_the_topic_enables_it(
    kazoo_factory: KazooFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "unclean", {0: [1, 2]}, live={2})
    topics |= create_topic(ctx, "clean", {0: [1, 2]}, live={2})
    with caplog.at_level(logging.INFO, logger=zk_partitions.__name__):
        assert elect_leaders(ctx, topics, {1}, unclean=lambda t: t == "unclean") == 2
    assert state(ctx, "unclean") == zp.PartitionState(1, 1, (1,), ctx.epoch, RECOVERING, 1)
    assert state(ctx, "clean") == zp.PartitionState(-1, 1, (2,), ctx.epoch, zk_version=1)
    assert "partition unclean-0: unclean leader 2 -> 1" in caplog.text
    data, _ = ctx.client.get(zp.partition_state_path("unclean", 0))
    assert b'"leader_recovery_state":1' in data


def test_reconcile_leaders_is_clean_election_for_one_replica(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1], 1: [2]})
    assert reconcile_leaders(ctx, topics, {2}) == 1
    assert state(ctx, "t", 0) == zp.PartitionState(-1, 1, (1,), ctx.epoch, zk_version=1)
    assert reconcile_leaders(ctx, topics, {1, 2}) == 1
    assert state(ctx, "t", 0) == zp.PartitionState(1, 2, (1,), ctx.epoch, zk_version=2)


def test_state_changed_meanwhile_is_left_to_the_next_pass(
    kazoo_factory: KazooFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    first = state(ctx)
    current = update_isr(ctx.client, "t", 0, first, (1, 2, 3))  # the leader wrote meanwhile
    assert current is not None and current.zk_version == 1
    monkeypatch.setattr(zk_partitions, "read_partition_state", lambda *a: first)  # stale read
    assert elect_leaders(ctx, topics, {2, 3}) == 0
    assert state(ctx) == current
    monkeypatch.undo()
    assert elect_leaders(ctx, topics, {2, 3}) == 1
    assert state(ctx).leader == 2


def test_missing_partition_state_is_skipped(kazoo_factory: KazooFactory) -> None:
    ctx = controller(kazoo_factory())
    topics = {"gone": zp.TopicAssignment(None, {0: [1, 2]})}
    assert elect_leaders(ctx, topics, {2}) == 0


def test_a_deposed_controller_cannot_elect(kazoo_factory: KazooFactory) -> None:
    old = controller(kazoo_factory(), 1)
    topics = create_topic(old, "t", {0: [1, 2, 3]})
    old.client.delete(zp.CONTROLLER_PATH)  # as if its session had ended
    new = controller(kazoo_factory(), 2)
    assert new.epoch == old.epoch + 1
    with pytest.raises(ControllerMovedError):
        elect_leaders(old, topics, {2, 3})
    assert state(new) == zp.PartitionState(1, 0, (1, 2, 3), old.epoch)
    assert elect_leaders(new, topics, {2, 3}) == 1
    assert state(new).controller_epoch == new.epoch


# -- elections on request (ElectLeaders) ----------------------------------------------------

NOT_NEEDED = ElectionOutcome(
    ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."
)


def test_preferred_election_moves_leadership_back_and_answers_like_kafka(
    kazoo_factory: KazooFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2]})
    elect_leaders(ctx, topics, {2, 3})  # 1 died: t-0 fails over to 2, 1 leaves the ISRs
    update_isr(ctx.client, "t", 0, state(ctx, "t", 0), (2, 3, 1))  # 1 is back in sync
    wanted = [("t", 0), ("t", 1), ("t", 2), ("t", 9), ("nope", 0), ("t", 0)]
    with caplog.at_level(logging.INFO, logger=zk_partitions.__name__):
        outcomes = elect_partitions(
            ctx, topics, wanted, {1, 2, 3}, election_type=ELECTION_PREFERRED
        )
    unknown = ElectionOutcome(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")
    assert outcomes == {
        ("t", 0): ElectionOutcome(ErrorCode.NONE, None, 1),
        ("t", 1): NOT_NEEDED,
        ("t", 2): NOT_NEEDED,
        ("t", 9): unknown,
        ("nope", 0): unknown,
    }
    # leader epoch + 1, ISR as it was
    assert state(ctx, "t", 0) == zp.PartitionState(1, 2, (2, 3, 1), ctx.epoch, zk_version=3)
    assert "partition t-0: leader 2 -> 1, leader epoch 2" in caplog.text


def test_preferred_replica_out_of_the_isr_or_dead_is_not_available(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    elect_leaders(ctx, topics, {2, 3})
    before = state(ctx)
    for live in ({1, 2, 3}, {2, 3}):  # out of the ISR; then dead as well
        outcomes = elect_partitions(ctx, topics, [("t", 0)], live, election_type=ELECTION_PREFERRED)
        assert outcomes[("t", 0)] == ElectionOutcome(
            ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            "Failed to elect leader for partition t-0 under strategy "
            "PreferredReplicaPartitionLeaderElectionStrategy",
        )
    assert state(ctx) == before


def test_unclean_election_on_request_ignores_the_topic_config(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2], 1: [2, 1], 2: [1, 2]}, live={2})
    elect_leaders(ctx, topics, set())  # every replica died: no leaders
    assert [state(ctx, "t", p).leader for p in range(3)] == [-1, -1, -1]
    outcomes = elect_partitions(
        ctx, topics, [("t", 0), ("t", 1)], {1}, election_type=ELECTION_UNCLEAN
    )
    assert outcomes[("t", 0)] == ElectionOutcome(ErrorCode.NONE, None, 1)
    assert outcomes[("t", 1)] == ElectionOutcome(ErrorCode.NONE, None, 1)
    assert state(ctx, "t", 0) == zp.PartitionState(1, 2, (1,), ctx.epoch, RECOVERING, 2)
    again = elect_partitions(ctx, topics, [("t", 0)], {1}, election_type=ELECTION_UNCLEAN)
    assert again[("t", 0)] == NOT_NEEDED  # it has a live leader now
    nobody = elect_partitions(ctx, topics, [("t", 2)], set(), election_type=ELECTION_UNCLEAN)
    assert nobody[("t", 2)] == ElectionOutcome(
        ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
        "Failed to elect leader for partition t-2 under strategy "
        "OfflinePartitionLeaderElectionStrategy(true)",
    )


def test_unclean_election_prefers_a_live_isr_member(kazoo_factory: KazooFactory) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2, 3]})
    elect_leaders(ctx, topics, set())
    outcomes = elect_partitions(ctx, topics, [("t", 0)], {2, 3}, election_type=ELECTION_UNCLEAN)
    assert outcomes[("t", 0)].leader == 2
    assert state(ctx) == zp.PartitionState(2, 2, (2, 3), ctx.epoch, zk_version=2)


def test_elections_on_request_skip_topics_being_deleted_and_stop_when_deposed(
    kazoo_factory: KazooFactory,
) -> None:
    old = controller(kazoo_factory(), 1)
    topics = create_topic(old, "t", {0: [1, 2], 1: [1, 2]})
    topics |= create_topic(old, "doomed", {0: [1, 2]})
    update = {"t": {0: [2, 1], 1: [2, 1]}, "doomed": {0: [2, 1]}}  # 2 is preferred now
    topics = {n: zp.TopicAssignment(None, update[n]) for n in topics}
    old.client.delete(zp.CONTROLLER_PATH)
    controller(kazoo_factory(), 2)
    outcomes = elect_partitions(
        old,
        topics,
        [("doomed", 0), ("t", 0), ("t", 1)],
        {1, 2},
        election_type=ELECTION_PREFERRED,
        deleting={"doomed"},
    )
    assert outcomes[("doomed", 0)] == ElectionOutcome(
        ErrorCode.INVALID_TOPIC_EXCEPTION, "The topic is being deleted"
    )
    assert outcomes[("t", 0)].error == ErrorCode.NOT_CONTROLLER
    assert outcomes[("t", 1)] == outcomes[("t", 0)]
    assert state(old, "t", 0).leader == 1


def test_preferred_election_redoes_a_decision_the_leader_overtook(
    kazoo_factory: KazooFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2]})
    elect_leaders(ctx, topics, {2})
    back = update_isr(ctx.client, "t", 0, state(ctx), (2, 1))
    assert back is not None
    reads = [dataclasses.replace(back, zk_version=0)]  # one stale read first
    real = zk_partitions.read_partition_state

    def read(*args: object) -> zp.PartitionState | None:
        return reads.pop() if reads else real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(zk_partitions, "read_partition_state", read)
    outcomes = elect_partitions(ctx, topics, [("t", 0)], {1, 2}, election_type=ELECTION_PREFERRED)
    assert outcomes[("t", 0)] == ElectionOutcome(ErrorCode.NONE, None, 1)
    assert state(ctx).leader == 1


def test_read_assignments(kazoo_factory: KazooFactory) -> None:
    ctx = controller(kazoo_factory())
    create_topic(ctx, "a", {0: [1, 2]})
    create_topic(ctx, "b", {0: [2], 1: [1]})
    assert set(read_assignments(ctx.client)) == {"a", "b"}
    found = read_assignments(ctx.client, ["b", "missing"])
    assert list(found) == ["b"] and found["b"].partitions == {0: [2], 1: [1]}


# -- the leader's ISR writes ------------------------------------------------------------------


def test_update_isr_writes_over_the_version_it_read(kazoo_factory: KazooFactory) -> None:
    ctx = controller(kazoo_factory())
    create_topic(ctx, "t", {0: [1, 2, 3]})
    leader = kazoo_factory()
    current = state(ctx)
    shrunk = update_isr(leader, "t", 0, current, (1, 3))
    assert shrunk == dataclasses.replace(current, isr=(1, 3), zk_version=1)
    assert state(ctx) == shrunk
    assert update_isr(leader, "t", 0, current, (1,)) is None  # stale version: re-read
    assert state(ctx) == shrunk
    expanded = update_isr(leader, "t", 0, shrunk, (1, 3, 2))
    assert expanded is not None and expanded.isr == (1, 3, 2) and expanded.leader_epoch == 0


def test_update_isr_keeps_or_sets_the_leader_recovery_state(
    kazoo_factory: KazooFactory,
) -> None:
    ctx = controller(kazoo_factory())
    topics = create_topic(ctx, "t", {0: [1, 2]}, live={2})
    elect_leaders(ctx, topics, {1}, unclean=lambda t: True)
    recovering = state(ctx)
    kept = update_isr(ctx.client, "t", 0, recovering, (1,))
    assert kept is not None and kept.leader_recovery_state == RECOVERING
    recovered = update_isr(
        ctx.client, "t", 0, kept, (1,), leader_recovery_state=zp.LEADER_RECOVERY_RECOVERED
    )
    assert recovered is not None and state(ctx) == recovered
    assert recovered.leader_recovery_state == zp.LEADER_RECOVERY_RECOVERED


def test_update_isr_of_a_deleted_partition(kazoo_factory: KazooFactory) -> None:
    client = kazoo_factory()
    current = zp.PartitionState(1, 0, (1,), 1)
    assert update_isr(client, "nope", 0, current, (1,)) is None


# -- the election rules (pure) ----------------------------------------------------------------

R = [1, 2, 3]


def ps(
    leader: int, epoch: int, isr: tuple[int, ...], recovery: int = 0, ce: int = 1
) -> zp.PartitionState:
    return zp.PartitionState(leader, epoch, isr, ce, recovery, zk_version=4)


@pytest.mark.parametrize(
    ("before", "live", "unclean", "after"),
    [
        (ps(1, 5, (1, 2, 3)), {1, 2, 3}, False, None),
        (ps(1, 5, (1, 2, 3)), {1, 3, 9}, False, ps(1, 5, (1, 3), ce=7)),
        (ps(1, 5, (3, 1, 2)), {2, 3}, False, ps(2, 6, (3, 2), ce=7)),  # assignment order
        (ps(-1, 5, (2, 3)), {3}, False, ps(3, 6, (3,), ce=7)),
        (ps(1, 5, (1, 2)), {3}, False, ps(-1, 6, (1, 2), ce=7)),
        (ps(-1, 6, (1, 2)), {3}, False, None),
        (ps(1, 5, (1, 2)), {3}, True, ps(3, 6, (3,), RECOVERING, ce=7)),
        (ps(1, 5, (1, 2)), set(), True, ps(-1, 6, (1, 2), ce=7)),
        (ps(-1, 6, (1, 2)), set(), True, None),
        (ps(9, 5, (9, 2)), {2, 9}, False, ps(2, 6, (2,), ce=7)),  # 9 is no longer a replica
        (ps(3, 5, (3,), RECOVERING), {1, 3}, False, None),
        (ps(3, 5, (3,), RECOVERING), {1}, False, ps(-1, 6, (3,), RECOVERING, ce=7)),
    ],
)
def test_elect(
    before: zp.PartitionState,
    live: set[int],
    unclean: bool,
    after: zp.PartitionState | None,
) -> None:
    assert elect(before, R, live, controller_epoch=7, unclean=unclean) == after


def test_elect_without_replicas_changes_nothing() -> None:
    assert elect(ps(1, 0, (1,)), [], set(), controller_epoch=7) is None


@pytest.mark.parametrize(
    ("before", "live", "after"),
    [
        (ps(2, 5, (1, 2, 3)), {1, 2, 3}, ps(1, 6, (1, 2, 3), ce=7)),
        (ps(1, 5, (1, 2, 3)), {1, 2, 3}, None),  # leads already
        (ps(2, 5, (2, 3)), {1, 2, 3}, None),  # not in the ISR
        (ps(2, 5, (1, 2, 3)), {2, 3}, None),  # not live
        (ps(-1, 5, (1,)), {1}, ps(1, 6, (1,), ce=7)),
        (ps(2, 5, (2, 1), RECOVERING), {1, 2}, ps(1, 6, (2, 1), RECOVERING, ce=7)),
    ],
)
def test_elect_preferred(
    before: zp.PartitionState, live: set[int], after: zp.PartitionState | None
) -> None:
    assert elect_preferred(before, R, live, controller_epoch=7) == after
    assert elect_preferred(before, [], live, controller_epoch=7) is None


@pytest.mark.parametrize(
    ("before", "live", "after"),
    [
        (ps(1, 5, (1, 2)), {1, 2, 3}, None),  # a live leader
        (ps(-1, 5, (1, 2)), {2, 3}, ps(2, 6, (2,), ce=7)),  # a live ISR member first
        (ps(1, 5, (1, 2)), {3}, ps(3, 6, (3,), RECOVERING, ce=7)),  # dead leader, unclean
        (ps(-1, 5, (1, 2)), {3}, ps(3, 6, (3,), RECOVERING, ce=7)),
        (ps(-1, 5, (1, 2)), set(), None),  # nobody to elect
        (ps(1, 5, (1, 2)), set(), None),  # (the controller's pass removes a dead leader)
    ],
)
def test_elect_unclean(
    before: zp.PartitionState, live: set[int], after: zp.PartitionState | None
) -> None:
    assert elect_unclean(before, R, live, controller_epoch=7) == after


# -- automatic leader rebalancing (pure) -----------------------------------------------------


def _assign(**topics: dict[int, list[int]]) -> dict[str, zp.TopicAssignment]:
    return {name: zp.TopicAssignment(None, parts) for name, parts in topics.items()}


def test_rebalance_moves_a_brokers_partitions_back_above_the_percentage() -> None:
    assignments = _assign(t={0: [1, 2], 1: [1, 2], 2: [2, 1], 3: [1, 2]})
    states = {
        ("t", 0): ps(2, 1, (2, 1)),  # 1 preferred, led by 2
        ("t", 1): ps(1, 0, (1, 2)),
        ("t", 2): ps(2, 0, (2, 1)),
        ("t", 3): ps(2, 1, (2,)),  # 1 preferred but out of the ISR: cannot lead yet
    }
    # broker 1: 2 of 3 led elsewhere (67 %); broker 2: 0 of 1
    assert rebalance_candidates(assignments, states, {1, 2}, 10) == [("t", 0)]
    assert rebalance_candidates(assignments, states, {1, 2}, 66) == [("t", 0)]
    assert rebalance_candidates(assignments, states, {1, 2}, 67) == []  # ratio not above
    assert rebalance_candidates(assignments, states, {2}, 10) == []  # 1 is dead


def test_rebalance_counts_unknown_states_and_leaderless_partitions() -> None:
    assignments = _assign(a={0: [1, 2], 1: [1, 2]}, b={0: [1, 2], 1: [1, 2]})
    states = {("a", 0): ps(-1, 3, (1, 2))}  # no leader: not led by its preferred replica
    # 1 of 4 led elsewhere: 25 %
    assert rebalance_candidates(assignments, states, {1, 2}, 24) == [("a", 0)]
    assert rebalance_candidates(assignments, states, {1, 2}, 25) == []
    assert rebalance_candidates(_assign(e={0: []}), {}, {1}, 0) == []
