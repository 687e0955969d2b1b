"""LeaderEpochFileCache semantics (Kafka's LeaderEpochFileCacheTest cases, in our words)."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.storage import LeaderEpochFileCache


def cache_with(tmp_path: Path, *entries: tuple[int, int]) -> LeaderEpochFileCache:
    cache = LeaderEpochFileCache(tmp_path / "leader-epoch-checkpoint")
    for epoch, offset in entries:
        cache.assign(epoch, offset)
    return cache


def test_assign_persists_and_reloads(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (2, 6), (2, 10), (4, 11))
    assert cache.entries() == [(2, 6), (4, 11)]  # a later offset in the same epoch is a no-op
    assert (tmp_path / "leader-epoch-checkpoint").read_text() == "0\n2\n2 6\n4 11\n"
    assert LeaderEpochFileCache(tmp_path / "leader-epoch-checkpoint").entries() == [(2, 6), (4, 11)]
    assert cache.latest_epoch == 4


def test_assign_drops_non_monotonic_entries(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (1, 0), (2, 10), (3, 20))
    cache.assign(2, 15)  # epoch 3 is above the new epoch: removed, and epoch 2 moves
    assert cache.entries() == [(1, 0), (2, 15)]
    cache.assign(5, 12)  # start offset below the latest entry's: it goes
    assert cache.entries() == [(1, 0), (5, 12)]
    cache.assign(5, 3)  # same epoch, lower offset: replaced
    assert cache.entries() == [(1, 0), (5, 3)]


def test_end_offset_for(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (2, 6), (4, 11), (7, 20))
    leo = 30
    assert cache.end_offset_for(7, leo) == (7, 30)  # latest epoch: the log end offset
    assert cache.end_offset_for(4, leo) == (4, 20)
    assert cache.end_offset_for(5, leo) == (4, 20)  # unknown epoch between known ones
    assert cache.end_offset_for(2, leo) == (2, 11)
    assert cache.end_offset_for(1, leo) == (1, 6)  # below every epoch: first start offset
    assert cache.end_offset_for(8, leo) == (-1, -1)
    assert cache.end_offset_for(-1, leo) == (-1, -1)


def test_empty_cache(tmp_path: Path) -> None:
    cache = LeaderEpochFileCache(tmp_path / "none")
    assert cache.latest_epoch is None
    assert cache.end_offset_for(0, 10) == (-1, -1)
    assert cache.epoch_for_offset(5) is None


def test_epoch_for_offset(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (2, 6), (4, 11))
    assert cache.epoch_for_offset(5) is None
    assert cache.epoch_for_offset(6) == 2
    assert cache.epoch_for_offset(10) == 2
    assert cache.epoch_for_offset(11) == 4
    assert cache.epoch_for_offset(100) == 4


def test_truncate_from_end(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (2, 6), (3, 8), (4, 11))
    cache.truncate_from_end(12)
    assert cache.entries() == [(2, 6), (3, 8), (4, 11)]
    cache.truncate_from_end(8)
    assert cache.entries() == [(2, 6)]
    assert LeaderEpochFileCache(cache.path).entries() == [(2, 6)]


def test_truncate_from_start(tmp_path: Path) -> None:
    cache = cache_with(tmp_path, (2, 6), (3, 8), (4, 11))
    cache.truncate_from_start(5)
    assert cache.entries() == [(2, 6), (3, 8), (4, 11)]
    cache.truncate_from_start(9)
    assert cache.entries() == [(3, 9), (4, 11)]
    cache.truncate_from_start(11)
    assert cache.entries() == [(4, 11)]
    cache.truncate_from_start(50)
    assert cache.entries() == [(4, 50)]
    assert LeaderEpochFileCache(cache.path).entries() == [(4, 50)]
