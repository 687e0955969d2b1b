"""Client-side partition assignors of the classic group protocol, by Kafka's names.

The group leader runs the assignor that the group chose on every member's subscription and
returns one assignment per member. ``range`` and ``roundrobin`` are eager (every member gives
up everything at a rebalance); ``cooperative-sticky`` keeps partitions where they are, moves
as few as balance needs, and leaves a moving partition unassigned for one generation so its
old owner revokes it before the new owner takes it (KIP-429). Pure functions; no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ASSIGNORS",
    "Assignor",
    "CooperativeStickyAssignor",
    "MemberSubscription",
    "RangeAssignor",
    "RoundRobinAssignor",
    "assignor_for",
]

TP = tuple[str, int]


@dataclass(slots=True)
class MemberSubscription:
    member_id: str
    topics: list[str]
    owned: list[TP] = field(default_factory=list)
    generation: int = -1
    group_instance_id: str | None = None
    rack: str | None = None


class Assignor:
    name = ""
    cooperative = False

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TP]]:
        raise NotImplementedError


def _sort_key(m: MemberSubscription) -> tuple[str, str]:
    # Kafka orders static members by group.instance.id, dynamic ones by member id.
    return (m.group_instance_id or m.member_id, m.member_id)


class RangeAssignor(Assignor):
    """Per topic, consecutive ranges of partitions to the members subscribed to it."""

    name = "range"

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TP]]:
        out: dict[str, list[TP]] = {m.member_id: [] for m in members}
        subscribers: dict[str, list[MemberSubscription]] = defaultdict(list)
        for m in members:
            for t in set(m.topics):
                subscribers[t].append(m)
        for topic, subs in sorted(subscribers.items()):
            count = partitions_per_topic.get(topic, 0)
            if count <= 0:
                continue
            ordered = sorted(subs, key=_sort_key)
            per, extra = divmod(count, len(ordered))
            start = 0
            for i, m in enumerate(ordered):
                n = per + (1 if i < extra else 0)
                out[m.member_id].extend((topic, p) for p in range(start, start + n))
                start += n
        return {mid: sorted(tps) for mid, tps in out.items()}


class RoundRobinAssignor(Assignor):
    """All partitions, sorted, dealt one by one to the members subscribed to their topic."""

    name = "roundrobin"

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TP]]:
        out: dict[str, list[TP]] = {m.member_id: [] for m in members}
        ordered = sorted(members, key=_sort_key)
        topics = sorted({t for m in members for t in m.topics})
        if not ordered:
            return out
        i = 0
        for topic in topics:
            for p in range(partitions_per_topic.get(topic, 0)):
                for _ in range(len(ordered)):
                    m = ordered[i % len(ordered)]
                    i += 1
                    if topic in m.topics:
                        out[m.member_id].append((topic, p))
                        break
        return out


class CooperativeStickyAssignor(Assignor):
    """Balanced, sticky, and cooperative: partitions changing owner skip one generation."""

    name = "cooperative-sticky"
    cooperative = True

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TP]]:
        subs = {m.member_id: set(m.topics) for m in members}
        ordered = sorted(members, key=_sort_key)
        valid = {
            (t, p)
            for t in {t for m in members for t in m.topics}
            for p in range(partitions_per_topic.get(t, 0))
        }
        # Previous owners: the claim of the highest generation wins a partition claimed twice.
        previous: dict[TP, tuple[int, str]] = {}
        for m in ordered:
            for tp in m.owned:
                tp = (tp[0], tp[1])
                if tp not in valid or tp[0] not in subs[m.member_id]:
                    continue
                if tp not in previous or m.generation > previous[tp][0]:
                    previous[tp] = (m.generation, m.member_id)
        current: dict[str, set[TP]] = {m.member_id: set() for m in members}
        for tp, (_gen, owner) in previous.items():
            current[owner].add(tp)
        unassigned = sorted(valid - set(previous))
        for tp in unassigned:
            eligible = [m.member_id for m in ordered if tp[0] in subs[m.member_id]]
            if eligible:
                target = min(eligible, key=lambda mid: (len(current[mid]), mid))
                current[target].add(tp)
        self._balance(current, subs)
        out = {mid: sorted(tps) for mid, tps in current.items()}
        # A partition that changes owner is withheld this generation: its old owner must
        # revoke it first (it notices the loss and rejoins, and the next round hands it over).
        for mid, tps in out.items():
            out[mid] = [tp for tp in tps if tp not in previous or previous[tp][1] == mid]
        return out

    @staticmethod
    def _balance(current: dict[str, set[TP]], subs: Mapping[str, set[str]]) -> None:
        """Move partitions from the fullest to the emptiest eligible member until even."""
        moved = True
        while moved:
            moved = False
            by_load = sorted(current, key=lambda mid: (-len(current[mid]), mid))
            for donor in by_load:
                for tp in sorted(current[donor]):
                    takers = [
                        mid
                        for mid in current
                        if tp[0] in subs[mid] and len(current[mid]) < len(current[donor]) - 1
                    ]
                    if takers:
                        taker = min(takers, key=lambda mid: (len(current[mid]), mid))
                        current[donor].discard(tp)
                        current[taker].add(tp)
                        moved = True
                        break
                if moved:
                    break


ASSIGNORS: dict[str, type[Assignor]] = {
    "range": RangeAssignor,
    "roundrobin": RoundRobinAssignor,
    "cooperative-sticky": CooperativeStickyAssignor,
}

_JAVA_NAMES = {
    "org.apache.kafka.clients.consumer.RangeAssignor": "range",
    "org.apache.kafka.clients.consumer.RoundRobinAssignor": "roundrobin",
    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor": "cooperative-sticky",
}


def assignor_for(name: str) -> Assignor:
    """An assignor by its protocol name or its Java class name (ValueError if unknown)."""
    key = _JAVA_NAMES.get(name, name)
    cls = ASSIGNORS.get(key)
    if cls is None:
        raise ValueError(
            f"unknown partition assignment strategy {name!r} (known: {', '.join(ASSIGNORS)})"
        )
    return cls()
