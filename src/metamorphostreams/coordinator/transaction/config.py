"""Transaction coordinator configuration: Kafka's property names and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TransactionConfig:
    """The ``transaction.*`` and ``transactional.id.*`` broker settings.

    Attribute names are Kafka's property names with dots as underscores (Kafka's
    TransactionLogConfig and TransactionStateManagerConfig); ``from_properties`` takes a
    ``server.properties`` mapping. The ``transaction_state_log_*`` settings describe the
    ``__transaction_state`` topic, which the server creates; the coordinator reads the
    timeouts and cleanup intervals. Immutable, safe to share.
    """

    transaction_state_log_num_partitions: int = 50
    transaction_state_log_replication_factor: int = 3
    transaction_state_log_min_isr: int = 2
    transaction_state_log_segment_bytes: int = 100 * 1024 * 1024
    transaction_state_log_load_buffer_size: int = 5 * 1024 * 1024
    transaction_max_timeout_ms: int = 15 * 60 * 1000
    transactional_id_expiration_ms: int = 7 * 24 * 60 * 60 * 1000
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10 * 1000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 60 * 60 * 1000
    transaction_partition_verification_enable: bool = True
    producer_id_expiration_ms: int = 24 * 60 * 60 * 1000

    # Short names for the topic settings the server uses when it creates the topic.
    @property
    def state_log_num_partitions(self) -> int:
        return self.transaction_state_log_num_partitions

    @property
    def state_log_segment_bytes(self) -> int:
        return self.transaction_state_log_segment_bytes

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> TransactionConfig:
        """Read the known keys of a ``server.properties`` mapping; other keys are ignored.

        Raises ValueError for a value Kafka's config definition refuses (all are at least 1).
        """
        values: dict[str, object] = {}
        for f in fields(cls):
            key = f.name.replace("_", ".")
            if key not in props:
                continue
            raw = props[key].strip()
            if f.type in (bool, "bool"):
                if raw.lower() not in ("true", "false"):
                    raise ValueError(f"{key}: expected true or false, got {raw!r}")
                values[f.name] = raw.lower() == "true"
                continue
            number = int(raw)
            if number < 1:
                raise ValueError(f"{key}: value {number} must be at least 1")
            values[f.name] = number
        return cls(**values)  # type: ignore[arg-type]
