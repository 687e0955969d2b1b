"""ListOffsets, raw: earliest, latest, max timestamp and by time, at several versions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import kafka_wire as wire

from .differential import (
    NONE,
    UNSUPPORTED_VERSION,
    VOLATILE,
    Target,
    Targets,
    create_topic,
    list_offsets,
    list_offsets_request,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(120)

EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3  # KIP-734, ListOffsets v7+


def _now_ms() -> int:
    return int(time.time() * 1000)


def _batch(deltas: list[int], base_timestamp: int, tag: str) -> bytes:
    return wire.build_record_batch(
        [wire.Record(f"{tag}{i}".encode(), b"v", (), d) for i, d in enumerate(deltas)],
        base_timestamp=base_timestamp,
    )


def _offsets(t: Target, topic: str, specs: dict[str, int], version: int) -> dict[str, Any]:
    return {name: list_offsets(t, topic, 0, ts, version=version) for name, ts in specs.items()}


def test_empty_partition(targets: Targets) -> None:
    topic = unique("lo-empty")
    specs = {"earliest": EARLIEST, "max timestamp": MAX_TIMESTAMP, "by time": 0}

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        out = {"v7": _offsets(t, topic, specs, 7), "v1": _offsets(t, topic, specs, 1)}
        out["latest v7 offset"] = list_offsets(t, topic, 0, LATEST)["offset"]
        return out

    # The leader epochs of an empty partition are compared by the next test.
    targets.compare(scenario, "ListOffsets on an empty partition", drop=VOLATILE | {"leader_epoch"})


def test_empty_partition_ends_have_the_leader_epoch(targets: Targets) -> None:
    topic = unique("lo-empty-epoch")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "earliest": list_offsets(t, topic, 0, EARLIEST),
            "latest": list_offsets(t, topic, 0, LATEST),
        }

    targets.compare(scenario, "ListOffsets earliest/latest on an empty partition")


@pytest.mark.parametrize("version", [1, 4, 7, 11])
def test_by_time_max_timestamp_and_ends(targets: Targets, version: int) -> None:
    topic = unique("lo-time")
    t0 = _now_ms() - 600_000
    # Timestamps out of order across and inside batches, so "first offset with a timestamp
    # at or after T" and "offset of the largest timestamp" are not just the ends.
    batches = [
        _batch([0, 10, 20], t0, "a"),  # offsets 0-2: T, T+10, T+20
        _batch([5, 40, 15], t0, "b"),  # offsets 3-5: T+5, T+40, T+15
        _batch([25], t0, "c"),  # offset 6: T+25
        _batch([40], t0, "d"),  # offset 7: T+40 again (ties with offset 4)
    ]
    specs = {
        "earliest": EARLIEST,
        "latest": LATEST,
        "before all": t0 - 1000,
        "T": t0,
        "T+5": t0 + 5,
        "T+11": t0 + 11,
        "T+21": t0 + 21,
        "T+30": t0 + 30,
        "T+40": t0 + 40,
        "after all": t0 + 41,
    }
    if version >= 7:
        specs["max timestamp"] = MAX_TIMESTAMP

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        for b in batches:
            assert produce(t, topic, 0, b)["error_code"] == NONE
        return _offsets(t, topic, specs, version)

    answer = targets.compare(scenario, f"ListOffsets v{version} by time")
    assert answer["latest"]["offset"] == 8


def test_after_delete_records(targets: Targets) -> None:
    from kafka.protocol.admin import DeleteRecordsRequest

    topic = unique("lo-deleted")
    t0 = _now_ms() - 600_000
    specs = {"earliest": EARLIEST, "latest": LATEST, "T": t0, "T+3": t0 + 3}
    specs["max timestamp"] = MAX_TIMESTAMP

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        produce(t, topic, 0, _batch([0, 1, 2], t0, "a"))
        produce(t, topic, 0, _batch([3, 4], t0, "b"))
        drt = DeleteRecordsRequest.DeleteRecordsTopic
        deleted = t.request(
            DeleteRecordsRequest[2](
                topics=[
                    drt(
                        name=topic,
                        partitions=[drt.DeleteRecordsPartition(partition_index=0, offset=4)],
                    )
                ],
                timeout_ms=10_000,
            )
        )
        return {
            "delete records": deleted.topics[0].partitions[0].to_dict(),
            "offsets": _offsets(t, topic, specs, 7),
        }

    targets.compare(scenario, "ListOffsets after DeleteRecords moved the log start")


def test_several_partitions_and_unknown_ones(targets: Targets) -> None:
    topic = unique("lo-multi")
    t0 = _now_ms() - 600_000

    def scenario(t: Target) -> list[Any]:
        create_topic(t, topic, 2)
        produce(t, topic, 0, _batch([0], t0, "a"))
        produce(t, topic, 1, _batch([0, 1], t0, "b"))
        response = t.request(
            list_offsets_request(topic, {0: LATEST, 1: EARLIEST, 2: LATEST, 7: t0}, version=11)
        )
        return sorted(
            (p.to_dict() for r in response.topics for p in r.partitions),
            key=lambda p: p["partition_index"],
        )

    targets.compare(scenario, "one ListOffsets for known and unknown partitions")


EARLIEST_LOCAL = -4  # KIP-405, v8+
LATEST_TIERED = -5  # KIP-1005, v9+
EARLIEST_PENDING_UPLOAD = -6  # KIP-1023, v11+
UNKNOWN_SENTINEL = -7


@pytest.mark.parametrize("version", [7, 8, 9, 10, 11])
def test_every_sentinel_at_every_version(targets: Targets, version: int) -> None:
    """Each sentinel below its version gets UNSUPPORTED_VERSION; without tiered storage the
    local log start is the log start and nothing is (pending) uploaded. DeleteRecords first,
    so that the log start is not offset 0."""
    from kafka.protocol.admin import DeleteRecordsRequest

    topic = unique(f"lo-v{version}")
    t0 = _now_ms() - 600_000
    specs = {
        "latest": LATEST,
        "earliest": EARLIEST,
        "max timestamp": MAX_TIMESTAMP,
        "earliest local": EARLIEST_LOCAL,
        "latest tiered": LATEST_TIERED,
        "earliest pending upload": EARLIEST_PENDING_UPLOAD,
        "unknown sentinel": UNKNOWN_SENTINEL,
        "T+3": t0 + 3,
    }

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        produce(t, topic, 0, _batch([0, 1, 2], t0, "a"))
        produce(t, topic, 0, _batch([3, 4], t0, "b"))
        drt = DeleteRecordsRequest.DeleteRecordsTopic
        t.request(
            DeleteRecordsRequest[2](
                topics=[
                    drt(
                        name=topic,
                        partitions=[drt.DeleteRecordsPartition(partition_index=0, offset=2)],
                    )
                ],
                timeout_ms=10_000,
            )
        )
        out = {}
        for name, ts in specs.items():
            request = list_offsets_request(topic, {0: ts}, version=version)
            if version >= 10:
                request.timeout_ms = 10_000  # KIP-1075: for reads from remote storage
            (topic_answer,) = t.request(request).topics
            (out[name],) = (p.to_dict() for p in topic_answer.partitions)
        return out

    answer = targets.compare(scenario, f"ListOffsets v{version}: every sentinel")
    assert answer["earliest local"]["error_code"] == (NONE if version >= 8 else UNSUPPORTED_VERSION)
    if version >= 8:
        assert answer["earliest local"]["offset"] == 2
    assert answer["unknown sentinel"]["error_code"] == UNSUPPORTED_VERSION
