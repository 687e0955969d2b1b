from __future__ import annotations

import pytest

from metamorphostreams.storage import TOPIC_CONFIG_NAMES, LogConfig, LogConfigError
from metamorphostreams.storage.log_config import LONG_MAX


def test_kafka_defaults() -> None:
    c = LogConfig()
    assert c.segment_bytes == 1073741824
    assert c.segment_ms == 604800000
    assert c.retention_ms == 604800000
    assert c.retention_bytes == -1
    assert c.max_message_bytes == 1048588
    assert c.index_interval_bytes == 4096
    assert c.segment_index_bytes == 10485760
    assert c.flush_messages == LONG_MAX and c.flush_ms == LONG_MAX
    assert c.message_timestamp_type == "CreateTime"
    assert c.cleanup_policy == ("delete",)
    assert c.min_insync_replicas == 1
    assert c.file_delete_delay_ms == 60000
    assert c.compression_type == "producer"


def test_from_props_overrides_on_defaults() -> None:
    base = LogConfig(retention_ms=5)
    c = LogConfig.from_props(
        {
            "retention.ms": "-1",
            "cleanup.policy": "compact,delete",
            "message.timestamp.type": "LogAppendTime",
            "unclean.leader.election.enable": "TRUE",
            "min.cleanable.dirty.ratio": "0.25",
        },
        base,
    )
    assert c.retention_ms == -1
    assert c.cleanup_policy == ("compact", "delete")
    assert c.compact_enabled and c.delete_enabled
    assert c.log_append_time
    assert c.unclean_leader_election_enable is True
    assert c.min_cleanable_dirty_ratio == 0.25
    assert LogConfig.from_props({}, base).retention_ms == 5


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("retention.ms", "abc", "Not a number of type LONG"),
        ("retention.ms", "-2", "at least -1"),
        ("segment.bytes", "1000", "at least 1048576"),
        ("segment.bytes", "99999999999", "Not a number of type INT"),
        ("cleanup.policy", "forever", "String must be one of"),
        ("message.timestamp.type", "createtime", "String must be one of"),
        ("preallocate", "yes", "true or false"),
        ("min.insync.replicas", "0", "at least 1"),
        ("compression.type", "brotli", "String must be one of"),
        ("compression.gzip.level", "10", "between 1 and 9"),
        ("min.cleanable.dirty.ratio", "1.5", "between"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(name: str, value: str, fragment: str) -> None:
    with pytest.raises(LogConfigError) as info:
        LogConfig.from_props({name: value})
    assert info.value.name == name
    assert f"Invalid value {value} for configuration {name}" in str(info.value)
    assert fragment in str(info.value)


def test_unknown_name() -> None:
    with pytest.raises(LogConfigError, match=r"Unknown topic config name: retention\.hours"):
        LogConfig.from_props({"retention.hours": "1"})


def test_compaction_lags_must_be_ordered() -> None:
    with pytest.raises(LogConfigError, match=r"min\.compaction\.lag\.ms"):
        LogConfig.from_props({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})


def test_to_props_round_trips() -> None:
    c = LogConfig(retention_ms=123, cleanup_policy=("compact",), preallocate=True)
    props = c.to_props()
    assert set(props) == TOPIC_CONFIG_NAMES
    assert props["retention.ms"] == "123"
    assert props["preallocate"] == "true"
    assert LogConfig.from_props(props) == c


def test_server_synonyms_priority_and_units() -> None:
    c = LogConfig.from_server_props(
        {
            "log.retention.hours": "1",
            "log.retention.minutes": "2",
            "log.segment.bytes": "2097152",
            "log.roll.hours": "3",
            "message.max.bytes": "5000",
            "broker.id": "7",
        }
    )
    assert c.retention_ms == 2 * 60 * 1000  # minutes beat hours
    assert c.segment_bytes == 2097152
    assert c.segment_ms == 3 * 3600 * 1000
    assert c.max_message_bytes == 5000
    assert LogConfig.from_server_props({"log.retention.ms": "7"}).retention_ms == 7
    assert LogConfig.from_server_props({"log.retention.hours": "-1"}).retention_ms == -1
    assert LogConfig.from_server_props({}) == LogConfig()


def test_max_segment_ms_for_compacted_topics() -> None:
    assert LogConfig(segment_ms=100).max_segment_ms == 100
    c = LogConfig(segment_ms=100, cleanup_policy=("compact",), max_compaction_lag_ms=40)
    assert c.max_segment_ms == 40
