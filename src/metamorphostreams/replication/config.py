"""The ``replica.*`` broker keys replication reads, with Kafka's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["REPLICATION_KEYS", "ReplicationConfig"]

REPLICATION_KEYS = frozenset(
    {
        "replica.fetch.backoff.ms",
        "replica.fetch.max.bytes",
        "replica.fetch.min.bytes",
        "replica.fetch.response.max.bytes",
        "replica.fetch.wait.max.ms",
        "replica.socket.timeout.ms",
        "replica.lag.time.max.ms",
        "replica.high.watermark.checkpoint.interval.ms",
    }
)


def _int(props: Mapping[str, Any], key: str, default: int) -> int:
    value = props.get(key)
    return default if value is None or str(value).strip() == "" else int(value)


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    fetch_backoff_ms: int = 1000
    fetch_max_bytes: int = 1_048_576
    fetch_min_bytes: int = 1
    fetch_response_max_bytes: int = 10_485_760
    fetch_wait_max_ms: int = 500
    socket_timeout_ms: int = 30_000
    lag_time_max_ms: int = 30_000
    high_watermark_checkpoint_interval_ms: int = 5000

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ReplicationConfig:
        return cls(
            fetch_backoff_ms=_int(props, "replica.fetch.backoff.ms", 1000),
            fetch_max_bytes=_int(props, "replica.fetch.max.bytes", 1_048_576),
            fetch_min_bytes=_int(props, "replica.fetch.min.bytes", 1),
            fetch_response_max_bytes=_int(props, "replica.fetch.response.max.bytes", 10_485_760),
            fetch_wait_max_ms=_int(props, "replica.fetch.wait.max.ms", 500),
            socket_timeout_ms=_int(props, "replica.socket.timeout.ms", 30_000),
            lag_time_max_ms=_int(props, "replica.lag.time.max.ms", 30_000),
            high_watermark_checkpoint_interval_ms=_int(
                props, "replica.high.watermark.checkpoint.interval.ms", 5000
            ),
        )
