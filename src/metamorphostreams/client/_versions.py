"""The API versions our clients speak: for each API, the range whose semantics they implement.

The version used on a connection is min(our max, the broker's max), as every Kafka client
does, and must be at least max(our min, the broker's min).
"""

from __future__ import annotations

CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    0: (3, 11),  # Produce: magic-2 batches; 12+ is transaction-version-2, 13+ topic ids
    1: (4, 12),  # Fetch: 13+ addresses topics by id
    2: (1, 7),  # ListOffsets
    3: (1, 12),  # Metadata: 13 adds only a top-level error code
    8: (2, 9),  # OffsetCommit: 10+ topic ids
    9: (1, 9),  # OffsetFetch: 8+ batches groups; 10+ topic ids
    10: (0, 6),  # FindCoordinator: 4+ batches keys
    11: (0, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup: 3+ batches members
    14: (0, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 5),  # ListGroups
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 4),  # InitProducerId: 3+ bumps the epoch of a given producer id
    24: (0, 3),  # AddPartitionsToTxn: 4+ is broker-to-broker (verification)
    25: (0, 4),  # AddOffsetsToTxn
    26: (0, 4),  # EndTxn: 5 is transaction-version-2 (epoch bump per transaction)
    28: (0, 4),  # TxnOffsetCommit: 5 implies AddOffsetsToTxn (transaction-version-2)
    32: (1, 4),  # DescribeConfigs
    35: (1, 5),  # DescribeLogDirs: 4+ volume sizes, 5 is_cordoned
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    44: (0, 1),  # IncrementalAlterConfigs
    47: (0, 0),  # OffsetDelete
    60: (0, 1),  # DescribeCluster
    68: (0, 1),  # ConsumerGroupHeartbeat
    69: (0, 1),  # ConsumerGroupDescribe
}

API_VERSIONS_FIRST_TRY = 3  # the first flexible ApiVersions; older brokers answer v0 (KIP-511)
