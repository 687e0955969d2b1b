"""The API versions this broker serves, and the ranges it advertises in ApiVersions.

Ranges follow ../shared/kafka-protocol/client_versions.md ("Broker should implement"). The
advertised range may start below the served one where old librdkafka needs it: librdkafka
before 2.11.1 enables compression only when Produce v0 is advertised (KAFKA-18659), so, like
Kafka 4.x, we advertise Produce from v0 but serve v3 and up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._generated import API_NAMES, REQUEST_CLASSES


@dataclass(frozen=True, slots=True)
class ApiRange:
    api_key: int
    advertised_min: int
    served_min: int
    max_version: int

    @property
    def name(self) -> str:
        return API_NAMES[self.api_key]

    def serves(self, version: int) -> bool:
        return self.served_min <= version <= self.max_version


def _r(api_key: int, lo: int, hi: int, advertised_min: int | None = None) -> ApiRange:
    lo_schema, hi_schema = REQUEST_CLASSES[api_key].VALID_VERSIONS
    if not (lo_schema <= lo and hi <= hi_schema):
        raise AssertionError(f"api {api_key} {lo}-{hi} outside its schema {lo_schema}-{hi_schema}")
    return ApiRange(api_key, lo if advertised_min is None else advertised_min, lo, hi)


SERVED: dict[int, ApiRange] = {
    r.api_key: r
    for r in (
        _r(0, 3, 13, advertised_min=0),  # Produce (12+: transaction version 2; 13+: topic ids)
        _r(1, 4, 18),  # Fetch (13+: topics by id)
        _r(2, 1, 11),  # ListOffsets
        _r(3, 0, 13),  # Metadata
        _r(8, 2, 10),  # OffsetCommit (10+: topics by id)
        _r(9, 1, 10),  # OffsetFetch (8+: batched groups; 10+: topics by id)
        _r(10, 0, 6),  # FindCoordinator (4+: batched keys)
        _r(11, 0, 9),  # JoinGroup
        _r(12, 0, 4),  # Heartbeat
        _r(13, 0, 5),  # LeaveGroup
        _r(14, 0, 5),  # SyncGroup
        _r(15, 0, 6),  # DescribeGroups
        _r(16, 0, 5),  # ListGroups
        _r(18, 0, 4),  # ApiVersions
        _r(19, 2, 7),  # CreateTopics
        _r(20, 1, 6),  # DeleteTopics
        _r(21, 0, 2),  # DeleteRecords
        _r(22, 0, 5),  # InitProducerId (6: KIP-939 two-phase commit, not served)
        _r(23, 2, 4),  # OffsetForLeaderEpoch
        _r(24, 0, 5),  # AddPartitionsToTxn (4+: batched, brokers' KIP-890 verification)
        _r(25, 0, 4),  # AddOffsetsToTxn
        _r(26, 0, 5),  # EndTxn (5: transaction version 2, the epoch bumped per transaction)
        _r(27, 1, 2),  # WriteTxnMarkers
        _r(28, 0, 5),  # TxnOffsetCommit
        _r(32, 1, 4),  # DescribeConfigs
        _r(35, 1, 5),  # DescribeLogDirs (5: is_cordoned, always false here)
        _r(37, 0, 3),  # CreatePartitions
        _r(42, 0, 2),  # DeleteGroups
        _r(43, 0, 2),  # ElectLeaders (in a cluster: run by the controller, forwarded to it)
        _r(47, 0, 0),  # OffsetDelete
        _r(60, 0, 2),  # DescribeCluster
        _r(61, 0, 0),  # DescribeProducers
        _r(65, 0, 0),  # DescribeTransactions
        _r(66, 0, 2),  # ListTransactions
        _r(68, 0, 1),  # ConsumerGroupHeartbeat (KIP-848)
        _r(69, 0, 1),  # ConsumerGroupDescribe
    )
}


def served_range(api_key: int) -> ApiRange | None:
    return SERVED.get(api_key)
