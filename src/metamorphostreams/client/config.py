"""Client configuration by Kafka's property names, with Kafka's defaults.

``ClientConfig.for_role("producer", {...})`` checks every key against the definitions of that
role: an unknown key, or a key of another role, raises ``ConfigError`` naming it (with a
"did you mean" suggestion); values may be given as Python values or as the strings of a
``.properties`` file and are converted and checked. Immutable after construction.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["ClientConfig", "Role", "load_properties"]

Role = Literal["producer", "consumer", "admin"]
ROLES: tuple[Role, ...] = ("producer", "consumer", "admin")
_ALL = frozenset(ROLES)
_P = frozenset({"producer"})
_C = frozenset({"consumer"})

INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ConfigKey:
    name: str
    kind: Literal["str", "int", "bool", "list", "choice"]
    default: Any
    roles: frozenset[str]
    choices: tuple[str, ...] = ()
    minimum: int | None = None


def _acks(value: Any) -> Any:
    text = str(value).strip().lower()
    if text == "all":
        return -1
    if text in ("-1", "0", "1"):
        return int(text)
    raise ValueError("must be one of all, -1, 0, 1")


def _keys(*keys: ConfigKey) -> dict[str, ConfigKey]:
    return {k.name: k for k in keys}


DEFINITIONS: dict[str, ConfigKey] = _keys(
    # -- every client
    ConfigKey("bootstrap.servers", "list", None, _ALL),
    ConfigKey("client.id", "str", "metamorphostreams", _ALL),
    ConfigKey("request.timeout.ms", "int", 30000, _ALL, minimum=0),
    ConfigKey("retry.backoff.ms", "int", 100, _ALL, minimum=0),
    ConfigKey("retry.backoff.max.ms", "int", 1000, _ALL, minimum=0),
    ConfigKey("reconnect.backoff.ms", "int", 50, _ALL, minimum=0),
    ConfigKey("reconnect.backoff.max.ms", "int", 1000, _ALL, minimum=0),
    ConfigKey("socket.connection.setup.timeout.ms", "int", 10000, _ALL, minimum=0),
    ConfigKey("metadata.max.age.ms", "int", 300000, _ALL, minimum=0),
    ConfigKey("connections.max.idle.ms", "int", 540000, _ALL),
    ConfigKey("default.api.timeout.ms", "int", 60000, _ALL, minimum=0),
    ConfigKey("security.protocol", "choice", "PLAINTEXT", _ALL, choices=("PLAINTEXT",)),
    ConfigKey("receive.message.max.bytes", "int", 100 * 1024 * 1024, _ALL, minimum=1024),
    # -- producer
    ConfigKey("acks", "choice", -1, _P),
    ConfigKey("linger.ms", "int", 5, _P, minimum=0),
    ConfigKey("batch.size", "int", 16384, _P, minimum=0),
    ConfigKey(
        "compression.type",
        "choice",
        "none",
        _P,
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
    ),
    ConfigKey("compression.gzip.level", "int", -1, _P),
    ConfigKey("compression.lz4.level", "int", 9, _P),
    ConfigKey("compression.zstd.level", "int", 3, _P),
    ConfigKey("enable.idempotence", "bool", True, _P),
    ConfigKey("retries", "int", INT32_MAX, _P, minimum=0),
    ConfigKey("delivery.timeout.ms", "int", 120000, _P, minimum=0),
    ConfigKey("max.in.flight.requests.per.connection", "int", 5, _P, minimum=1),
    ConfigKey("max.request.size", "int", 1048576, _P, minimum=0),
    ConfigKey("buffer.memory", "int", 33554432, _P, minimum=0),
    ConfigKey("max.block.ms", "int", 60000, _P, minimum=0),
    ConfigKey("partitioner.ignore.keys", "bool", False, _P),
    ConfigKey("transactional.id", "str", None, _P),
    ConfigKey("transaction.timeout.ms", "int", 60000, _P, minimum=1),
    # -- consumer
    ConfigKey("group.id", "str", None, _C),
    ConfigKey("group.instance.id", "str", None, _C),
    ConfigKey("group.protocol", "choice", "classic", _C, choices=("classic", "consumer")),
    ConfigKey("group.remote.assignor", "str", None, _C),
    ConfigKey("auto.offset.reset", "choice", "latest", _C, choices=("latest", "earliest", "none")),
    ConfigKey("enable.auto.commit", "bool", True, _C),
    ConfigKey("auto.commit.interval.ms", "int", 5000, _C, minimum=0),
    ConfigKey(
        "isolation.level",
        "choice",
        "read_uncommitted",
        _C,
        choices=("read_uncommitted", "read_committed"),
    ),
    ConfigKey("max.poll.records", "int", 500, _C, minimum=1),
    ConfigKey("max.poll.interval.ms", "int", 300000, _C, minimum=1),
    ConfigKey("session.timeout.ms", "int", 45000, _C, minimum=1),
    ConfigKey("heartbeat.interval.ms", "int", 3000, _C, minimum=1),
    ConfigKey("fetch.min.bytes", "int", 1, _C, minimum=0),
    ConfigKey("fetch.max.bytes", "int", 52428800, _C, minimum=0),
    ConfigKey("fetch.max.wait.ms", "int", 500, _C, minimum=0),
    ConfigKey("max.partition.fetch.bytes", "int", 1048576, _C, minimum=0),
    ConfigKey("partition.assignment.strategy", "list", ["range", "cooperative-sticky"], _C),
    ConfigKey("check.crcs", "bool", True, _C),
    ConfigKey("allow.auto.create.topics", "bool", True, frozenset({"consumer", "producer"})),
    ConfigKey("client.rack", "str", "", _C),
    ConfigKey("exclude.internal.topics", "bool", True, _C),
)


def _convert(key: ConfigKey, value: Any) -> Any:
    if key.name == "acks":
        return _acks(value)
    if value is None:
        if key.kind in ("str",) or key.default is None:
            return None
        raise ValueError("must not be null")
    if key.kind == "str":
        return str(value)
    if key.kind == "int":
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        number = int(str(value).strip()) if not isinstance(value, int) else value
        if key.minimum is not None and number < key.minimum:
            raise ValueError(f"must be at least {key.minimum}")
        return number
    if key.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError("must be true or false")
    if key.kind == "list":
        items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        return [item.strip() for item in items if item.strip()]
    text = str(value).strip()
    if key.choices and text.lower() not in key.choices and text not in key.choices:
        raise ValueError("must be one of " + ", ".join(key.choices))
    return text if text in key.choices else text.lower()


class ClientConfig:
    """The checked configuration of one client. Immutable; safe to share."""

    __slots__ = ("_values", "given", "role")

    def __init__(self, role: Role, values: dict[str, Any], given: Iterable[str] = ()) -> None:
        self.role = role
        self._values = values
        self.given = frozenset(given)  # the keys the caller set (Kafka checks some combinations)

    @classmethod
    def for_role(
        cls, role: Role, given: Mapping[str, Any] | None = None, **kw: Any
    ) -> ClientConfig:
        """Check ``given`` (Kafka property names; keyword args may use underscores for dots)."""
        merged: dict[str, Any] = dict(given or {})
        for name, value in kw.items():
            merged[name.replace("_", ".")] = value
        values = {k.name: k.default for k in DEFINITIONS.values() if role in k.roles}
        for name, raw in merged.items():
            key = DEFINITIONS.get(name)
            if key is None or role not in key.roles:
                raise ConfigError(_unknown_message(role, name))
            try:
                values[name] = _convert(key, raw)
            except ValueError as exc:
                raise ConfigError(
                    f"invalid value {raw!r} for configuration {name!r}: {exc}"
                ) from None
        if not values.get("bootstrap.servers"):
            raise ConfigError("missing configuration 'bootstrap.servers' (host:port[,host:port])")
        for server in values["bootstrap.servers"]:
            _split_host_port(server)
        return cls(role, values, merged)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def bootstrap_servers(self) -> list[tuple[str, int]]:
        return [_split_host_port(s) for s in self._values["bootstrap.servers"]]


def _split_host_port(server: str) -> tuple[str, int]:
    text = server.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid bootstrap server {server!r}: expected host:port")
    return host.strip("[]"), int(port)


def _unknown_message(role: str, name: str) -> str:
    key = DEFINITIONS.get(name)
    if key is not None:
        owners = " or ".join(sorted(key.roles))
        return f"configuration {name!r} is a {owners} setting, not a {role} one"
    known = [k.name for k in DEFINITIONS.values() if role in k.roles]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {role} configuration {name!r}{hint}"


def known_keys(role: Role) -> Iterable[str]:
    return sorted(k.name for k in DEFINITIONS.values() if role in k.roles)


def load_properties(path: str | Path) -> dict[str, str]:
    """Read a Java ``.properties`` file: key=value or key: value lines, # and ! comments."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        for sep in ("=", ":"):
            if sep in stripped:
                key, _, value = stripped.partition(sep)
                out[key.strip()] = value.strip()
                break
        else:
            raise ConfigError(f"{path}:{number}: expected key=value, got {stripped!r}")
    return out
