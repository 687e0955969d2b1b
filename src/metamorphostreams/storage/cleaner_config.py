"""The log cleaner's broker settings (Kafka's CleanerConfig): the ``log.cleaner.*`` keys of
``server.properties`` with Kafka's defaults and ranges.

The per-topic compaction settings (``min.cleanable.dirty.ratio``, ``min.compaction.lag.ms``,
``max.compaction.lag.ms``, ``delete.retention.ms``) are topic configs in ``LogConfig``, whose
broker synonyms are ``log.cleaner.min.cleanable.ratio``, ``log.cleaner.min.compaction.lag.ms``,
``log.cleaner.max.compaction.lag.ms`` and ``log.cleaner.delete.retention.ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from metamorphostreams.storage.log_config import LogConfigError

__all__ = ["CLEANER_CONFIG_KEYS", "MIN_DEDUPE_BUFFER_PER_THREAD", "CleanerConfig"]

INT_MAX = 2**31 - 1
DOUBLE_MAX = 1.7976931348623157e308  # Java's Double.MAX_VALUE: "no throttling"
MIN_DEDUPE_BUFFER_PER_THREAD = 1024 * 1024  # Kafka refuses less per cleaner thread
# SkimpyOffsetMap: a 16-byte MD5 of the key and an 8-byte offset per slot.
OFFSET_MAP_BYTES_PER_ENTRY = 24


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """Broker-wide cleaner settings; frozen, safe to share between threads."""

    enable: bool = True
    threads: int = 1
    dedupe_buffer_size: int = 128 * 1024 * 1024
    io_buffer_load_factor: float = 0.9
    io_buffer_size: int = 512 * 1024
    io_max_bytes_per_second: float = DOUBLE_MAX
    backoff_ms: int = 15_000

    @property
    def offset_map_slots(self) -> int:
        """Entries the offset map of one thread may hold before it counts as full
        (Kafka: dedupe buffer / threads / 24 bytes, times the load factor)."""
        per_thread = min(self.dedupe_buffer_size // max(self.threads, 1), INT_MAX)
        return max(int(per_thread // OFFSET_MAP_BYTES_PER_ENTRY * self.io_buffer_load_factor), 1)

    @classmethod
    def from_server_props(cls, props: Mapping[str, str]) -> CleanerConfig:
        """Read the ``log.cleaner.*`` keys; raises LogConfigError for a bad value."""
        d = cls()
        config = cls(
            enable=_bool(props, "log.cleaner.enable", d.enable),
            threads=int(_number(props, "log.cleaner.threads", d.threads, 0, INT_MAX)),
            dedupe_buffer_size=int(
                _number(props, "log.cleaner.dedupe.buffer.size", d.dedupe_buffer_size, 0, 2**63)
            ),
            io_buffer_load_factor=_number(
                props, "log.cleaner.io.buffer.load.factor", d.io_buffer_load_factor, 0.0, 1.0,
                integral=False,
            ),
            io_buffer_size=int(
                _number(props, "log.cleaner.io.buffer.size", d.io_buffer_size, 0, INT_MAX)
            ),
            io_max_bytes_per_second=_number(
                props, "log.cleaner.io.max.bytes.per.second", d.io_max_bytes_per_second,
                0.0, DOUBLE_MAX, integral=False,
            ),
            backoff_ms=int(_number(props, "log.cleaner.backoff.ms", d.backoff_ms, 0, 2**63)),
        )  # fmt: skip
        if config.enable and config.threads > 0:
            per_thread = config.dedupe_buffer_size // config.threads
            if per_thread < MIN_DEDUPE_BUFFER_PER_THREAD:
                raise LogConfigError(
                    "log.cleaner.dedupe.buffer.size",
                    f"{config.dedupe_buffer_size} is too small for {config.threads} log "
                    "cleaner threads: log.cleaner.dedupe.buffer.size must be at least 1MB "
                    "per cleaner thread.",
                )
        return config


def _invalid(name: str, raw: str, why: str) -> LogConfigError:
    return LogConfigError(name, f"Invalid value {raw} for configuration {name}: {why}")


def _bool(props: Mapping[str, str], name: str, default: bool) -> bool:
    raw = props.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise _invalid(name, raw, "Expected value to be either true or false")
    return lowered == "true"


def _number(
    props: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    integral: bool = True,
) -> float:
    raw = props.get(name)
    if raw is None:
        return default
    try:
        value: float = int(raw.strip()) if integral else float(raw.strip())
    except ValueError:
        kind = "LONG" if integral else "DOUBLE"
        raise _invalid(name, raw, f"Not a number of type {kind}") from None
    if not low <= value <= high:
        raise _invalid(name, raw, f"Value must be at least {low}")
    return value


CLEANER_CONFIG_KEYS = frozenset(
    {
        "log.cleaner.enable",
        "log.cleaner.threads",
        "log.cleaner.dedupe.buffer.size",
        "log.cleaner.io.buffer.load.factor",
        "log.cleaner.io.buffer.size",
        "log.cleaner.io.max.bytes.per.second",
        "log.cleaner.backoff.ms",
    }
)
