"""The classic protocol's client-side assignors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.client.assignors import (
    CooperativeStickyAssignor,
    MemberSubscription,
    RangeAssignor,
    RoundRobinAssignor,
    assignor_for,
)


def _members(n: int, topics: list[str]) -> list[MemberSubscription]:
    return [MemberSubscription(f"m{i}", list(topics)) for i in range(n)]


def test_range_gives_consecutive_ranges_per_topic() -> None:
    out = RangeAssignor().assign({"a": 5, "b": 2}, _members(2, ["a", "b"]))
    assert out["m0"] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert out["m1"] == [("a", 3), ("a", 4), ("b", 1)]


def test_roundrobin_deals_partitions_in_turn() -> None:
    out = RoundRobinAssignor().assign({"a": 3, "b": 2}, _members(2, ["a", "b"]))
    assert out["m0"] == [("a", 0), ("a", 2), ("b", 1)]
    assert out["m1"] == [("a", 1), ("b", 0)]


def test_roundrobin_respects_subscriptions() -> None:
    members = [MemberSubscription("m0", ["a"]), MemberSubscription("m1", ["a", "b"])]
    out = RoundRobinAssignor().assign({"a": 2, "b": 2}, members)
    assert ("b", 0) in out["m1"] and ("b", 1) in out["m1"]
    assert all(tp[0] == "a" for tp in out["m0"])


def test_cooperative_sticky_keeps_owned_and_withholds_moving_partitions() -> None:
    assignor = CooperativeStickyAssignor()
    first = assignor.assign({"t": 6}, _members(2, ["t"]))
    assert sorted(len(v) for v in first.values()) == [3, 3]
    # A third member joins: each old member keeps 2 of its 3; the moving partitions are
    # withheld this generation (their owners must revoke them first).
    members = [
        MemberSubscription("m0", ["t"], first["m0"], 1),
        MemberSubscription("m1", ["t"], first["m1"], 1),
        MemberSubscription("m2", ["t"], [], -1),
    ]
    second = assignor.assign({"t": 6}, members)
    assert set(second["m0"]) < set(first["m0"]) and len(second["m0"]) == 2
    assert set(second["m1"]) < set(first["m1"]) and len(second["m1"]) == 2
    assert second["m2"] == []
    # Next generation: the revoked partitions are free and go to the new member.
    members = [
        MemberSubscription("m0", ["t"], second["m0"], 2),
        MemberSubscription("m1", ["t"], second["m1"], 2),
        MemberSubscription("m2", ["t"], [], 2),
    ]
    third = assignor.assign({"t": 6}, members)
    assert third["m0"] == second["m0"] and third["m1"] == second["m1"]
    assert len(third["m2"]) == 2


def test_assignor_names() -> None:
    assert assignor_for("org.apache.kafka.clients.consumer.RangeAssignor").name == "range"
    assert assignor_for("cooperative-sticky").cooperative


@settings(max_examples=60, deadline=None)
@given(
    partitions=st.integers(0, 20),
    members=st.integers(1, 6),
    rounds=st.integers(1, 3),
)
def test_cooperative_sticky_converges_balanced_and_exclusive(
    partitions: int, members: int, rounds: int
) -> None:
    assignor = CooperativeStickyAssignor()
    owned: dict[str, list[tuple[str, int]]] = {f"m{i}": [] for i in range(members)}
    for generation in range(rounds + 2):
        subs = [MemberSubscription(m, ["t"], tps, generation) for m, tps in owned.items()]
        out = assignor.assign({"t": partitions}, subs)
        flat = [tp for tps in out.values() for tp in tps]
        assert len(flat) == len(set(flat))
        owned = out
    counts = sorted(len(v) for v in owned.values())
    assert sum(counts) == partitions
    assert counts[-1] - counts[0] <= 1
