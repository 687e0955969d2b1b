"""The log cleaner: deduplication, tombstones, dirty ratio and compaction lags, compression,
batch boundaries, the cleaner checkpoint, transactions, corrupt segments."""

from __future__ import annotations

from pathlib import Path

from metamorphostreams.protocol.record_batch import CompressionType
from metamorphostreams.protocol.records import ControlRecordType, parse_control_key
from metamorphostreams.storage import CleanerConfig, LogConfig, OffsetCheckpointFile
from metamorphostreams.storage.log_cleaner_manager import cleanable_offsets

from .cleaner_helpers import (
    CLEANER,
    COMPACT,
    T0,
    all_batches,
    data_records,
    latest_values,
    new_cleaner,
    open_manager,
    put,
)


def fill(log, rounds: int, keys: int, now_ms: int = T0, value_size: int = 40) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    model: dict[bytes, bytes] = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = b"key-%d" % k, (b"%d-" % r) * (value_size // 3)
            put(log, [(key, value)], now_ms)
            model[key] = value
    return model


def test_keeps_the_latest_value_of_each_key(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log, rounds=20, keys=10)
    before_end = log.log_end_offset
    active = log.active_segment
    assert len(log.segments) > 5
    cleaner = new_cleaner(manager)

    assert cleaner.clean_once(T0)

    records = data_records(log)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert latest_values(records) == model
    # every key once below the active segment; the active segment is untouched
    below = [r for r in records if r.offset < active.base_offset]
    assert len({r.key for r in below}) == len(below)
    assert log.active_segment is active
    assert log.log_end_offset == before_end
    assert log.log_start_offset == 0
    assert log.segments[0].base_offset == 0
    checkpoint = OffsetCheckpointFile(tmp_path / "cleaner-offset-checkpoint").read()
    assert checkpoint == {("t", 0): active.base_offset}
    # nothing more to do until new data arrives
    assert not cleaner.clean_once(T0)
    # reads across the gaps still work, from any offset
    result = log.read(1, 1 << 20, max_offset=log.high_watermark, min_one_message=True)
    assert result.size > 0
    manager.close()


def test_clean_survives_a_restart(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log, rounds=10, keys=8)
    new_cleaner(manager).clean_once(T0)
    expected = [(r.offset, r.key, r.value) for r in data_records(log)]
    manager.close()
    manager = open_manager(tmp_path)
    log = manager.get_log("t", 0)
    assert log is not None
    assert [(r.offset, r.key, r.value) for r in data_records(log)] == expected
    assert latest_values(data_records(log)) == model
    assert not list(tmp_path.glob("t-0/*.cleaned")) and not list(tmp_path.glob("t-0/*.swap"))
    cleaner = new_cleaner(manager)
    assert cleaner.last_clean_offset("t", 0) is not None
    manager.close()


def test_batches_keep_their_offsets_and_codec(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    for r in range(12):
        pairs = [(b"a", b"%d" % r), (b"b-%d" % r, b"x" * 50), (b"c", b"%d" % r)]
        put(log, pairs, compression=CompressionType.GZIP)
    log.roll()
    before = {h.base_offset: h for h, _ in all_batches(log)}
    new_cleaner(manager).clean_once(T0)
    after = all_batches(log)
    for header, records in after:
        original = before[header.base_offset]
        assert header.last_offset == original.last_offset
        assert header.compression == CompressionType.GZIP
        assert header.producer_id == original.producer_id
        assert all(header.base_offset <= r.offset <= header.last_offset for r in records)
    keys = [r.key for _, recs in after for r in recs]
    assert keys.count(b"a") == 1 and keys.count(b"c") == 1
    assert len([k for k in keys if k is not None and k.startswith(b"b-")]) == 12
    manager.close()


def test_tombstones_are_kept_for_delete_retention_then_removed(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    put(log, [(b"gone", b"v1"), (b"kept", b"v1")])
    put(log, [(b"gone", None)])
    fill(log, rounds=3, keys=5)
    log.roll()
    cleaner = new_cleaner(manager)

    assert cleaner.clean_once(T0)
    tombstone_batches = [
        h for h, recs in all_batches(log) if any(r.key == b"gone" and r.value is None for r in recs)
    ]
    assert len(tombstone_batches) == 1
    header = tombstone_batches[0]
    assert header.has_delete_horizon
    assert header.base_timestamp == T0 + COMPACT.delete_retention_ms  # Kafka 3.x's horizon
    assert [r.value for r in data_records(log) if r.key == b"gone"] == [None]

    # new dirt, cleaned before the horizon: the tombstone stays
    fill(log, rounds=2, keys=5, now_ms=T0 + 10)
    log.roll()
    assert cleaner.clean_once(T0 + 10)
    assert [r.value for r in data_records(log) if r.key == b"gone"] == [None]

    # after it: gone
    later = T0 + COMPACT.delete_retention_ms + 1
    fill(log, rounds=2, keys=5, now_ms=later)
    log.roll()
    assert cleaner.clean_once(later)
    assert [r for r in data_records(log) if r.key == b"gone"] == []
    assert [r.value for r in data_records(log) if r.key == b"kept"] == [b"v1"]
    manager.close()


def test_dirty_ratio_decides(tmp_path: Path) -> None:
    manager = open_manager(tmp_path, COMPACT.replace(min_cleanable_dirty_ratio=0.5))
    log = manager.create_log("t", 0)
    fill(log, rounds=10, keys=10)
    log.roll()
    cleaner = new_cleaner(manager)
    assert cleaner.clean_once(T0)  # all dirty: ratio 1.0
    first_dirty = cleaner.last_clean_offset("t", 0)
    assert first_dirty == log.active_segment.base_offset
    # a little new dirt against a clean head: below the ratio
    fill(log, rounds=1, keys=3)
    log.roll()
    assert cleaner.filthiest(T0) is None
    assert cleaner.last_clean_offset("t", 0) == first_dirty
    # more dirt than clean: above it
    fill(log, rounds=2, keys=10)
    log.roll()
    ltc = cleaner.filthiest(T0)
    assert ltc is not None and ltc.cleanable_ratio > 0.5
    assert ltc.first_dirty_offset == first_dirty
    manager.close()


def test_delete_only_policy_is_never_cleaned(tmp_path: Path) -> None:
    manager = open_manager(tmp_path, COMPACT.replace(cleanup_policy=("delete",)))
    log = manager.create_log("t", 0)
    fill(log, rounds=5, keys=5)
    assert not new_cleaner(manager).clean_once(T0)
    manager.close()


def test_min_compaction_lag_keeps_recent_segments_dirty(tmp_path: Path) -> None:
    config = COMPACT.replace(min_compaction_lag_ms=60_000)
    manager = open_manager(tmp_path, config)
    log = manager.create_log("t", 0)
    fill(log, rounds=5, keys=5, now_ms=T0)
    old_end = log.log_end_offset
    fill(log, rounds=5, keys=5, now_ms=T0 + 50_000)
    first_dirty, uncleanable, _ = cleanable_offsets(log, None, T0 + 60_001)
    assert first_dirty == 0
    assert uncleanable <= old_end + 1
    assert uncleanable > 0
    cleaner = new_cleaner(manager)
    assert cleaner.clean_once(T0 + 60_001)
    # the records of the second fill are all still there
    recent = [r for r in data_records(log) if r.timestamp == T0 + 50_000]
    assert len(recent) == 25
    manager.close()


def test_max_compaction_lag_forces_a_clean(tmp_path: Path) -> None:
    config = COMPACT.replace(min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=10_000)
    manager = open_manager(tmp_path, config)
    log = manager.create_log("t", 0)
    fill(log, rounds=2, keys=40)  # few duplicates: ratio 1.0 > 0.99 anyway the first time
    cleaner = new_cleaner(manager)
    assert cleaner.clean_once(T0)
    fill(log, rounds=1, keys=3, now_ms=T0 + 1)
    log.roll()
    assert cleaner.filthiest(T0 + 5_000) is None  # ratio low, lag not passed
    ltc = cleaner.filthiest(T0 + 20_000)
    assert ltc is not None and ltc.need_compaction_now
    manager.close()


def test_null_keys_are_dropped(tmp_path: Path) -> None:
    """A compacted topic refuses keyless records, but one that was a delete topic before
    may hold them: the cleaner drops them."""
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    log.update_config(COMPACT.replace(cleanup_policy=("delete",)))
    put(log, [(None, b"no key"), (b"k", b"v")])
    log.update_config(COMPACT)
    fill(log, rounds=3, keys=5)
    log.roll()
    new_cleaner(manager).clean_once(T0)
    assert all(r.key is not None for r in data_records(log))
    manager.close()


def test_offset_map_too_small_cleans_in_steps(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    model = fill(log, rounds=4, keys=30)
    tiny = CleanerConfig(dedupe_buffer_size=24 * 20, io_buffer_load_factor=1.0)
    cleaner = new_cleaner(manager, tiny)
    steps = 0
    while cleaner.clean_once(T0):
        steps += 1
        assert steps < 50
    assert steps > 1
    assert latest_values(data_records(log)) == model
    below = [r for r in data_records(log) if r.offset < log.active_segment.base_offset]
    assert len({r.key for r in below}) == len(below)
    manager.close()


def test_corrupt_segment_makes_the_partition_uncleanable(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    fill(log, rounds=5, keys=5)
    log.roll()
    path = log.segments[0].log_path
    with open(path, "r+b") as f:
        f.seek(70)
        f.write(b"\xff\xff\xff")  # inside the first batch's records: CRC mismatch
    cleaner = new_cleaner(manager)
    assert not cleaner.clean_once(T0)
    assert ("t", 0) in cleaner.uncleanable
    assert not cleaner.clean_once(T0)
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    manager.close()


def test_cleaner_checkpoint_reset_when_out_of_range(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    fill(log, rounds=3, keys=3)
    log.roll()
    OffsetCheckpointFile(tmp_path / "cleaner-offset-checkpoint").write({("t", 0): 10_000})
    cleaner = new_cleaner(manager)
    assert cleaner.filthiest(T0) is not None
    assert cleaner.last_clean_offset("t", 0) == 0
    manager.close()


def test_internal_topic_config_is_compacted(tmp_path: Path) -> None:
    config = LogConfig.from_props({"cleanup.policy": "compact", "segment.bytes": "1048576"})
    assert config.compact_enabled and not config.delete_enabled
    assert CLEANER.offset_map_slots > 0


def test_control_keys_parse() -> None:
    # the helpers used by the transaction tests agree with the protocol module
    assert parse_control_key(b"\x00\x00\x00\x00") == ControlRecordType.ABORT
