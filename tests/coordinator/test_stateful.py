"""Hypothesis state machines: random clients against the coordinator, invariants checked
after every step, and a replay of the log compared with the live state."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from metamorphostreams.coordinator.classic_group import ClassicGroup, ClassicGroupState
from metamorphostreams.coordinator.consumer_group import ConsumerGroup
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import ORDERS_ID, Harness, durable_state
from .test_consumer_group import TP

S = ClassicGroupState


def check_classic_invariants(group: ClassicGroup) -> None:
    members = group.members
    assert group.num_awaiting_join == sum(m.awaiting_join is not None for m in members.values())
    for name, count in group.supported_protocols.items():
        assert count == sum(any(n == name for n, _ in m.protocols) for m in members.values())
    assert group.static_members == {
        m.group_instance_id: mid for mid, m in members.items() if m.group_instance_id is not None
    }
    assert not (group.pending_join_members & set(members))
    assert group.pending_sync_members <= set(members)
    if members:
        assert group.leader_id in members
    if group.state is S.EMPTY:
        assert not members
    if group.state in (S.STABLE, S.COMPLETING_REBALANCE):
        assert group.num_awaiting_join == 0 and group.protocol_name is not None
    if group.state is not S.COMPLETING_REBALANCE:
        assert all(m.awaiting_sync is None for m in members.values())


@dataclass
class ClassicClient:
    instance: str | None
    member_id: str = ""
    generation: int = -1
    leader: bool = False
    peers: list[str] = field(default_factory=list)
    join: Any = None  # a parked JoinGroup Result
    sync: Any = None
    crashed: bool = False


class ClassicGroupMachine(RuleBasedStateMachine):
    """Clients join, sync, heartbeat, commit, leave and crash while time moves on."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(
            group_initial_rebalance_delay_ms=100,
            group_min_session_timeout_ms=1_000,
            group_classic_new_member_join_timeout_ms=3_000,
        )
        self.clients: list[ClassicClient] = []
        self.max_generation = 0

    def _kw(self, c: ClassicClient) -> dict[str, Any]:
        return {"instance": c.instance, "session": 1_000, "rebalance": 2_000}

    def _collect(self) -> None:
        for c in self.clients:
            if c.join is not None:
                resp = self.h.answer(c.join)
                if resp is not None:
                    c.join = None
                    if resp.error_code == ErrorCode.MEMBER_ID_REQUIRED or resp.error_code == 0:
                        c.member_id = resp.member_id
                    if resp.error_code == 0:
                        c.generation, c.leader = resp.generation_id, resp.leader == resp.member_id
                        c.peers = [m.member_id for m in resp.members]
                    elif resp.error_code in (
                        ErrorCode.UNKNOWN_MEMBER_ID,
                        ErrorCode.FENCED_INSTANCE_ID,
                    ):
                        c.member_id, c.generation = "", -1
            if c.sync is not None and self.h.answer(c.sync) is not None:
                c.sync = None

    @rule(static=st.booleans())
    def new_client(self, static: bool) -> None:
        if len(self.clients) < 5:
            self.clients.append(ClassicClient(f"i{len(self.clients)}" if static else None))

    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if not c.crashed and c.join is None]
        if live:
            c = data.draw(st.sampled_from(live))
            meta = data.draw(st.sampled_from([b"a", b"b"]))
            c.join = self.h.join("g", c.member_id, protocols=[("range", meta)], **self._kw(c))
            self._collect()

    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        ready = [c for c in self.clients if not c.crashed and c.generation >= 0 and c.sync is None]
        if ready:
            c = data.draw(st.sampled_from(ready))
            plan = {p: p.encode() for p in c.peers} if c.leader else None
            c.sync = self.h.sync("g", c.member_id, c.generation, plan, instance=c.instance)
            self._collect()

    @rule()
    def everyone_rejoins_and_syncs(self) -> None:
        for c in self.clients:
            if not c.crashed and c.join is None:
                c.join = self.h.join("g", c.member_id, protocols=[("range", b"a")], **self._kw(c))
                self._collect()
        self.h.tick(200)
        self._collect()
        for c in self.clients:
            if not c.crashed and c.generation >= 0 and c.sync is None:
                plan = {p: p.encode() for p in c.peers} if c.leader else None
                c.sync = self.h.sync("g", c.member_id, c.generation, plan, instance=c.instance)
                self._collect()

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if not c.crashed and c.member_id]
        if live:
            c = data.draw(st.sampled_from(live))
            self.h.heartbeat("g", c.member_id, c.generation, instance=c.instance)
            self._collect()

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if not c.crashed]
        if live:
            c = data.draw(st.sampled_from(live))
            self.h.commit(
                "g",
                {("orders", 0): data.draw(st.integers(0, 100))},
                generation=c.generation,
                member_id=c.member_id,
            )
            self._collect()

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if not c.crashed and c.member_id]
        if live:
            c = data.draw(st.sampled_from(live))
            self.h.leave("g", [(c.member_id, c.instance)])
            c.member_id, c.generation = "", -1
            self._collect()

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if not c.crashed]
        if live:
            c = data.draw(st.sampled_from(live))
            c.crashed = True
            for parked in (c.join, c.sync):
                if parked is not None and parked.pending is not None:
                    self.h.coord.cancel(parked.pending)
            c.join = c.sync = None
            if c.instance is not None:  # a static member restarts under the same instance id
                self.clients.append(ClassicClient(c.instance))

    @rule(ms=st.sampled_from([0, 50, 100, 400, 1_000, 2_500]))
    def advance(self, ms: int) -> None:
        self.h.tick(ms)
        self._collect()

    @invariant()
    def consistent(self) -> None:
        group = self.h.coord._shard.groups.get("g")
        if isinstance(group, ClassicGroup):
            check_classic_invariants(group)
            assert group.generation_id >= self.max_generation
            self.max_generation = group.generation_id
            waiting = {m.awaiting_join for m in group.members.values()} | {
                m.awaiting_sync for m in group.members.values()
            }
            assert set(self.h.coord._shard.pending) <= waiting  # nothing parked is forgotten
            if group.state in (S.STABLE, S.EMPTY):
                assert durable_state(self.h.restarted()) == durable_state(self.h.coord)
        else:
            assert not self.h.coord._shard.pending


