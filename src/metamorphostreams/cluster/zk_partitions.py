"""Partition placement and partition state in ZooKeeper, for replication factor 1.

Placement is Kafka's AdminUtils.assignReplicasToBrokers without racks: brokers sorted by id,
partition p's first replica on broker ``(start + p) % n`` with a random ``start``. With one
replica per partition that replica is also the preferred leader.

Partition state (``/brokers/topics/T/partitions/P/state``) is written once at creation (leader
= the replica, leader epoch 0, ISR = [leader]) in the same transaction as the topic, and
afterwards only by the controller (``reconcile_leaders``) behind its epoch check: a replica
whose broker is not registered loses its leadership (leader -1, the ISR keeps the last
member, as Kafka does with unclean election off), and gets it back, one leader epoch later,
when its broker registers again.

Every function here blocks on ZooKeeper: call it from a worker thread.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError

from . import zk_paths as zp
from .zk_controller import ControllerContext
from .zk_txn import CreateOp, SetDataOp, TransactionFailed

__all__ = [
    "assign_replicas",
    "live_brokers",
    "partition_state_ops",
    "read_partition_state",
    "reconcile_leaders",
]

log = logging.getLogger(__name__)


def assign_replicas(
    brokers: list[int], partitions: int, first: int = 0, start: int | None = None
) -> dict[int, list[int]]:
    """One replica per partition, round robin over ``brokers`` from a random start."""
    ordered = sorted(brokers)
    if not ordered:
        raise ValueError("no broker is registered")
    if start is None:
        start = random.randrange(len(ordered))
    return {p: [ordered[(start + p) % len(ordered)]] for p in range(first, first + partitions)}


def partition_state_ops(
    topic: str, assignment: Mapping[int, list[int]], controller_epoch: int, *, with_root: bool
) -> list[CreateOp]:
    """Create each partition's state znode (leader = first replica, epoch 0)."""
    ops = [CreateOp(zp.topic_partitions_path(topic))] if with_root else []
    for p, replicas in sorted(assignment.items()):
        state = zp.PartitionState(replicas[0], 0, (replicas[0],), controller_epoch)
        ops.append(CreateOp(zp.partition_path(topic, p)))
        ops.append(CreateOp(zp.partition_state_path(topic, p), state.encode()))
    return ops


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


def reconcile_leaders(
    ctx: ControllerContext, assignments: Mapping[str, zp.TopicAssignment], live: set[int]
) -> int:
    """Make each partition's leader its replica when that broker is live, else -1.

    Writes go through ``ctx.fenced_write`` with the state's znode version; returns how many
    states changed. Raises ControllerMovedError when another controller took over.
    """
    changed = 0
    for topic, assignment in assignments.items():
        for p, replicas in assignment.partitions.items():
            if not replicas:
                continue
            state = read_partition_state(ctx.client, topic, p)
            if state is None:
                continue  # being created or deleted
            wanted = replicas[0] if replicas[0] in live else zp.NO_LEADER
            if state.leader == wanted:
                continue
            isr = state.isr if wanted == zp.NO_LEADER else (wanted,)
            new = zp.PartitionState(wanted, state.leader_epoch + 1, isr, ctx.epoch)
            path = zp.partition_state_path(topic, p)
            try:
                ctx.fenced_write([SetDataOp(path, new.encode(), state.zk_version)])
            except TransactionFailed as e:
                if isinstance(e.error, BadVersionError | NoNodeError):
                    continue  # changed meanwhile; the next pass sees it
                raise
            log.info("partition %s-%d: leader %d -> %d", topic, p, state.leader, wanted)
            changed += 1
    return changed
