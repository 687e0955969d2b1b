"""Per-topic log configuration with Kafka's topic-config names, types, ranges and defaults.

``LogConfig.from_props({"retention.ms": "1000"}, defaults)`` validates the way Kafka's
``LogConfig`` (a ConfigDef) does and raises ``LogConfigError`` with Kafka-style messages;
``LogConfig.from_server_props`` reads broker-level synonyms (``log.retention.hours``,
``log.segment.bytes``, ``message.max.bytes`` ...) from ``server.properties``.
Defaults are Kafka 4.x's (storage/.../LogConfig.java, ServerLogConfigs.java).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LONG_MAX",
    "SERVER_SYNONYMS",
    "TOPIC_CONFIG_NAMES",
    "LogConfig",
    "LogConfigError",
]

LONG_MAX = 2**63 - 1  # Java's Long.MAX_VALUE: Kafka's "never" for flush/compaction settings
INT_MAX = 2**31 - 1
LONG_MIN = -(2**63)
INT_MIN = -(2**31)

CLEANUP_POLICIES = ("compact", "delete")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")


class LogConfigError(ValueError):
    """A topic config that Kafka would reject (the broker answers INVALID_CONFIG)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class LogConfig:
    """A topic's effective log settings; field names are the Kafka keys with ``_``.

    Frozen, safe to share. Build one directly (no validation, handy in tests) or through
    ``from_props`` (validated, like Kafka's ConfigDef).
    """

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 60 * 60 * 1000
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10 * 1024 * 1024
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    retention_bytes: int = -1
    retention_ms: int = 7 * 24 * 60 * 60 * 1000
    max_message_bytes: int = 1024 * 1024 + 12  # 1 MiB plus the 12-byte log overhead
    index_interval_bytes: int = 4096
    delete_retention_ms: int = 24 * 60 * 60 * 1000
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    file_delete_delay_ms: int = 60_000
    min_cleanable_dirty_ratio: float = 0.5
    cleanup_policy: tuple[str, ...] = ("delete",)
    unclean_leader_election_enable: bool = False
    min_insync_replicas: int = 1
    compression_type: str = "producer"
    compression_gzip_level: int = -1
    compression_lz4_level: int = 9
    compression_zstd_level: int = 3
    preallocate: bool = False
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_after_max_ms: int = 3_600_000  # Kafka 4.0+: one hour ahead at most
    leader_replication_throttled_replicas: tuple[str, ...] = ()
    follower_replication_throttled_replicas: tuple[str, ...] = ()
    remote_storage_enable: bool = False
    local_retention_ms: int = -2
    local_retention_bytes: int = -2
    remote_log_copy_disable: bool = False
    remote_log_delete_on_disable: bool = False

    @property
    def delete_enabled(self) -> bool:
        """``cleanup.policy`` contains ``delete``: time/size retention applies."""
        return "delete" in self.cleanup_policy

    @property
    def compact_enabled(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def max_segment_ms(self) -> int:
        """Kafka's maxSegmentMs: compacted topics also roll by max.compaction.lag.ms."""
        if self.compact_enabled and self.max_compaction_lag_ms > 0:
            return min(self.max_compaction_lag_ms, self.segment_ms)
        return self.segment_ms

    def replace(self, **changes: Any) -> LogConfig:
        return dataclasses.replace(self, **changes)

    def to_props(self) -> dict[str, str]:
        """Every setting as Kafka-formatted strings (for DescribeConfigs)."""
        out: dict[str, str] = {}
        for name, spec in _SPECS.items():
            out[name] = spec.format(getattr(self, spec.field))
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, str], defaults: LogConfig | None = None) -> LogConfig:
        """Topic overrides on top of ``defaults``; raises LogConfigError on an unknown name
        or a value of the wrong type or out of range."""
        base = defaults if defaults is not None else cls()
        changes: dict[str, Any] = {}
        for name, raw in props.items():
            spec = _SPECS.get(name)
            if spec is None:
                raise LogConfigError(name, f"Unknown topic config name: {name}")
            changes[spec.field] = spec.parse(name, raw)
        config = dataclasses.replace(base, **changes)
        config._validate_together()
        return config

    @classmethod
    def from_server_props(cls, props: Mapping[str, str]) -> LogConfig:
        """Broker-wide defaults from ``server.properties`` keys (Kafka's synonyms, e.g.
        ``log.retention.ms`` > ``log.retention.minutes`` > ``log.retention.hours``).
        Keys that are not log settings are ignored."""
        topic_props: dict[str, str] = {}
        for topic_name, synonyms in SERVER_SYNONYMS.items():
            for server_name, multiplier in synonyms:
                raw = props.get(server_name)
                if raw is None:
                    continue
                if multiplier != 1:
                    value = _parse_int(server_name, raw.strip(), INT_MIN, INT_MAX, "INT")
                    raw = str(value * multiplier if value >= 0 else -1)
                topic_props[topic_name] = raw
                break
        return cls.from_props(topic_props)

    def _validate_together(self) -> None:
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms:
            raise LogConfigError(
                "min.compaction.lag.ms",
                "conflict topic config setting min.compaction.lag.ms "
                f"({self.min_compaction_lag_ms}) > max.compaction.lag.ms "
                f"({self.max_compaction_lag_ms})",
            )