@dataclass
class Kip848Client:
    member_id: str
    instance: str | None
    epoch: int = 0
    assigned: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    owned: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    alive: bool = True


class ConsumerGroupMachine(RuleBasedStateMachine):
    """KIP-848 members join, heartbeat, revoke late, leave and die; partitions grow."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(topics={"orders": (ORDERS_ID, 4)})
        self.clients: list[Kip848Client] = []
        self.n = 0

    def _send(self, c: Kip848Client, **extra: Any) -> Any:
        if c.epoch == 0:
            resp = self.h.cg_heartbeat(
                group_id="c",
                member_id=c.member_id,
                member_epoch=0,
                instance_id=c.instance,
                rebalance_timeout_ms=5_000,
                subscribed_topic_names=["orders"],
                topic_partitions=[],
                **extra,
            )
        else:
            owned = [TP(topic_id=t, partitions=sorted(ps)) for t, ps in c.owned.items() if ps]
            resp = self.h.cg_heartbeat(
                group_id="c",
                member_id=c.member_id,
                member_epoch=c.epoch,
                instance_id=c.instance,
                topic_partitions=owned,
            )
        if resp.error_code in (ErrorCode.FENCED_MEMBER_EPOCH, ErrorCode.UNKNOWN_MEMBER_ID):
            c.epoch, c.assigned, c.owned = 0, {}, {}  # fenced: drop everything, rejoin later
        elif resp.error_code == 0:
            c.epoch = resp.member_epoch
            if resp.assignment is not None:
                new = {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions}
                for t, ps in new.items():  # newly given partitions are taken at once
                    c.owned.setdefault(t, set()).update(ps - c.assigned.get(t, set()))
                c.assigned = new
        return resp

    @rule(static=st.booleans())
    def join(self, static: bool) -> None:
        if sum(c.alive for c in self.clients) < 4:
            self.n += 1
            c = Kip848Client(f"m{self.n}", f"i{self.n}" if static else None)
            self.clients.append(c)
            self._send(c)

    @rule(data=st.data(), revoke=st.booleans())
    def heartbeat(self, data: st.DataObject, revoke: bool) -> None:
        live = [c for c in self.clients if c.alive]
        if live:
            c = data.draw(st.sampled_from(live))
            if revoke:  # the revocation callback has finished
                c.owned = {t: ps & c.assigned.get(t, set()) for t, ps in c.owned.items()}
            self._send(c)

    @rule(data=st.data(), static_leave=st.booleans())
    def leave(self, data: st.DataObject, static_leave: bool) -> None:
        live = [c for c in self.clients if c.alive and c.epoch > 0]
        if live:
            c = data.draw(st.sampled_from(live))
            epoch = -2 if static_leave and c.instance else -1
            self.h.cg_heartbeat(
                group_id="c", member_id=c.member_id, member_epoch=epoch, instance_id=c.instance
            )
            c.alive = False
            if epoch == -2:  # restarted under its instance id with a new member id
                self.n += 1
                self.clients.append(Kip848Client(f"m{self.n}", c.instance))

    @rule(data=st.data())
    def die(self, data: st.DataObject) -> None:
        live = [c for c in self.clients if c.alive]
        if live:
            data.draw(st.sampled_from(live)).alive = False

    @rule(ms=st.sampled_from([0, 1_000, 5_000, 20_000]))
    def advance(self, ms: int) -> None:
        self.h.tick(ms)

    @rule()
    def grow(self) -> None:
        tid, n = self.h.topics["orders"]
        if n < 8:
            self.h.topics["orders"] = (tid, n + 1)

    @invariant()
    def no_partition_owned_twice(self) -> None:
        group = self.h.coord._shard.groups.get("c")
        members = group.members if isinstance(group, ConsumerGroup) else {}
        seen: Counter[tuple[uuid.UUID, int]] = Counter()
        for c in self.clients:
            if c.alive and c.member_id in members:  # fenced or gone: it stopped consuming
                seen.update((t, p) for t, ps in c.owned.items() for p in ps)
        assert all(n == 1 for n in seen.values()), seen

    @invariant()
    def server_state_consistent(self) -> None:
        group = self.h.coord._shard.groups.get("c")
        if not isinstance(group, ConsumerGroup):
            return
        owned: dict[tuple[uuid.UUID, int], int] = {}
        for m in group.members.values():
            for a in (m.assigned, m.pending_revocation):
                for t, ps in a.items():
                    for p in ps:
                        assert (t, p) not in owned
                        owned[(t, p)] = m.member_epoch
        assert owned == {
            (t, p): e for t, eps in group.partition_epochs.items() for p, e in eps.items()
        }
        assert durable_state(self.h.restarted()) == durable_state(self.h.coord)


TestClassicGroup = ClassicGroupMachine.TestCase
TestClassicGroup.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConsumerGroup = ConsumerGroupMachine.TestCase
TestConsumerGroup.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
