"""The uniform and range assignors: coverage, balance, stickiness, determinism."""

from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from metamorphostreams.coordinator.assignors import MemberSpec, RangeAssignor, UniformAssignor
from metamorphostreams.coordinator.records import Assignment

TOPICS = [uuid.UUID(int=i) for i in range(1, 5)]

topics_strategy = st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 12), min_size=1)


@st.composite
def group_strategy(
    draw: st.DrawFn, homogeneous: bool = False
) -> tuple[dict[str, MemberSpec], dict[uuid.UUID, int]]:
    topics = draw(topics_strategy)
    n = draw(st.integers(1, 6))
    shared = frozenset(draw(st.sets(st.sampled_from(sorted(topics, key=str)), min_size=1)))
    members = {}
    for i in range(n):
        subs = (
            shared
            if homogeneous
            else frozenset(draw(st.sets(st.sampled_from(sorted(topics, key=str)))))
        )
        current = {
            t: frozenset(draw(st.sets(st.integers(0, 14), max_size=4)))
            for t in draw(st.sets(st.sampled_from(TOPICS), max_size=2))
        }
        members[f"m{i}"] = MemberSpec(
            subs, instance_id=draw(st.none() | st.just(f"i{i}")), assignment=current
        )
    return members, topics


def check_coverage(
    members: dict[str, MemberSpec], topics: dict[uuid.UUID, int], result: dict[str, Assignment]
) -> None:
    owners: Counter[tuple[uuid.UUID, int]] = Counter()
    for m, a in result.items():
        for t, ps in a.items():
            assert t in members[m].topics  # only subscribed topics
            for p in ps:
                assert 0 <= p < topics[t]
                owners[(t, p)] += 1
    expected = {
        (t, p)
        for t, n in topics.items()
        for p in range(n)
        if any(t in s.topics for s in members.values())
    }
    assert set(owners) == expected
    assert all(c == 1 for c in owners.values())


@given(group_strategy())
def test_uniform_covers_every_subscribed_partition_once(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, topics = group
    check_coverage(members, topics, UniformAssignor().assign(members, topics))


@given(group_strategy(homogeneous=True))
def test_uniform_is_balanced_and_sticky(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, topics = group
    result = UniformAssignor().assign(members, topics)
    counts = [sum(len(ps) for ps in result.get(m, {}).values()) for m in members]
    assert max(counts) - min(counts) <= 1
    # Fed its own answer back, it changes nothing.
    again = {
        m: MemberSpec(s.topics, s.instance_id, assignment=result.get(m, {}))
        for m, s in members.items()
    }
    assert UniformAssignor().assign(again, topics) == result


def test_uniform_moves_only_what_balance_needs() -> None:
    t = TOPICS[0]
    members = {
        "a": MemberSpec(frozenset({t}), assignment={t: frozenset(range(6))}),
        "b": MemberSpec(frozenset({t}), assignment={t: frozenset()}),
    }
    result = UniformAssignor().assign(members, {t: 6})
    assert len(result["a"][t]) == 3 and result["a"][t] <= frozenset(range(6))
    members["c"] = MemberSpec(frozenset({t}))
    members = {m: MemberSpec(s.topics, assignment=result.get(m, {})) for m, s in members.items()}
    third = UniformAssignor().assign(members, {t: 6})
    assert third["a"][t] <= result["a"][t]
    assert third["b"][t] <= result["b"][t]
    assert sorted(len(third[m][t]) for m in "abc") == [2, 2, 2]


@given(group_strategy())
def test_range_covers_with_contiguous_ranges(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, topics = group
    result = RangeAssignor().assign(members, topics)
    check_coverage(members, topics, result)
    for a in result.values():
        for ps in a.values():
            assert sorted(ps) == list(range(min(ps), max(ps) + 1))


def test_range_orders_static_members_by_instance_id() -> None:
    t = TOPICS[0]
    members = {
        "zzz": MemberSpec(frozenset({t}), instance_id="a"),
        "aaa": MemberSpec(frozenset({t}), instance_id="b"),
        "dyn": MemberSpec(frozenset({t})),
    }
    result = RangeAssignor().assign(members, {t: 7})
    assert result["zzz"][t] == frozenset({0, 1, 2})
    assert result["aaa"][t] == frozenset({3, 4})
    assert result["dyn"][t] == frozenset({5, 6})
