"""Partition state in ZooKeeper: creation, the controller's leader election, the leader's ISR
writes, preferred and unclean elections on request, automatic leader rebalancing.

Partition state (``/brokers/topics/T/partitions/P/state``) is created with the topic, in the
same transaction (leader = the first live replica, leader epoch 0, ISR = the live replicas).
Afterwards two writers change it, each with a write conditional on the znode version (the
partition epoch), so neither overwrites what it has not seen:

- the controller (``elect_leaders``, behind its epoch check): ``elect`` is Kafka's offline
  partition election with ``unclean.leader.election.enable`` per topic; ``elect_partitions``
  runs an ElectLeaders request's elections (``elect_preferred``, ``elect_unclean``), and
  ``rebalance_candidates`` picks what the periodic preferred elections move back;
- the leader (``update_isr``), shrinking and expanding its ISR as Kafka's ZooKeeper-era
  leaders did.

An ISR change keeps the leader epoch (the znode version is the partition epoch); only a new
leader, or the loss of one, bumps it.

Every function here that takes a client blocks on ZooKeeper: call it from a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Mapping

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError

from ..protocol.errors import ErrorCode
from . import placement
from . import zk_paths as zp
from .zk_controller import ControllerContext, ControllerMovedError
from .zk_txn import CreateOp, SetDataOp, TransactionFailed

__all__ = [
    "ELECTION_PREFERRED",
    "ELECTION_UNCLEAN",
    "ElectionOutcome",
    "assign_replicas",
    "elect",
    "elect_leaders",
    "elect_partitions",
    "elect_preferred",
    "elect_unclean",
    "initial_partition_state",
    "live_brokers",
    "partition_state_ops",
    "read_assignments",
    "read_partition_state",
    "rebalance_candidates",
    "reconcile_leaders",
    "update_isr",
]

log = logging.getLogger(__name__)

INITIAL_LEADER_EPOCH = 0


def assign_replicas(
    brokers: list[int], partitions: int, first: int = 0, start: int | None = None
) -> dict[int, list[int]]:
    """One replica per partition (placement.assign_replicas, rack-unaware, RF 1)."""
    if partitions <= 0:
        return {}
    racks: dict[int, str | None] = dict.fromkeys(brokers)
    return placement.assign_replicas(racks, partitions, 1, first_partition=first, start_index=start)


# -- creation ---------------------------------------------------------------------------------


def initial_partition_state(
    replicas: list[int], controller_epoch: int, live: set[int] | None = None
) -> zp.PartitionState:
    """A new partition: leader = the first live replica, ISR = the live replicas in assignment
    order (all of them when ``live`` is None); no live replica: no leader, ISR = replicas."""
    isr = [r for r in replicas if live is None or r in live]
    if not isr:
        return zp.PartitionState(
            zp.NO_LEADER, INITIAL_LEADER_EPOCH, tuple(replicas), controller_epoch
        )
    return zp.PartitionState(isr[0], INITIAL_LEADER_EPOCH, tuple(isr), controller_epoch)


def partition_state_ops(
    topic: str,
    assignment: Mapping[int, list[int]],
    controller_epoch: int,
    *,
    with_root: bool,
    live: set[int] | None = None,
) -> list[CreateOp]:
    """Create each partition's znode and state znode (``initial_partition_state``)."""
    ops = [CreateOp(zp.topic_partitions_path(topic))] if with_root else []
    for p, replicas in sorted(assignment.items()):
        state = initial_partition_state(replicas, controller_epoch, live)
        ops.append(CreateOp(zp.partition_path(topic, p)))
        ops.append(CreateOp(zp.partition_state_path(topic, p), state.encode()))
    return ops


# -- reading ----------------------------------------------------------------------------------


def current_controller_epoch(client: KazooClient) -> int:
    try:
        data, _ = client.get(zp.CONTROLLER_EPOCH_PATH)
    except NoNodeError:
        return zp.INITIAL_CONTROLLER_EPOCH
    return zp.decode_controller_epoch(data)


def read_partition_state(
    client: KazooClient, topic: str, partition: int
) -> zp.PartitionState | None:
    try:
        data, stat = client.get(zp.partition_state_path(topic, partition))
    except NoNodeError:
        return None
    return zp.PartitionState.decode(data, stat.version)


def read_assignments(
    client: KazooClient, names: Iterable[str] | None = None
) -> dict[str, zp.TopicAssignment]:
    """The assignment of each topic in ``names`` (every topic when None) that exists."""
    if names is None:
        names = client.get_children(zp.TOPICS_PATH)
    found: dict[str, zp.TopicAssignment] = {}
    for name in names:
        try:
            data, _ = client.get(zp.topic_path(name))
            found[name] = zp.TopicAssignment.decode(name, data)
        except (NoNodeError, zp.ZkDataError):
            continue  # deleted meanwhile, or unreadable: as unknown
    return found


