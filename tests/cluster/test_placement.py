"""Replica placement: Kafka's AdminUtils examples and properties, errors with Kafka's texts."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metamorphostreams.cluster import zk_partitions
from metamorphostreams.cluster.placement import (
    PlacementError,
    assign_replicas,
    rack_alternated_broker_list,
    validate_assignment,
)
from metamorphostreams.protocol.errors import ErrorCode

NO_RACKS: dict[int, str | None] = dict.fromkeys(range(5))
# AdminUtils' javadoc example of a rack-alternated list.
JAVADOC_RACKS: dict[int, str | None] = {
    0: "rack1",
    1: "rack3",
    2: "rack3",
    3: "rack2",
    4: "rack2",
    5: "rack1",
}
SIX_ON_THREE_RACKS: dict[int, str | None] = {
    0: "rack1",
    1: "rack2",
    2: "rack2",
    3: "rack3",
    4: "rack3",
    5: "rack1",
}


def test_rack_unaware_is_kafkas_javadoc_table() -> None:
    assert assign_replicas(NO_RACKS, 10, 3, start_index=0, shift=0) == {
        0: [0, 1, 2],
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 0],
        4: [4, 0, 1],
        5: [0, 2, 3],  # second round: the followers shift by one
        6: [1, 3, 4],
        7: [2, 4, 0],
        8: [3, 0, 1],
        9: [4, 1, 2],
    }


def test_fixed_start_index_fixes_the_shift_as_in_kafka() -> None:
    assert assign_replicas(NO_RACKS, 10, 3, start_index=0) == assign_replicas(
        NO_RACKS, 10, 3, start_index=0, shift=0
    )


def test_brokers_are_sorted_by_id() -> None:
    brokers: dict[int, str | None] = {7: None, 3: None, 5: None}
    assert assign_replicas(brokers, 3, 1, start_index=0) == {0: [3], 1: [5], 2: [7]}


def test_first_partition_continues_the_leaders_round_robin() -> None:
    # Kafka's expansion: first replicas continue from partition first_partition; the shift
    # is the one given (bumped when crossing a multiple of n), not the whole history's.
    tail = assign_replicas(NO_RACKS, 4, 3, first_partition=6, start_index=0, shift=0)
    assert tail == {6: [1, 2, 3], 7: [2, 3, 4], 8: [3, 4, 0], 9: [4, 0, 1]}


@pytest.mark.parametrize("start", range(5))
@pytest.mark.parametrize("shift", range(5))
def test_rack_unaware_spreads_leaders_and_replicas_evenly(start: int, shift: int) -> None:
    assignment = assign_replicas(NO_RACKS, 10, 3, start_index=start, shift=shift)
    assert all(len(set(r)) == 3 for r in assignment.values())
    assert Counter(r[0] for r in assignment.values()) == dict.fromkeys(range(5), 2)
    assert Counter(b for r in assignment.values() for b in r) == dict.fromkeys(range(5), 6)


def test_rack_alternated_broker_list_is_kafkas() -> None:
    racks = {b: r for b, r in JAVADOC_RACKS.items() if r is not None}
    assert rack_alternated_broker_list(racks) == [0, 3, 1, 5, 4, 2]
    del racks[5]
    assert rack_alternated_broker_list(racks) == [0, 3, 1, 4, 2]


def test_rack_aware_is_kafkas_javadoc_example() -> None:
    assert assign_replicas(JAVADOC_RACKS, 7, 3, start_index=0) == {
        0: [0, 3, 1],
        1: [3, 1, 5],
        2: [1, 5, 4],
        3: [5, 4, 2],
        4: [4, 2, 0],
        5: [2, 0, 3],
        6: [0, 4, 2],  # past the first round the followers shift
    }


def _racks_of(assignment: dict[int, list[int]], racks: dict[int, str | None]) -> list[set[str]]:
    return [
        {r for b in replicas if (r := racks[b]) is not None} for replicas in assignment.values()
    ]


@pytest.mark.parametrize("start", [None, 0, 2])
@pytest.mark.parametrize(("partitions", "rf"), [(6, 3), (12, 2), (6, 2)])
def test_rack_aware_puts_replicas_on_distinct_racks_and_spreads_leaders(
    start: int | None, partitions: int, rf: int
) -> None:
    assignment = assign_replicas(SIX_ON_THREE_RACKS, partitions, rf, start_index=start)
    assert all(len(set(r)) == rf for r in assignment.values())
    assert all(len(racks) == rf for racks in _racks_of(assignment, SIX_ON_THREE_RACKS))
    per_broker = partitions // 6
    assert Counter(r[0] for r in assignment.values()) == dict.fromkeys(range(6), per_broker)
    leader_racks = Counter(SIX_ON_THREE_RACKS[r[0]] for r in assignment.values())
    assert set(leader_racks.values()) == {partitions // 3}
    replicas = Counter(b for r in assignment.values() for b in r)
    assert replicas == dict.fromkeys(range(6), partitions * rf // 6)


def test_rack_aware_expansion_from_a_later_partition() -> None:
    racks: dict[int, str | None] = {b + 6: r for b, r in SIX_ON_THREE_RACKS.items()}
    assignment = assign_replicas(racks, 12, 2, first_partition=12)
    assert sorted(assignment) == list(range(12, 24))
    assert all(len(r) == 2 for r in _racks_of(assignment, racks))
    assert Counter(r[0] for r in assignment.values()) == dict.fromkeys(racks, 2)


def test_more_replicas_than_racks_covers_every_rack() -> None:
    racks: dict[int, str | None] = {**SIX_ON_THREE_RACKS, 5: "rack2"}
    assignment = assign_replicas(racks, 6, 5)
    assert all(len(set(r)) == 5 for r in assignment.values())
    assert all(len(r) == 3 for r in _racks_of(assignment, racks))


def test_single_rack_behaves_like_round_robin() -> None:
    racks: dict[int, str | None] = dict.fromkeys(range(6), "rack1")
    assignment = assign_replicas(racks, 6, 3)
    assert all(len(set(r)) == 3 for r in assignment.values())
    assert Counter(r[0] for r in assignment.values()) == dict.fromkeys(range(6), 1)


def test_skips_brokers_already_holding_a_replica() -> None:
    racks: dict[int, str | None] = {0: "a", 1: "b", 2: "c", 3: "a", 4: "a"}
    assignment = assign_replicas(racks, 6, 4, start_index=2)
    assert all(len(set(r)) == 4 for r in assignment.values())
    assert all(len(r) == 3 for r in _racks_of(assignment, racks))


@given(
    racks=st.dictionaries(
        st.integers(0, 50), st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=12
    ),
    rack_aware=st.booleans(),
    partitions=st.integers(1, 40),
    data=st.data(),
)
def test_every_partition_gets_rf_distinct_known_brokers(
    racks: dict[int, str], rack_aware: bool, partitions: int, data: st.DataObject
) -> None:
    brokers: dict[int, str | None] = dict(racks) if rack_aware else dict.fromkeys(racks)
    rf = data.draw(st.integers(1, len(brokers)))
    first = data.draw(st.integers(0, 30))
    assignment = assign_replicas(brokers, partitions, rf, first_partition=first)
    assert sorted(assignment) == list(range(first, first + partitions))
    for replicas in assignment.values():
        assert len(replicas) == rf == len(set(replicas)) and set(replicas) <= set(brokers)
    if rack_aware:
        wanted = min(rf, len(set(racks.values())))
        assert all(len(r) >= wanted for r in _racks_of(assignment, brokers))


@pytest.mark.parametrize(
    ("brokers", "partitions", "rf", "message", "code"),
    [
        (
            NO_RACKS,
            0,
            1,
            "Number of partitions must be larger than 0.",
            ErrorCode.INVALID_PARTITIONS,
        ),
        (
            NO_RACKS,
            10,
            0,
            "Replication factor must be larger than 0.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        ),
        (
            NO_RACKS,
            10,
            6,
            "Replication factor: 6 larger than available brokers: 5.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        ),
        (
            {},
            1,
            1,
            "Replication factor: 1 larger than available brokers: 0.",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        ),
        (
            {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: None},
            10,
            5,
            "Not all brokers have rack information for replica rack aware assignment.",
            ErrorCode.UNKNOWN_SERVER_ERROR,
        ),
    ],
)
def test_errors_carry_kafkas_messages(
    brokers: dict[int, str | None], partitions: int, rf: int, message: str, code: ErrorCode
) -> None:
    with pytest.raises(PlacementError) as raised:
        assign_replicas(brokers, partitions, rf)
    assert str(raised.value) == message
    assert raised.value.error_code == code


def test_legacy_single_replica_assignment_delegates() -> None:
    assert zk_partitions.assign_replicas([3, 1, 2], 4, start=1) == {0: [2], 1: [3], 2: [1], 3: [2]}
    assert zk_partitions.assign_replicas([1], 2, first=3, start=0) == {3: [1], 4: [1]}
    with pytest.raises(ValueError, match="larger than available brokers: 0"):
        zk_partitions.assign_replicas([], 1)


# -- manual assignments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ({0: [1, 2], 1: [2, 3], 2: [3, 1]}, None),
        ({1: [1], 0: [2]}, None),
        ({0: []}, "The manual partition assignment includes an empty replica list."),
        (
            {0: [1, 2, 1]},
            "The manual partition assignment includes the broker 1 more than once.",
        ),
        (
            {0: [1, 9]},
            "The manual partition assignment includes broker 9, but no such broker is registered.",
        ),
        (
            {0: [1, 2], 1: [3]},
            "The manual partition assignment includes a partition with 1 replica(s), but this "
            "is not consistent with previous partitions, which have 2 replica(s).",
        ),
        ({0: [1], 2: [2]}, "partitions should be a consecutive 0-based integer sequence"),
        ({1: [1]}, "partitions should be a consecutive 0-based integer sequence"),
    ],
)
def test_validate_assignment(assignment: dict[int, list[int]], message: str | None) -> None:
    assert validate_assignment(assignment, {1, 2, 3}) == message
