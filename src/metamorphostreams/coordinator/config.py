"""Group coordinator configuration: Kafka's property names and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

MIGRATION_POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")
INT_MAX = 2**31 - 1  # Kafka's Integer.MAX_VALUE, the default "no limit" for group sizes

# Kafka lists assignors by class name; the short names are what ConsumerGroupHeartbeat carries.
_ASSIGNOR_CLASS_NAMES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range",
    "org.apache.kafka.coordinator.group.api.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.api.assignor.RangeAssignor": "range",
}


@dataclass(frozen=True)
class GroupCoordinatorConfig:
    """The ``group.*`` and ``offsets.*`` broker settings the coordinator reads.

    Attribute names are Kafka's property names with dots as underscores; ``from_properties``
    takes a ``server.properties`` mapping. Immutable, safe to share.
    """

    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_initial_rebalance_delay_ms: int = 3000
    group_max_size: int = INT_MAX
    # Kafka's internal classicGroupNewMemberJoinTimeoutMs: a parked JoinGroup of a new member
    # whose client went away must not keep the rebalance waiting forever.
    group_classic_new_member_join_timeout_ms: int = 5 * 60 * 1000
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    # __consumer_offsets' own segment size (a small one lets compaction keep it small).
    offsets_topic_segment_bytes: int = 104857600
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_min_heartbeat_interval_ms: int = 5000
    group_consumer_max_heartbeat_interval_ms: int = 15000
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_min_session_timeout_ms: int = 45000
    group_consumer_max_session_timeout_ms: int = 60000
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")
    group_consumer_max_size: int = INT_MAX
    group_coordinator_rebalance_protocols: tuple[str, ...] = ("classic", "consumer")
    # KIP-848 online migration of non-empty groups: bidirectional, upgrade, downgrade, disabled.
    group_consumer_migration_policy: str = "bidirectional"

    @property
    def offsets_retention_ms(self) -> int:
        return self.offsets_retention_minutes * 60 * 1000

    @property
    def consumer_protocol_enabled(self) -> bool:
        return "consumer" in self.group_coordinator_rebalance_protocols

    @property
    def upgrade_enabled(self) -> bool:
        """A classic group may become a consumer group when a consumer-protocol member joins."""
        return self.group_consumer_migration_policy in ("bidirectional", "upgrade")

    @property
    def downgrade_enabled(self) -> bool:
        """A consumer group whose last consumer-protocol member leaves may become classic."""
        return self.group_consumer_migration_policy in ("bidirectional", "downgrade")

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> GroupCoordinatorConfig:
        """Read the known keys of a ``server.properties`` mapping; other keys are ignored."""
        values: dict[str, object] = {}
        for f in fields(cls):
            key = f.name.replace("_", ".")
            if key not in props:
                continue
            raw = props[key].strip()
            if f.name == "group_consumer_assignors":
                names = [s.strip() for s in raw.split(",") if s.strip()]
                values[f.name] = tuple(_ASSIGNOR_CLASS_NAMES.get(n, n) for n in names)
            elif f.name == "group_consumer_migration_policy":
                if raw.lower() not in MIGRATION_POLICIES:
                    raise ValueError(f"Invalid value {raw} for configuration {key}")
                values[f.name] = raw.lower()
            elif f.name == "group_coordinator_rebalance_protocols":
                values[f.name] = tuple(s.strip().lower() for s in raw.split(",") if s.strip())
            else:
                values[f.name] = int(raw)
        return cls(**values)  # type: ignore[arg-type]