def live_brokers(client: KazooClient) -> dict[int, zp.BrokerRegistration]:
    """Every registered broker (``/brokers/ids``), by id."""
    found: dict[int, zp.BrokerRegistration] = {}
    for child in client.get_children(zp.BROKER_IDS_PATH):
        try:
            data, _ = client.get(zp.broker_path(int(child)))
            found[int(child)] = zp.BrokerRegistration.decode(int(child), data)
        except (NoNodeError, ValueError, zp.ZkDataError):
            continue  # gone meanwhile, or not a broker registration we read
    return found


# -- the controller's election (pure) -------------------------------------------------------


def elect(
    state: zp.PartitionState,
    replicas: list[int],
    live: set[int],
    *,
    controller_epoch: int,
    unclean: bool = False,
) -> zp.PartitionState | None:
    """The state the controller writes for a partition, or None when it stays as it is.

    A broker is eligible when it is live and one of ``replicas``. An eligible leader keeps
    leading; the ISR loses its ineligible members, same leader epoch. Otherwise the first
    replica (assignment order) that is eligible and in the ISR leads, leader epoch + 1, ISR =
    its eligible members. With none: ``unclean`` elects the first live replica alone in the
    ISR, leader recovery RECOVERING; else no leader (epoch + 1 if there was one), ISR kept
    so that any of its members can lead again when it returns.
    """
    if not replicas:
        return None
    eligible = [b for b in replicas if b in live]
    isr = tuple(b for b in state.isr if b in eligible)
    if state.leader in eligible:
        if isr == state.isr:
            return None
        return _changed(state, state.leader, state.leader_epoch, isr, controller_epoch)
    candidates = [b for b in replicas if b in isr]
    if candidates:
        return _changed(state, candidates[0], state.leader_epoch + 1, isr, controller_epoch)
    if unclean and eligible:
        new = _changed(state, eligible[0], state.leader_epoch + 1, (eligible[0],), controller_epoch)
        return dataclasses.replace(new, leader_recovery_state=zp.LEADER_RECOVERY_RECOVERING)
    if state.leader == zp.NO_LEADER:
        return None
    return _changed(state, zp.NO_LEADER, state.leader_epoch + 1, state.isr, controller_epoch)


def _changed(
    state: zp.PartitionState,
    leader: int,
    leader_epoch: int,
    isr: tuple[int, ...],
    controller_epoch: int,
) -> zp.PartitionState:
    return dataclasses.replace(
        state, leader=leader, leader_epoch=leader_epoch, isr=isr, controller_epoch=controller_epoch
    )


# -- the controller's writes ----------------------------------------------------------------


def elect_leaders(
    ctx: ControllerContext,
    assignments: Mapping[str, zp.TopicAssignment],
    live: set[int],
    *,
    unclean: Callable[[str], bool] = lambda topic: False,
) -> int:
    """Apply ``elect`` to every partition's state znode; returns how many changed.

    ``unclean(topic)``: the topic's ``unclean.leader.election.enable``. Each write goes through
    ``ctx.fenced_write`` with the state's znode version; a state changed or deleted meanwhile
    is skipped (the next pass sees it). Raises ControllerMovedError when another controller
    took over.
    """
    changed = 0
    for topic, assignment in assignments.items():
        allow_unclean = unclean(topic)
        for p, replicas in sorted(assignment.partitions.items()):
            if _elect_partition(ctx, topic, p, replicas, live, allow_unclean):
                changed += 1
    return changed


def _elect_partition(
    ctx: ControllerContext,
    topic: str,
    partition: int,
    replicas: list[int],
    live: set[int],
    unclean: bool,
) -> bool:
    try:
        state = read_partition_state(ctx.client, topic, partition)
    except zp.ZkDataError:
        log.warning("partition %s-%d: unreadable state, not electing", topic, partition)
        return False
    if state is None:
        return False  # being created or deleted
    new = elect(state, replicas, live, controller_epoch=ctx.epoch, unclean=unclean)
    if new is None:
        return False
    path = zp.partition_state_path(topic, partition)
    try:
        ctx.fenced_write([SetDataOp(path, new.encode(), state.zk_version)])
    except TransactionFailed as e:
        if isinstance(e.error, BadVersionError | NoNodeError):
            return False  # changed meanwhile; the next pass sees it
        raise
    _log_change(topic, partition, state, new)
    return True


