"""Broker configuration: Kafka's ``server.properties`` keys, with Kafka's defaults.

Only the keys this broker acts on are typed here; any other key is kept (Kafka accepts
unknown keys with a warning) and reported by ``unknown_keys``. Values are validated when
the config is built, so a bad file fails at start-up with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1


class ConfigError(ValueError):
    """A config key has a value Kafka would reject."""


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s not in ("true", "false"):
        raise ValueError(f"expected true or false, got {v!r}")
    return s == "true"


def _int(lo: int = -(1 << 63), hi: int = LONG_MAX) -> Callable[[str], int]:
    def parse(v: str) -> int:
        n = int(v.strip())
        if not lo <= n <= hi:
            raise ValueError(f"{n} is outside [{lo}, {hi}]")
        return n

    return parse


def _str(v: str) -> str:
    return v.strip()


def _connection_overrides(v: str) -> dict[str, int]:
    """``max.connections.per.ip.overrides``: ``host:count`` pairs, comma-separated."""
    out: dict[str, int] = {}
    for item in v.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, count = item.rpartition(":")
        host = host.strip().strip("[]")
        if not sep or not host:
            raise ValueError(f"expected host:count, got {item!r}")
        n = int(count.strip())
        if n < 0:
            raise ValueError(f"negative connection count in {item!r}")
        out[host] = n
    return out


@dataclass(frozen=True)
class _Key:
    name: str
    default: str
    parse: Callable[[str], Any]


# Kafka's names and defaults (KafkaConfig / ServerLogConfigs / SocketServerConfigs).
KEYS: dict[str, _Key] = {
    k.name: k
    for k in (
        _Key("broker.id", "0", _int(-1, INT_MAX)),
        _Key("node.id", "-1", _int(-1, INT_MAX)),
        _Key("log.dirs", "", _str),
        _Key("log.dir", "/tmp/kafka-logs", _str),
        _Key("listeners", "", _str),
        _Key("advertised.listeners", "", _str),
        _Key("num.partitions", "1", _int(1, INT_MAX)),
        _Key("default.replication.factor", "1", _int(1, 32767)),
        _Key("auto.create.topics.enable", "true", _bool),
        _Key("delete.topic.enable", "true", _bool),
        _Key("log.segment.bytes", "1073741824", _int(14, INT_MAX)),
        _Key("log.roll.ms", "-1", _int(-1)),
        _Key("log.roll.hours", "168", _int(1, INT_MAX)),
        _Key("log.retention.ms", "-2", _int(-2)),
        _Key("log.retention.minutes", "-2", _int(-2)),
        _Key("log.retention.hours", "168", _int(-1, INT_MAX)),
        _Key("log.retention.bytes", "-1", _int(-1)),
        _Key("log.retention.check.interval.ms", "300000", _int(1)),
        _Key("log.index.interval.bytes", "4096", _int(0, INT_MAX)),
        _Key("log.index.size.max.bytes", "10485760", _int(4, INT_MAX)),
        _Key("log.flush.interval.messages", str(LONG_MAX), _int(1)),
        _Key("log.flush.interval.ms", "-1", _int(-1)),
        _Key("log.flush.scheduler.interval.ms", str(LONG_MAX), _int(1)),
        _Key("log.flush.offset.checkpoint.interval.ms", "60000", _int(0, INT_MAX)),
        _Key("log.flush.start.offset.checkpoint.interval.ms", "60000", _int(0, INT_MAX)),
        _Key("log.message.timestamp.type", "CreateTime", _str),
        _Key("log.cleanup.policy", "delete", _str),
        _Key("log.segment.delete.delay.ms", "60000", _int(0)),
        _Key("message.max.bytes", "1048588", _int(0, INT_MAX)),
        _Key("min.insync.replicas", "1", _int(1, INT_MAX)),
        _Key("socket.request.max.bytes", "104857600", _int(1, INT_MAX)),
        _Key("socket.send.buffer.bytes", "102400", _int(-1, INT_MAX)),
        _Key("socket.receive.buffer.bytes", "102400", _int(-1, INT_MAX)),
        _Key("queued.max.requests", "500", _int(1, INT_MAX)),
        _Key("connections.max.idle.ms", "600000", _int(-1)),
        _Key("max.connections", str(INT_MAX), _int(0, INT_MAX)),
        _Key("max.connections.per.ip", str(INT_MAX), _int(0, INT_MAX)),
        _Key("max.connections.per.ip.overrides", "", _connection_overrides),
        _Key("group.initial.rebalance.delay.ms", "3000", _int(0, INT_MAX)),
        _Key("offsets.topic.num.partitions", "50", _int(1, INT_MAX)),
        _Key("offsets.topic.replication.factor", "3", _int(1, 32767)),
        _Key("transaction.state.log.replication.factor", "3", _int(1, 32767)),
        _Key("transaction.state.log.min.isr", "2", _int(1, INT_MAX)),
        _Key("producer.id.expiration.ms", "86400000", _int(1, INT_MAX)),
        _Key("compression.type", "producer", _str),
        _Key("cluster.id", "", _str),
    )
}


@dataclass
class BrokerConfig:
    """Effective broker configuration; ``props`` holds every key as given (strings)."""

    props: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> BrokerConfig:
        values: dict[str, Any] = {}
        for name, key in KEYS.items():
            raw = props.get(name, key.default)
            try:
                values[name] = key.parse(raw)
            except ValueError as e:
                raise ConfigError(f"Invalid value {raw!r} for configuration {name}: {e}") from None
        if values["max.connections.per.ip"] == 0 and not values["max.connections.per.ip.overrides"]:
            raise ConfigError(
                "max.connections.per.ip can be set to zero only if "
                "max.connections.per.ip.overrides property is set"
            )
        policy = values["log.message.timestamp.type"]
        if policy not in ("CreateTime", "LogAppendTime"):
            raise ConfigError(
                f"Invalid value {policy!r} for configuration log.message.timestamp.type"
            )
        return cls(dict(props), values)

    def __getitem__(self, name: str) -> Any:
        return self.values[name] if name in self.values else self.props[name]

    def unknown_keys(self, also_known: frozenset[str] = frozenset()) -> list[str]:
        return sorted(k for k in self.props if k not in KEYS and k not in also_known)

    @property
    def broker_id(self) -> int:
        node_id: int = self.values["node.id"]
        return node_id if node_id >= 0 else int(self.values["broker.id"])


def read_properties(path: Path) -> dict[str, str]:
    """Parse a Java .properties file (the subset Kafka's files use: key=value, key: value)."""
    props: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + next(lines, "").strip()
        if not line or line[0] in "#!":
            continue
        for i, ch in enumerate(line):
            if ch in "=:":
                key, value = line[:i].strip(), line[i + 1 :].strip()
                break
        else:
            key, value = line, ""
        props[key] = value
    return props
