"""Replica placement for new partitions, Kafka's AdminUtils.assignReplicasToBrokers. Pure.

Rack-unaware (no broker has a rack): brokers sorted by id; partition p's first replica at
index ``(p + start_index) % n``, its other replicas at ``replica_index(first, shift, j, n)``,
the shift growing by one every n partitions so followers do not repeat the same sequence.

Rack-aware (every broker has a rack): the same round robin over the rack-alternated broker
list (one broker of each rack in turn, racks sorted by name, brokers by id), the followers'
shift scaled by the number of racks, and a follower skipped while its rack already holds a
replica and some rack holds none, or its broker already holds one and some broker holds none.
So each partition's replicas are on distinct racks while racks last.

Also Kafka's checks of a manual assignment given in CreateTopics (``validate_assignment``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ..protocol.errors import ErrorCode

__all__ = [
    "PlacementError",
    "assign_replicas",
    "rack_alternated_broker_list",
    "replica_index",
    "validate_assignment",
]


class PlacementError(ValueError):
    """The partitions cannot be placed; ``error_code`` is what CreateTopics answers."""

    def __init__(self, message: str, error_code: ErrorCode) -> None:
        super().__init__(message)
        self.error_code = error_code


def assign_replicas(
    brokers: Mapping[int, str | None],
    partitions: int,
    replication_factor: int,
    *,
    first_partition: int = 0,
    start_index: int | None = None,
    shift: int | None = None,
) -> dict[int, list[int]]:
    """Replicas of partitions ``first_partition ..`` (preferred leader first) on ``brokers``
    (id -> rack). ``start_index`` and ``shift`` default to random; as in Kafka, a fixed
    ``start_index`` also fixes the shift unless ``shift`` is given. Raises PlacementError."""
    _check(brokers, partitions, replication_factor)
    n = len(brokers)
    start = start_index if start_index is not None else random.randrange(n)
    if shift is None:
        shift = start_index if start_index is not None else random.randrange(n)
    racks = list(brokers.values())
    if all(rack is None for rack in racks):
        return _assign_rack_unaware(
            sorted(brokers), partitions, replication_factor, first_partition, start, shift
        )
    if any(rack is None for rack in racks):
        raise PlacementError(
            "Not all brokers have rack information for replica rack aware assignment.",
            ErrorCode.UNKNOWN_SERVER_ERROR,  # Kafka's AdminOperationException is no ApiException
        )
    rack_of = {b: r for b, r in brokers.items() if r is not None}
    return _assign_rack_aware(
        rack_of, partitions, replication_factor, first_partition, start, shift
    )


def _check(brokers: Mapping[int, str | None], partitions: int, replication_factor: int) -> None:
    if partitions <= 0:
        raise PlacementError(
            "Number of partitions must be larger than 0.", ErrorCode.INVALID_PARTITIONS
        )
    if replication_factor <= 0:
        raise PlacementError(
            "Replication factor must be larger than 0.", ErrorCode.INVALID_REPLICATION_FACTOR
        )
    if replication_factor > len(brokers):
        raise PlacementError(
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )


def replica_index(first_replica_index: int, second_replica_shift: int, j: int, n: int) -> int:
    """Index of follower ``j`` (0-based): never the first replica's own index."""
    shift = 1 + (second_replica_shift + j) % (n - 1)
    return (first_replica_index + shift) % n


def _assign_rack_unaware(
    broker_list: list[int],
    partitions: int,
    replication_factor: int,
    first_partition: int,
    start_index: int,
    shift: int,
) -> dict[int, list[int]]:
    n = len(broker_list)
    assignment: dict[int, list[int]] = {}
    for p in range(max(0, first_partition), max(0, first_partition) + partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start_index) % n
        followers = [
            broker_list[replica_index(first, shift, j, n)] for j in range(replication_factor - 1)
        ]
        assignment[p] = [broker_list[first], *followers]
    return assignment


def rack_alternated_broker_list(rack_of: Mapping[int, str]) -> list[int]:
    """Kafka's getRackAlternatedBrokerList: racks by name, each rack's brokers by id, one
    broker of each rack in turn; racks that ran out are skipped."""
    by_rack: dict[str, list[int]] = {}
    for broker, rack in sorted(rack_of.items()):
        by_rack.setdefault(rack, []).append(broker)
    columns = [by_rack[rack] for rack in sorted(by_rack)]
    depth = max(len(c) for c in columns)
    return [c[i] for i in range(depth) for c in columns if i < len(c)]


def _assign_rack_aware(
    rack_of: Mapping[int, str],
    partitions: int,
    replication_factor: int,
    first_partition: int,
    start_index: int,
    shift: int,
) -> dict[int, list[int]]:
    arranged = rack_alternated_broker_list(rack_of)
    n = len(arranged)
    assignment: dict[int, list[int]] = {}
    for p in range(max(0, first_partition), max(0, first_partition) + partitions):
        if p > 0 and p % n == 0:
            shift += 1
        first = (p + start_index) % n
        assignment[p] = _rack_aware_replicas(arranged, rack_of, first, shift, replication_factor)
    return assignment


def _rack_aware_replicas(
    arranged: list[int],
    rack_of: Mapping[int, str],
    first: int,
    shift: int,
    replication_factor: int,
) -> list[int]:
    n = len(arranged)
    num_racks = len(set(rack_of.values()))
    leader = arranged[first]
    replicas = [leader]
    racks_with_replicas = {rack_of[leader]}
    k = 0
    while len(replicas) < replication_factor:
        broker = arranged[replica_index(first, shift * num_racks, k, n)]
        rack = rack_of[broker]
        k += 1
        rack_ok = rack not in racks_with_replicas or len(racks_with_replicas) == num_racks
        broker_ok = broker not in replicas or len(replicas) == n
        if rack_ok and broker_ok:
            replicas.append(broker)
            racks_with_replicas.add(rack)
    return replicas


def validate_assignment(assignment: Mapping[int, list[int]], live: set[int]) -> str | None:
    """Kafka's (KRaft controller's) checks of a CreateTopics manual assignment, partitions in
    request order: Kafka's message, answered with INVALID_REPLICA_ASSIGNMENT, or None.

    ``live``: the registered brokers. Two entries for one partition (which a Mapping cannot
    hold) are the caller's check: "Found multiple manual partition assignments for partition P".
    """
    replication_factor: int | None = None
    for replicas in assignment.values():
        error = _validate_partition(replicas, live, replication_factor)
        if error is not None:
            return error
        replication_factor = len(replicas)
    if set(assignment) != set(range(len(assignment))):
        return "partitions should be a consecutive 0-based integer sequence"
    return None


def _validate_partition(
    replicas: list[int], live: set[int], replication_factor: int | None
) -> str | None:
    if not replicas:
        return "The manual partition assignment includes an empty replica list."
    previous: int | None = None
    for broker in sorted(replicas):
        if broker not in live:
            return (
                f"The manual partition assignment includes broker {broker}, but no such "
                "broker is registered."
            )
        if broker == previous:
            return f"The manual partition assignment includes the broker {broker} more than once."
        previous = broker
    if replication_factor is not None and len(replicas) != replication_factor:
        return (
            f"The manual partition assignment includes a partition with {len(replicas)} "
            "replica(s), but this is not consistent with previous partitions, which have "
            f"{replication_factor} replica(s)."
        )
    return None