@dataclass(frozen=True, slots=True)
class _Spec:
    field: str
    parse_value: Callable[[str, str], Any]
    format: Callable[[Any], str] = str

    def parse(self, name: str, raw: str) -> Any:
        return self.parse_value(name, raw.strip())


def _invalid(name: str, raw: str, why: str) -> LogConfigError:
    return LogConfigError(name, f"Invalid value {raw} for configuration {name}: {why}")


def _parse_int(name: str, raw: str, low: int, high: int, type_name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name, raw, f"Not a number of type {type_name}") from None
    if not low <= value <= high:
        raise _invalid(name, raw, f"Not a number of type {type_name}")
    return value


def _int(low: int = INT_MIN) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        value = _parse_int(name, raw, INT_MIN, INT_MAX, "INT")
        if value < low:
            raise _invalid(name, raw, f"Value must be at least {low}")
        return value

    return parse


def _long(low: int = LONG_MIN) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        value = _parse_int(name, raw, LONG_MIN, LONG_MAX, "LONG")
        if value < low:
            raise _invalid(name, raw, f"Value must be at least {low}")
        return value

    return parse


def _double(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise _invalid(name, raw, "Not a number of type DOUBLE") from None
        if not low <= value <= high:
            raise _invalid(name, raw, f"Value must be between {low} and {high}")
        return value

    return parse


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise _invalid(name, raw, "Expected value to be either true or false")
    return lowered == "true"


def _one_of(choices: tuple[str, ...], *, case_sensitive: bool = True) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        for choice in choices:
            if raw == choice or (not case_sensitive and raw.lower() == choice.lower()):
                return choice
        raise _invalid(name, raw, f"String must be one of: {', '.join(choices)}")

    return parse


def _list_of(choices: tuple[str, ...] | None) -> Callable[[str, str], tuple[str, ...]]:
    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        if choices is not None:
            for item in items:
                if item.lower() not in choices:
                    raise _invalid(name, raw, f"String must be one of: {', '.join(choices)}")
            items = tuple(item.lower() for item in items)
        if len(set(items)) != len(items):
            raise _invalid(name, raw, "List contains duplicate values")
        return items

    return parse


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


def _format_list(value: tuple[str, ...]) -> str:
    return ",".join(value)


def _level(low: int, high: int, default: int) -> Callable[[str, str], int]:
    """Codec levels: a range plus the codec's 'default' sentinel (gzip's -1)."""

    def parse(name: str, raw: str) -> int:
        value = _parse_int(name, raw, INT_MIN, INT_MAX, "INT")
        if value != default and not low <= value <= high:
            raise _invalid(name, raw, f"Value must be between {low} and {high}")
        return value

    return parse


_SPECS: dict[str, _Spec] = {
    "segment.bytes": _Spec("segment_bytes", _int(1024 * 1024)),
    "segment.ms": _Spec("segment_ms", _long(1)),
    "segment.jitter.ms": _Spec("segment_jitter_ms", _long(0)),
    "segment.index.bytes": _Spec("segment_index_bytes", _int(4)),
    "flush.messages": _Spec("flush_messages", _long(1)),
    "flush.ms": _Spec("flush_ms", _long(0)),
    "retention.bytes": _Spec("retention_bytes", _long()),
    "retention.ms": _Spec("retention_ms", _long(-1)),
    "max.message.bytes": _Spec("max_message_bytes", _int(0)),
    "index.interval.bytes": _Spec("index_interval_bytes", _int(0)),
    "delete.retention.ms": _Spec("delete_retention_ms", _long(0)),
    "min.compaction.lag.ms": _Spec("min_compaction_lag_ms", _long(0)),
    "max.compaction.lag.ms": _Spec("max_compaction_lag_ms", _long(1)),
    "file.delete.delay.ms": _Spec("file_delete_delay_ms", _long(0)),
    "min.cleanable.dirty.ratio": _Spec("min_cleanable_dirty_ratio", _double(0.0, 1.0)),
    "cleanup.policy": _Spec("cleanup_policy", _list_of(CLEANUP_POLICIES), _format_list),
    "unclean.leader.election.enable": _Spec("unclean_leader_election_enable", _bool, _format_bool),
    "min.insync.replicas": _Spec("min_insync_replicas", _int(1)),
    "compression.type": _Spec("compression_type", _one_of(COMPRESSION_TYPES)),
    "compression.gzip.level": _Spec("compression_gzip_level", _level(1, 9, -1)),
    "compression.lz4.level": _Spec("compression_lz4_level", _level(1, 17, 9)),
    "compression.zstd.level": _Spec("compression_zstd_level", _level(-131072, 22, 3)),
    "preallocate": _Spec("preallocate", _bool, _format_bool),
    "message.timestamp.type": _Spec("message_timestamp_type", _one_of(TIMESTAMP_TYPES)),
    "message.timestamp.before.max.ms": _Spec("message_timestamp_before_max_ms", _long(0)),
    "message.timestamp.after.max.ms": _Spec("message_timestamp_after_max_ms", _long(0)),
    "leader.replication.throttled.replicas": _Spec(
        "leader_replication_throttled_replicas", _list_of(None), _format_list
    ),
    "follower.replication.throttled.replicas": _Spec(
        "follower_replication_throttled_replicas", _list_of(None), _format_list
    ),
    "remote.storage.enable": _Spec("remote_storage_enable", _bool, _format_bool),
    "local.retention.ms": _Spec("local_retention_ms", _long(-2)),
    "local.retention.bytes": _Spec("local_retention_bytes", _long(-2)),
    "remote.log.copy.disable": _Spec("remote_log_copy_disable", _bool, _format_bool),
    "remote.log.delete.on.disable": _Spec("remote_log_delete_on_disable", _bool, _format_bool),
}

TOPIC_CONFIG_NAMES: frozenset[str] = frozenset(_SPECS)

_HOURS = 60 * 60 * 1000
_MINUTES = 60 * 1000

# topic config -> broker keys that set its default, highest priority first, with the factor
# that turns the broker value into the topic unit (ServerTopicConfigSynonyms).
SERVER_SYNONYMS: dict[str, tuple[tuple[str, int], ...]] = {
    "segment.bytes": (("log.segment.bytes", 1),),
    "segment.ms": (("log.roll.ms", 1), ("log.roll.hours", _HOURS)),
    "segment.jitter.ms": (("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", _HOURS)),
    "segment.index.bytes": (("log.index.size.max.bytes", 1),),
    "flush.messages": (("log.flush.interval.messages", 1),),
    "flush.ms": (("log.flush.interval.ms", 1), ("log.flush.scheduler.interval.ms", 1)),
    "retention.bytes": (("log.retention.bytes", 1),),
    "retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", _MINUTES),
        ("log.retention.hours", _HOURS),
    ),
    "max.message.bytes": (("message.max.bytes", 1),),
    "index.interval.bytes": (("log.index.interval.bytes", 1),),
    "delete.retention.ms": (("log.cleaner.delete.retention.ms", 1),),
    "min.compaction.lag.ms": (("log.cleaner.min.compaction.lag.ms", 1),),
    "max.compaction.lag.ms": (("log.cleaner.max.compaction.lag.ms", 1),),
    "file.delete.delay.ms": (("log.segment.delete.delay.ms", 1),),
    "min.cleanable.dirty.ratio": (("log.cleaner.min.cleanable.ratio", 1),),
    "cleanup.policy": (("log.cleanup.policy", 1),),
    "unclean.leader.election.enable": (("unclean.leader.election.enable", 1),),
    "min.insync.replicas": (("min.insync.replicas", 1),),
    "compression.type": (("compression.type", 1),),
    "compression.gzip.level": (("compression.gzip.level", 1),),
    "compression.lz4.level": (("compression.lz4.level", 1),),
    "compression.zstd.level": (("compression.zstd.level", 1),),
    "preallocate": (("log.preallocate", 1),),
    "message.timestamp.type": (("log.message.timestamp.type", 1),),
    "message.timestamp.before.max.ms": (("log.message.timestamp.before.max.ms", 1),),
    "message.timestamp.after.max.ms": (("log.message.timestamp.after.max.ms", 1),),
    "local.retention.ms": (("log.local.retention.ms", 1),),
    "local.retention.bytes": (("log.local.retention.bytes", 1),),
}
