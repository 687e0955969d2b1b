"""Topic configs as the admin APIs see them: validation, effective values, sources, types.

Parsing and Kafka's value rules live in ``storage.LogConfig``. Here: which settings this
broker does not act on yet (setting one to a non-default value is refused with
INVALID_CONFIG instead of being silently ignored), and the DescribeConfigs view.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..storage import LogConfig, LogConfigError
from ..storage.log_config import SERVER_SYNONYMS, TOPIC_CONFIG_NAMES

# DescribeConfigs config types (ConfigEntry.ConfigType)
BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST, CLASS, PASSWORD = range(1, 10)
# DescribeConfigs config sources (ConfigEntry.ConfigSource)
DYNAMIC_TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5

_INT_CONFIGS = frozenset(
    {
        "segment.bytes",
        "segment.index.bytes",
        "max.message.bytes",
        "index.interval.bytes",
        "min.insync.replicas",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
    }
)
_BOOLEAN_CONFIGS = frozenset(
    {
        "unclean.leader.election.enable",
        "preallocate",
        "remote.storage.enable",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
    }
)
_LIST_CONFIGS = frozenset(
    {
        "cleanup.policy",
        "leader.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
    }
)
_STRING_CONFIGS = frozenset({"compression.type", "message.timestamp.type"})

# Settings with no effect here yet: only their default value is accepted.
_NOT_ACTED_ON = frozenset(
    {
        "preallocate",
        "leader.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
        "remote.storage.enable",
        "local.retention.ms",
        "local.retention.bytes",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "unclean.leader.election.enable",
    }
)


def config_type(name: str) -> int:
    if name in _INT_CONFIGS:
        return INT
    if name in _BOOLEAN_CONFIGS:
        return BOOLEAN
    if name in _LIST_CONFIGS:
        return LIST
    if name in _STRING_CONFIGS:
        return STRING
    if name == "min.cleanable.dirty.ratio":
        return DOUBLE
    return LONG


def broker_defaults(server_props: Mapping[str, str]) -> LogConfig:
    return LogConfig.from_server_props(server_props)


def validate_topic_configs(
    configs: Mapping[str, str | None], server_props: Mapping[str, str]
) -> tuple[dict[str, str], str | None]:
    """(normalised overrides, None) or ({}, Kafka's INVALID_CONFIG message)."""
    for name, value in configs.items():
        if value is None:
            return {}, f"Null value not supported for topic configs: {name}"
    given = {k: v for k, v in configs.items() if v is not None}
    defaults = broker_defaults(server_props)
    try:
        parsed = LogConfig.from_props(given, defaults)
    except LogConfigError as e:
        return {}, str(e)
    normalised = parsed.to_props()
    default_props = defaults.to_props()
    for name in given:
        value = normalised[name]
        if name in _NOT_ACTED_ON and value != default_props[name]:
            return {}, f"Topic config {name} is not supported by this broker yet"
    return {name: normalised[name] for name in given}, None


# First server synonyms that have no default in Kafka: their topic configs list no
# DEFAULT_CONFIG synonym (Kafka's ConfigHelper lists only the first synonym's default).
_NO_SERVER_DEFAULT = frozenset(
    {"log.retention.ms", "log.roll.ms", "log.roll.jitter.ms", "log.flush.interval.ms",
     "log.local.retention.ms", "log.local.retention.bytes"}
)  # fmt: skip


def describe_topic_configs(
    overrides: Mapping[str, str], server_props: Mapping[str, str]
) -> list[tuple[str, str, int, int, list[tuple[str, str, int]]]]:
    """(name, value, source, type, synonyms) for every topic config, sorted by name.

    Synonyms are (name, value, source), most specific first, as Kafka lists them: the topic
    override, the server keys set in server.properties, then the first server key's default.
    """
    defaults = broker_defaults(server_props)
    effective = LogConfig.from_props(overrides, defaults).to_props()
    kafka_defaults = LogConfig().to_props()
    out = []
    for name in sorted(TOPIC_CONFIG_NAMES):
        synonyms: list[tuple[str, str, int]] = []
        if name in overrides:
            synonyms.append((name, effective[name], DYNAMIC_TOPIC_CONFIG))
        server_keys = [key for key, _factor in SERVER_SYNONYMS.get(name, ())]
        for server_key in server_keys:
            if server_key in server_props:
                synonyms.append((server_key, server_props[server_key], STATIC_BROKER_CONFIG))
        if server_keys and server_keys[0] not in _NO_SERVER_DEFAULT:
            synonyms.append((server_keys[0], kafka_defaults[name], DEFAULT_CONFIG))
        source = synonyms[0][2] if synonyms else DEFAULT_CONFIG
        out.append((name, effective[name], source, config_type(name), synonyms))
    return out
