"""The feature levels this broker advertises in ApiVersions v3+ (KIP-584), one row per feature.

Clients choose protocols from these: the Java producer takes the transaction-V2 path
(KIP-890 part 2: Produce 12+, EndTxn 5+) only at a finalized `transaction.version` >= 2, and
`kafka-features describe` lists every supported feature with its finalized level. So the
table says what we implement and nothing more: no `share.version` or `streams.version`
(no share or streams groups), no `eligible.leader.replicas.version` (no replication).

Kafka finalizes a level by a record in its metadata log; we have none, so the table is the
record. A finalized level of 0 is not listed as finalized, as Kafka omits it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Feature:
    """A feature's supported range and the level in force (0: off, not listed as finalized)."""

    name: str
    supported_min: int
    supported_max: int
    finalized: int

    def __post_init__(self) -> None:
        if not 0 <= self.supported_min <= self.supported_max:
            raise AssertionError(f"{self.name}: bad supported range")
        if self.finalized and not self.supported_min <= self.finalized <= self.supported_max:
            raise AssertionError(f"{self.name}: finalized level outside the supported range")


# Kafka 4.3's metadata.version levels: 7 is 3.3-IV3 (the oldest Kafka 4 reads), 30 is
# 4.3-IV0 (Kafka 4.3's latest production level, the one a new 4.3 cluster is formatted with).
METADATA_VERSION_MIN = 7
METADATA_VERSION_4_3_IV0 = 30

FEATURES: tuple[Feature, ...] = (
    Feature("metadata.version", METADATA_VERSION_MIN, METADATA_VERSION_4_3_IV0,
            METADATA_VERSION_4_3_IV0),
    # KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe): GV_1.
    Feature("group.version", 0, 1, 1),
    # TV_2 (KIP-890 part 2), as Kafka 4.x formats a cluster: the epoch is bumped on every
    # commit/abort and the broker adds partitions itself; it moves the Java client to
    # Produce 12+ and EndTxn 5. Clients that do not ask for it keep the TV_1 protocol.
    Feature("transaction.version", 0, 2, 2),
    # No Raft: a static quorum's level, 0, as Kafka formatted without --standalone has.
    Feature("kraft.version", 0, 1, 0),
)  # fmt: skip

# Kafka's epoch is the metadata-log offset of the last feature change; the Java client takes
# finalized features only from an answer whose epoch is above the last one it saw (it starts
# at -1). Raise this when a finalized level above changes.
FINALIZED_FEATURES_EPOCH = 2

# KIP-1022: ApiVersions v3 answers leave out supported features whose minimum is 0 (older
# clients fail to read a 0 minimum); v4 lists them all.
LIST_MIN_ZERO_VERSION = 4


def supported_features(api_version: int) -> list[Feature]:
    if api_version >= LIST_MIN_ZERO_VERSION:
        return list(FEATURES)
    return [f for f in FEATURES if f.supported_min > 0]


def finalized_features() -> list[Feature]:
    return [f for f in FEATURES if f.finalized > 0]


def finalized_level(name: str) -> int:
    """The level in force for `name` (0 if we do not have the feature)."""
    return next((f.finalized for f in FEATURES if f.name == name), 0)