def _log_change(topic: str, partition: int, old: zp.PartitionState, new: zp.PartitionState) -> None:
    tp = f"{topic}-{partition}"
    if new.leader == old.leader:
        log.info("partition %s: ISR %s -> %s", tp, list(old.isr), list(new.isr))
        return
    # A clean election picks an ISR member; anything else may have lost committed records.
    how = "unclean " if new.leader != zp.NO_LEADER and new.leader not in old.isr else ""
    log.info(
        "partition %s: %sleader %d -> %d, leader epoch %d, ISR %s",
        *(tp, how, old.leader, new.leader, new.leader_epoch, list(new.isr)),
    )


def reconcile_leaders(
    ctx: ControllerContext, assignments: Mapping[str, zp.TopicAssignment], live: set[int]
) -> int:
    """``elect_leaders`` with unclean election off everywhere."""
    return elect_leaders(ctx, assignments, live)


# -- elections on request (ElectLeaders) and leader rebalancing ---------------------------

ELECTION_PREFERRED = 0  # Kafka's ElectionType.PREFERRED
ELECTION_UNCLEAN = 1  # Kafka's ElectionType.UNCLEAN
# A state rewritten meanwhile (the leader's ISR change) is read again and the election
# redone, as Kafka's controller retries on a bad znode version; this bounds a hot partition.
MAX_ELECTION_ATTEMPTS = 5
# Kafka's names of the strategies, which its failure messages carry.
_STRATEGY = {
    ELECTION_PREFERRED: "PreferredReplicaPartitionLeaderElectionStrategy",
    ELECTION_UNCLEAN: "OfflinePartitionLeaderElectionStrategy(true)",
}
_NOT_AVAILABLE = {
    ELECTION_PREFERRED: ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
    ELECTION_UNCLEAN: ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionOutcome:
    """One partition's answer to an election request, in Kafka's terms: the error code, its
    message (None where Kafka sends null) and, for NONE, the leader that was written."""

    error: ErrorCode
    message: str | None = None
    leader: int = zp.NO_LEADER


ELECTION_NOT_NEEDED = ElectionOutcome(
    ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."
)
UNKNOWN_PARTITION = ElectionOutcome(
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."
)
BEING_DELETED = ElectionOutcome(ErrorCode.INVALID_TOPIC_EXCEPTION, "The topic is being deleted")


def elect_preferred(
    state: zp.PartitionState, replicas: list[int], live: set[int], *, controller_epoch: int
) -> zp.PartitionState | None:
    """Kafka's preferred replica election: the first replica of the assignment leads when it
    is live, in the ISR and not leading already; leader epoch + 1, ISR unchanged. None when
    the state stays as it is."""
    if not replicas:
        return None
    preferred = replicas[0]
    if state.leader == preferred or preferred not in live or preferred not in state.isr:
        return None
    return _changed(state, preferred, state.leader_epoch + 1, state.isr, controller_epoch)


def elect_unclean(
    state: zp.PartitionState, replicas: list[int], live: set[int], *, controller_epoch: int
) -> zp.PartitionState | None:
    """ElectLeaders' UNCLEAN election, only for a partition whose leader is gone (none, or not
    live): a live ISR member when there is one, else the first live replica (``elect`` with
    unclean on, whatever the topic's config). None when nothing changes or no replica lives."""
    if state.leader != zp.NO_LEADER and state.leader in live:
        return None
    new = elect(state, replicas, live, controller_epoch=controller_epoch, unclean=True)
    if new is None or new.leader == zp.NO_LEADER:
        return None
    return new


def elect_partitions(
    ctx: ControllerContext,
    assignments: Mapping[str, zp.TopicAssignment],
    partitions: Iterable[tuple[str, int]],
    live: set[int],
    *,
    election_type: int,
    deleting: Collection[str] = (),
) -> dict[tuple[str, int], ElectionOutcome]:
    """Run one election per partition, as Kafka's controller answers ElectLeaders.

    In Kafka's order: a partition not in ``assignments`` is unknown; one of a topic in
    ``deleting`` is refused; one that already has the leader asked for (the preferred replica,
    or any live leader for UNCLEAN) needs no election; otherwise ``elect_preferred`` or
    ``elect_unclean`` decides and the new state is written through ``ctx.fenced_write`` over
    the version read. Once another controller took over, the partitions not yet done are
    answered NOT_CONTROLLER.
    """
    outcomes: dict[tuple[str, int], ElectionOutcome] = {}
    moved: str | None = None
    for topic, partition in partitions:
        key = (topic, partition)
        if key in outcomes:
            continue
        replicas = _replicas(assignments, topic, partition)
        if replicas is None:
            outcomes[key] = UNKNOWN_PARTITION
        elif topic in deleting:
            outcomes[key] = BEING_DELETED
        elif moved is not None:
            outcomes[key] = ElectionOutcome(ErrorCode.NOT_CONTROLLER, moved)
        else:
            try:
                outcomes[key] = _elect_one(ctx, topic, partition, replicas, live, election_type)
            except ControllerMovedError as e:
                moved = str(e)
                outcomes[key] = ElectionOutcome(ErrorCode.NOT_CONTROLLER, moved)
    return outcomes


def _replicas(
    assignments: Mapping[str, zp.TopicAssignment], topic: str, partition: int
) -> list[int] | None:
    assignment = assignments.get(topic)
    if assignment is None:
        return None
    return assignment.partitions.get(partition)


def _elect_one(
    ctx: ControllerContext,
    topic: str,
    partition: int,
    replicas: list[int],
    live: set[int],
    election_type: int,
) -> ElectionOutcome:
    tp = f"{topic}-{partition}"
    failed = ElectionOutcome(
        _NOT_AVAILABLE[election_type],
        f"Failed to elect leader for partition {tp} under strategy {_STRATEGY[election_type]}",
    )
    choose = elect_preferred if election_type == ELECTION_PREFERRED else elect_unclean
    for _ in range(MAX_ELECTION_ATTEMPTS):
        try:
            state = read_partition_state(ctx.client, topic, partition)
        except zp.ZkDataError:
            state = None
        if state is None:
            return ElectionOutcome(
                failed.error, f"LeaderAndIsr information doesn't exist for partition {tp}"
            )
        if _has_wanted_leader(state, replicas, live, election_type):
            return ELECTION_NOT_NEEDED
        new = choose(state, replicas, live, controller_epoch=ctx.epoch)
        if new is None:
            return failed
        path = zp.partition_state_path(topic, partition)
        try:
            ctx.fenced_write([SetDataOp(path, new.encode(), state.zk_version)])
        except TransactionFailed as e:
            if isinstance(e.error, BadVersionError):
                continue  # the leader changed its ISR meanwhile: decide again
            if isinstance(e.error, NoNodeError):
                return failed
            raise
        _log_change(topic, partition, state, new)
        return ElectionOutcome(ErrorCode.NONE, None, new.leader)
    return failed


def _has_wanted_leader(
    state: zp.PartitionState, replicas: list[int], live: set[int], election_type: int
) -> bool:
    if election_type == ELECTION_PREFERRED:
        return bool(replicas) and state.leader == replicas[0]
    return state.leader != zp.NO_LEADER and state.leader in live


def rebalance_candidates(
    assignments: Mapping[str, zp.TopicAssignment],
    states: Mapping[tuple[str, int], zp.PartitionState],
    live: Collection[int],
    imbalance_percentage: float,
) -> list[tuple[str, int]]:
    """The partitions an automatic rebalance moves back to their preferred replica (Kafka's
    checkAndTriggerAutoLeaderRebalance, ZooKeeper era).

    Per broker: of the partitions whose preferred replica (first in the assignment) it is, the
    share led by another broker (or by none). Above ``imbalance_percentage`` %, those whose
    preferred replica can lead now (live and in the ISR) are candidates. Partitions whose
    state is not known count in the share's denominator only, as in Kafka.
    """
    by_preferred: dict[int, list[tuple[str, int]]] = {}
    for topic, assignment in assignments.items():
        for p, replicas in assignment.partitions.items():
            if replicas:
                by_preferred.setdefault(replicas[0], []).append((topic, p))
    candidates: list[tuple[str, int]] = []
    for broker, owned in sorted(by_preferred.items()):
        elsewhere = [
            key for key in owned if (s := states.get(key)) is not None and s.leader != broker
        ]
        if len(elsewhere) / len(owned) <= imbalance_percentage / 100:
            continue
        candidates.extend(
            key for key in sorted(elsewhere) if broker in live and broker in states[key].isr
        )
    return candidates


# -- the leader's writes ----------------------------------------------------------------------


def update_isr(
    client: KazooClient,
    topic: str,
    partition: int,
    current: zp.PartitionState,
    isr: tuple[int, ...],
    *,
    leader_recovery_state: int | None = None,
) -> zp.PartitionState | None:
    """The leader's ISR change: ``current`` with ``isr`` (and ``leader_recovery_state``, when
    given: RECOVERED once an unclean leader recovered), written only over ``current``'s znode
    version. The new state, or None when the state changed or went away (re-read it)."""
    new = dataclasses.replace(current, isr=tuple(isr))
    if leader_recovery_state is not None:
        new = dataclasses.replace(new, leader_recovery_state=leader_recovery_state)
    path = zp.partition_state_path(topic, partition)
    try:
        stat = client.set(path, new.encode(), version=current.zk_version)
    except (BadVersionError, NoNodeError):
        return None
    return dataclasses.replace(new, zk_version=stat.version)
