"""The leader's view of one replicated partition (Kafka's Partition, leader side).

Pure bookkeeping, no I/O: each follower's log end offset and the last time it was caught
up, the in-sync replica set as last written to the partition state (with that znode's
version), and an ISR change in flight. The replica manager feeds it follower fetches and
the partition state's changes; it answers what the high watermark may be and which ISR
change to write.

Kafka's rules, which these follow:
- A follower's log end offset is the offset it fetches from. It is caught up at a fetch
  when that offset reaches the leader's log end offset, or the log end offset the leader
  had at the follower's previous fetch (it has then read everything the previous fetch
  returned); ``last_caught_up_ms`` keeps the time of that.
- The ISR grows by a follower not in it, when its fetch shows that its log end offset
  reached both the high watermark and the start offset of the leader's current epoch, and
  shrinks by followers
  not caught up within ``replica.lag.time.max.ms``.
- The high watermark is the smallest log end offset over the "maximal" ISR: the ISR plus a
  follower being added (an expansion counts at once, a shrink only once it is written).
  It never moves back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FollowerState", "IsrChange", "LeaderState"]

UNKNOWN_OFFSET = -1


@dataclass(slots=True)
class FollowerState:
    """What the leader knows of one follower from its fetches."""

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    last_fetch_leader_end_offset: int = UNKNOWN_OFFSET


@dataclass(frozen=True, slots=True)
class IsrChange:
    """An ISR to write to the partition state, expected at ``zk_version``."""

    isr: tuple[int, ...]
    zk_version: int


@dataclass(slots=True)
class LeaderState:
    """One partition this broker leads in a cluster. Loop-owned."""

    topic: str
    partition: int
    broker_id: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    zk_version: int
    epoch_start_offset: int
    followers: dict[int, FollowerState] = field(default_factory=dict)
    pending: IsrChange | None = None

    @classmethod
    def start(
        cls,
        topic: str,
        partition: int,
        broker_id: int,
        *,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        zk_version: int,
        epoch_start_offset: int,
        now_ms: int,
    ) -> LeaderState:
        """A leader that has just been elected: followers' offsets unknown, each counted as
        caught up now (Kafka resets their state the same way on a leader change)."""
        state = cls(
            topic, partition, broker_id, leader_epoch, replicas, isr, zk_version, epoch_start_offset
        )
        for replica in replicas:
            if replica != broker_id:
                state.followers[replica] = FollowerState(last_caught_up_ms=now_ms)
        return state

    # -- the partition state changed (watch, or our own write) ----------------------------

    def adopt(self, replicas: tuple[int, ...], isr: tuple[int, ...], zk_version: int) -> bool:
        """Take a newer partition state of the same leader epoch (the controller removed a
        dead broker, or our own write came back); False when it is not newer."""
        if zk_version <= self.zk_version:
            return False
        self.isr = isr
        self.zk_version = zk_version
        self.pending = None
        if replicas != self.replicas:
            self.replicas = replicas
            for gone in set(self.followers) - set(replicas):
                del self.followers[gone]
            for replica in replicas:
                if replica != self.broker_id and replica not in self.followers:
                    self.followers[replica] = FollowerState()
        return True

    def written(self, change: IsrChange, zk_version: int) -> None:
        """Our ISR write succeeded: the znode is at ``zk_version``."""
        if self.pending == change:
            self.pending = None
        if zk_version > self.zk_version:
            self.isr = change.isr
            self.zk_version = zk_version

    def write_failed(self, change: IsrChange) -> None:
        """The write lost a race; the watch brings the state that won."""
        if self.pending == change:
            self.pending = None

    # -- followers ------------------------------------------------------------------------

    def on_follower_fetch(
        self, replica_id: int, fetch_offset: int, leader_end_offset: int, now_ms: int
    ) -> bool:
        """Record a follower's fetch; False when ``replica_id`` is not a replica."""
        follower = self.followers.get(replica_id)
        if follower is None:
            return False
        if fetch_offset >= leader_end_offset:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, now_ms)
        elif fetch_offset >= follower.last_fetch_leader_end_offset >= 0:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, follower.last_fetch_ms)
        follower.log_end_offset = fetch_offset
        follower.last_fetch_ms = now_ms
        follower.last_fetch_leader_end_offset = leader_end_offset
        return True

    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR the high watermark waits for: with a pending expansion, the larger one."""
        pending = self.pending
        if pending is not None and len(pending.isr) > len(self.isr):
            return pending.isr
        return self.isr

    def high_watermark(self, leader_end_offset: int) -> int:
        """The smallest log end offset over the maximal ISR (the leader's own included)."""
        hw = leader_end_offset
        for replica in self.maximal_isr():
            if replica == self.broker_id:
                continue
            follower = self.followers.get(replica)
            offset = follower.log_end_offset if follower is not None else UNKNOWN_OFFSET
            if offset < hw:
                hw = offset
        return hw

    def expansion(self, replica_id: int, high_watermark: int) -> IsrChange | None:
        """The ISR with ``replica_id`` added, when that follower, which has just fetched, is
        missing from it and caught up (Kafka looks only at the follower fetching: a
        follower that stopped fetching, dead, never comes back in on another's fetch)."""
        follower = self.followers.get(replica_id)
        if self.pending is not None or follower is None or replica_id in self.isr:
            return None
        offset = follower.log_end_offset
        if offset < high_watermark or offset < self.epoch_start_offset:
            return None
        isr = tuple(r for r in self.replicas if r in self.isr or r == replica_id)
        isr += tuple(r for r in self.isr if r not in isr)
        return self._propose(isr)

    def shrink(self, now_ms: int, lag_max_ms: int, leader_end_offset: int) -> IsrChange | None:
        """The ISR without the followers that have not caught up for ``lag_max_ms``."""
        if self.pending is not None:
            return None
        lagging = [
            replica
            for replica in self.isr
            if replica != self.broker_id
            and (f := self.followers.get(replica)) is not None
            and now_ms - f.last_caught_up_ms > lag_max_ms
            and f.log_end_offset < leader_end_offset
        ]
        if not lagging:
            return None
        return self._propose(tuple(r for r in self.isr if r not in lagging))

    def _propose(self, isr: tuple[int, ...]) -> IsrChange:
        change = IsrChange(isr, self.zk_version)
        self.pending = change
        return change
