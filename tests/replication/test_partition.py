"""The leader's bookkeeping of one replicated partition: caught-up times, the high
watermark over the maximal ISR, and which ISR changes it proposes."""

from __future__ import annotations

from metamorphostreams.replication.partition import IsrChange, LeaderState

LAG_MS = 10_000


def leader(isr: tuple[int, ...] = (0, 1, 2), now: int = 1000, start: int = 0) -> LeaderState:
    return LeaderState.start(
        "t",
        0,
        0,
        leader_epoch=3,
        replicas=(0, 1, 2),
        isr=isr,
        zk_version=5,
        epoch_start_offset=start,
        now_ms=now,
    )


def test_high_watermark_is_the_smallest_end_over_the_isr() -> None:
    state = leader()
    assert state.high_watermark(100) == -1  # followers not heard from yet
    state.on_follower_fetch(1, 80, 100, 2000)
    state.on_follower_fetch(2, 90, 100, 2000)
    assert state.high_watermark(100) == 80
    state.on_follower_fetch(1, 100, 100, 2100)
    assert state.high_watermark(100) == 90


def test_followers_outside_the_isr_do_not_hold_the_high_watermark() -> None:
    state = leader(isr=(0, 1))
    state.on_follower_fetch(1, 100, 100, 2000)
    assert state.high_watermark(100) == 100


def test_an_unknown_replica_is_refused() -> None:
    assert not leader().on_follower_fetch(7, 0, 0, 2000)


def test_a_follower_joins_only_on_its_own_fetch_once_caught_up() -> None:
    state = leader(isr=(0, 1), start=50)
    state.on_follower_fetch(2, 40, 100, 2000)
    assert state.expansion(2, high_watermark=40) is None  # below the epoch's start
    state.on_follower_fetch(2, 60, 100, 2100)
    assert state.expansion(2, high_watermark=70) is None  # below the high watermark
    assert state.expansion(1, high_watermark=60) is None  # already in
    change = state.expansion(2, high_watermark=60)
    assert change == IsrChange((0, 1, 2), 5)
    assert state.pending == change
    assert state.maximal_isr() == (0, 1, 2)  # the high watermark waits for it at once
    assert state.expansion(2, high_watermark=60) is None  # one change in flight at a time


def test_a_dead_follower_is_not_taken_back_on_another_ones_fetch() -> None:
    state = leader()
    state.on_follower_fetch(1, 100, 100, 2000)
    state.on_follower_fetch(2, 100, 100, 2000)
    assert state.adopt((0, 1, 2), (0, 2), 6)  # the controller dropped dead broker 1
    state.on_follower_fetch(2, 100, 100, 2500)
    assert state.expansion(2, high_watermark=100) is None
    assert state.isr == (0, 2)


def test_lagging_followers_leave_after_the_lag_time() -> None:
    state = leader(now=0)
    state.on_follower_fetch(1, 100, 100, 1000)  # caught up at 1000
    state.on_follower_fetch(2, 50, 100, 1000)  # behind since the start (0)
    assert state.shrink(LAG_MS, LAG_MS, 100) is None
    change = state.shrink(LAG_MS + 1, LAG_MS, 100)
    assert change == IsrChange((0, 1), 5)
    assert state.maximal_isr() == (0, 1, 2)  # a shrink counts only once written
    state.written(change, 6)
    assert (state.isr, state.zk_version, state.pending) == ((0, 1), 6, None)


def test_a_follower_that_read_what_the_last_fetch_returned_is_caught_up() -> None:
    state = leader(now=0)
    state.on_follower_fetch(1, 100, 120, 5000)  # behind at 5000
    state.on_follower_fetch(1, 120, 140, 9000)  # has what the leader had at 5000
    assert state.followers[1].last_caught_up_ms == 5000


def test_stale_states_are_ignored_and_lost_writes_forgotten() -> None:
    state = leader()
    assert not state.adopt((0, 1, 2), (0,), 5)
    change = state.shrink(LAG_MS * 10, LAG_MS, 100)
    assert change is not None
    state.write_failed(change)
    assert state.pending is None
