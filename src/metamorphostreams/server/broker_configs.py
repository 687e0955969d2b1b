"""Broker, group and logger configs as DescribeConfigs shows them, in Kafka's shapes.

Broker (ConfigResource type BROKER): every key of Kafka's KafkaConfig (`broker_config_defs`),
with the value in force here, its source (STATIC_BROKER_CONFIG when set, in server.properties
or by `mms broker`'s options, DEFAULT_CONFIG otherwise) and Kafka's synonyms: for each
synonym name the static value, then each default, dropping those before the key itself
(Kafka's ConfigHelper), so `log.retention.ms` set lists itself then `log.retention.hours`'s
default. Keys we do not act on are listed with Kafka's default, as Kafka lists them.

Group (GROUP): KIP-848's per-group configs, defaulting to the broker's `group.*` keys.
Logger (BROKER_LOGGER): our Python loggers' levels under Kafka's logger names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from .broker_config_defs import BROKER_CONFIGS
from .topic_configs import (
    BOOLEAN,
    DEFAULT_CONFIG,
    INT,
    LIST,
    LONG,
    PASSWORD,
    SHORT,
    STATIC_BROKER_CONFIG,
    STRING,
)

DYNAMIC_BROKER_LOGGER_CONFIG = 6  # ConfigEntry.ConfigSource
UNKNOWN_TYPE = 0  # ConfigEntry.ConfigType: Kafka gives logger levels no type

# Kafka's DynamicBrokerConfig.brokerConfigSynonyms: most specific first.
_SYNONYM_GROUPS = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)
_SYNONYMS = {name: group for group in _SYNONYM_GROUPS for name in group}
_INTEGRAL = (INT, SHORT, LONG)

# Where this broker's default differs from Kafka's because we lack the feature.
_OUR_DEFAULTS = {"group.coordinator.rebalance.protocols": "classic,consumer"}  # no streams


@dataclass(frozen=True)
class ConfigView:
    """One DescribeConfigs entry; synonyms are (name, value, source), most specific first."""

    name: str
    value: str | None
    source: int
    config_type: int
    sensitive: bool = False
    read_only: bool = False
    synonyms: list[tuple[str, str | None, int]] = field(default_factory=list)


def _normalise(value: str, config_type: int) -> str:
    """A set value as Kafka prints it once parsed (ConfigDef.convertToString)."""
    text = value.strip()
    try:
        if config_type in _INTEGRAL:
            return str(int(text))
    except ValueError:
        return text
    if config_type == BOOLEAN:
        return text.lower()
    if config_type == LIST:
        return ",".join(item.strip() for item in text.split(",") if item.strip())
    return text


def _default(name: str) -> str | None:
    return _OUR_DEFAULTS.get(name, BROKER_CONFIGS[name][1])


def describe_broker_configs(static: Mapping[str, str]) -> list[ConfigView]:
    """Every broker config, sorted by name; `static` is what this broker was started with."""
    out = []
    for name, (config_type, _default_value, dynamic) in sorted(BROKER_CONFIGS.items()):
        sensitive = config_type == PASSWORD
        names = _SYNONYMS.get(name, (name,))
        synonyms: list[tuple[str, str | None, int]] = [
            (n, None if sensitive else static[n], STATIC_BROKER_CONFIG)
            for n in names
            if n in static
        ]
        synonyms += [
            (n, None if sensitive else default, DEFAULT_CONFIG)
            for n in names
            if (default := _default(n)) is not None
        ]
        while synonyms and synonyms[0][0] != name:
            synonyms.pop(0)
        value = _normalise(static[name], config_type) if name in static else _default(name)
        out.append(
            ConfigView(
                name=name,
                value=None if sensitive else value,
                source=synonyms[0][2] if synonyms else DEFAULT_CONFIG,
                config_type=config_type,
                sensitive=sensitive,
                read_only=not dynamic,
                synonyms=synonyms,
            )
        )
    return out


# Kafka's GroupConfig: (group config, the broker key it defaults to, type).
_GROUP_CONFIGS = (
    ("consumer.session.timeout.ms", "group.consumer.session.timeout.ms", INT),
    ("consumer.heartbeat.interval.ms", "group.consumer.heartbeat.interval.ms", INT),
    ("consumer.assignment.interval.ms", "group.consumer.assignment.interval.ms", INT),
    ("share.session.timeout.ms", "group.share.session.timeout.ms", INT),
    ("share.heartbeat.interval.ms", "group.share.heartbeat.interval.ms", INT),
    ("share.assignment.interval.ms", "group.share.assignment.interval.ms", INT),
    ("share.record.lock.duration.ms", "group.share.record.lock.duration.ms", INT),
    ("share.delivery.count.limit", "group.share.delivery.count.limit", INT),
    ("share.partition.max.record.locks", "group.share.partition.max.record.locks", INT),
    ("share.auto.offset.reset", "share.auto.offset.reset", STRING),
    ("share.isolation.level", "share.isolation.level", STRING),
    ("share.renew.acknowledge.enable", "share.renew.acknowledge.enable", BOOLEAN),
    ("streams.session.timeout.ms", "group.streams.session.timeout.ms", INT),
    ("streams.heartbeat.interval.ms", "group.streams.heartbeat.interval.ms", INT),
    ("streams.assignment.interval.ms", "group.streams.assignment.interval.ms", INT),
    ("streams.initial.rebalance.delay.ms", "group.streams.initial.rebalance.delay.ms", INT),
    ("streams.num.standby.replicas", "group.streams.num.standby.replicas", INT),
)
# Group configs with no broker key of their own: Kafka's GroupConfig defaults.
_GROUP_ONLY_DEFAULTS = {
    "share.auto.offset.reset": "latest",
    "share.isolation.level": "read_uncommitted",
    "share.renew.acknowledge.enable": "true",
}


def describe_group_configs(static: Mapping[str, str]) -> list[ConfigView]:
    """A group's configs: none set per group yet, so each is its broker key's value."""
    out = []
    for name, broker_key, config_type in _GROUP_CONFIGS:
        default = _GROUP_ONLY_DEFAULTS.get(name) or _default(broker_key)
        synonyms: list[tuple[str, str | None, int]] = []
        if broker_key in static:
            synonyms.append((broker_key, static[broker_key], STATIC_BROKER_CONFIG))
        synonyms.append((broker_key, default, DEFAULT_CONFIG))
        value = _normalise(static[broker_key], config_type) if broker_key in static else default
        out.append(ConfigView(name, value, synonyms[0][2], config_type, synonyms=synonyms))
    return out


# Kafka's logger names for the parts of ours that do the same job.
_KAFKA_LOGGERS = {
    "kafka": "metamorphostreams",
    "kafka.server": "metamorphostreams.server",
    "kafka.log": "metamorphostreams.storage",
    "org.apache.kafka.coordinator.group": "metamorphostreams.coordinator",
}
ROOT_LOGGER = "root"
# Python's levels as log4j's names, highest threshold first.
_LEVELS = (
    (logging.CRITICAL, "FATAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARN"),
    (logging.INFO, "INFO"),
    (logging.DEBUG, "DEBUG"),
    (1, "TRACE"),
)


def _kafka_level(level: int) -> str:
    return next((name for threshold, name in _LEVELS if level >= threshold), "ALL")


def describe_loggers() -> list[ConfigView]:
    """The root logger, and each mapped logger given a level of its own (Kafka lists only
    the loggers its configuration names)."""
    loggers = {ROOT_LOGGER: logging.getLogger()}
    for kafka_name, ours in _KAFKA_LOGGERS.items():
        logger = logging.getLogger(ours)
        if logger.level != logging.NOTSET:
            loggers[kafka_name] = logger
    return [
        ConfigView(name, _kafka_level(logger.level), DYNAMIC_BROKER_LOGGER_CONFIG, UNKNOWN_TYPE)
        for name, logger in sorted(loggers.items())
    ]
