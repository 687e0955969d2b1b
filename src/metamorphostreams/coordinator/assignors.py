"""Server-side partition assignors for KIP-848 groups: ``uniform`` and ``range``.

Both are deterministic functions of (members, topics): the same input gives the same
assignment, so a replayed log and a live coordinator agree. The algorithms are ours, with
Kafka's guarantees: every subscribed partition goes to exactly one subscribed member;
``uniform`` keeps partitions where they are and moves only what balance needs (counts of
members with the same subscription differ by at most one); ``range`` gives each member a
contiguous range of every topic it subscribes to, members ordered by instance id (static
members) then member id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .records import Assignment


@dataclass(frozen=True)
class MemberSpec:
    """What an assignor knows of a member: its subscription and its current target."""

    topics: frozenset[uuid.UUID]
    instance_id: str | None = None
    rack_id: str | None = None
    assignment: Assignment = field(default_factory=dict)


class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]:
        """``topics``: topic id -> partition count, for the topics the group subscribes to."""
        ...


def _freeze(raw: dict[str, dict[uuid.UUID, set[int]]]) -> dict[str, Assignment]:
    return {m: {t: frozenset(ps) for t, ps in a.items() if ps} for m, a in raw.items()}


class UniformAssignor:
    """Sticky and balanced: keep valid partitions, then fill and even out the counts."""

    name = "uniform"

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]:
        order = sorted(members)
        result: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in order}
        count = dict.fromkeys(order, 0)
        taken: set[tuple[uuid.UUID, int]] = set()
        subscribers = {t: [m for m in order if t in members[m].topics] for t in topics}
        total = sum(topics[t] for t in topics if subscribers[t])
        quota = -(-total // len(order)) if order else 0  # ceil: nobody keeps more than this

        # 1. Stickiness: keep what is still valid, up to the quota.
        for m in order:
            for t in sorted(members[m].assignment, key=str):
                if t not in members[m].topics or t not in topics:
                    continue
                for p in sorted(members[m].assignment[t]):
                    if p < topics[t] and (t, p) not in taken and count[m] < quota:
                        taken.add((t, p))
                        result[m].setdefault(t, set()).add(p)
                        count[m] += 1

        # 2. Each free partition to the least loaded subscriber.
        for t in sorted(topics, key=str):
            subs = subscribers[t]
            if not subs:
                continue
            for p in range(topics[t]):
                if (t, p) in taken:
                    continue
                m = min(subs, key=lambda s: (count[s], s))
                result[m].setdefault(t, set()).add(p)
                count[m] += 1
                taken.add((t, p))

        # 3. Even out: move from the most to the least loaded eligible member.
        moved = True
        while moved:
            moved = False
            for src in sorted(order, key=lambda s: (-count[s], s)):
                for t in sorted(result[src], key=str):
                    dst = min(subscribers[t], key=lambda s: (count[s], s))
                    if count[src] - count[dst] > 1 and result[src][t]:
                        p = max(result[src][t])
                        result[src][t].discard(p)
                        result[dst].setdefault(t, set()).add(p)
                        count[src] -= 1
                        count[dst] += 1
                        moved = True
                        break
                if moved:
                    break
        return _freeze(result)


class RangeAssignor:
    """Per topic, contiguous ranges in member order; the first members get one extra."""

    name = "range"

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]:
        def order_key(member_id: str) -> tuple[int, str]:
            instance_id = members[member_id].instance_id
            return (0, instance_id) if instance_id is not None else (1, member_id)

        result: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in members}
        for t in sorted(topics, key=str):
            subs = sorted((m for m in members if t in members[m].topics), key=order_key)
            if not subs:
                continue
            base, extra = divmod(topics[t], len(subs))
            start = 0
            for i, m in enumerate(subs):
                n = base + (1 if i < extra else 0)
                if n:
                    result[m][t] = set(range(start, start + n))
                start += n
        return _freeze(result)


ASSIGNORS: dict[str, type[UniformAssignor] | type[RangeAssignor]] = {
    UniformAssignor.name: UniformAssignor,
    RangeAssignor.name: RangeAssignor,
}
