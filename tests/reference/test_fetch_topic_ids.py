"""Fetch v13-18, raw: topics by id (KIP-516), ReplicaState (KIP-903), current leaders (KIP-951).

What Kafka 4.3 answers, and these tests hold us to:
- v13+ name topics by id; the answer carries the id (compared as "which topic's id").
- Partitions of unknown ids (UNKNOWN_TOPIC_ID), topics or partitions
  (UNKNOWN_TOPIC_OR_PARTITION) come after all the others, at every version, with empty
  aborted transactions; a failed read (OFFSET_OUT_OF_RANGE, leader epochs) stays in place
  with null ones. They do not end a long poll unless nothing else was asked for.
- A fetch from a follower (ReplicaId, v15+ ReplicaState.ReplicaId) gets
  NOT_LEADER_OR_FOLLOWER per partition; from v16 with the current leader and empty
  NodeEndpoints.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from helpers import kafka_wire as wire
from kafka.protocol.consumer import FetchRequest

from .batches import batch
from .differential import (
    NONE,
    NOT_LEADER_OR_FOLLOWER,
    OFFSET_OUT_OF_RANGE,
    UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    Target,
    Targets,
    create_topic,
    metadata_request,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(180)

FetchTopic = FetchRequest.FetchTopic
UNKNOWN_LEADER_EPOCH = 75
ZERO = uuid.UUID(int=0)
UNKNOWN = uuid.UUID(int=0x5EED)  # no topic has it: Kafka's ids are random
TS = 1_700_000_000_000  # fixed, so both brokers store byte-identical batches
ALL_VOLATILE = frozenset({"throttle_time_ms", "error_message", "cluster_id", "port", "session_id"})


def _topic_id(t: Target, name: str) -> uuid.UUID:
    (described,) = t.request(metadata_request([name])).topics
    return uuid.UUID(str(described.topic_id))


def _labelled(value: Any, labels: Mapping[str, str]) -> Any:
    """`topic_id` values replaced by what they stand for ('the topic's', 'unknown', ...)."""
    if isinstance(value, Mapping):
        return {
            k: (labels.get(str(v), f"other: {v}") if k == "topic_id" else _labelled(v, labels))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_labelled(v, labels) for v in value]
    return value


def _view(response: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    """A Fetch response as plain data: ids labelled, records summarised by batch (and kept)."""
    answer: dict[str, Any] = response.to_dict()
    for topic, topic_object in zip(answer["responses"], response.responses, strict=True):
        for p, p_object in zip(topic["partitions"], topic_object.partitions, strict=True):
            records = bytes(p_object.records or b"")
            p["records"] = records
            p["batches"] = [
                (h.base_offset, h.record_count, h.partition_leader_epoch)
                for h in wire.batch_headers(records)
            ]
    return dict(_labelled(answer, labels))


def _partition(p: int, offset: int, epoch: int = -1) -> Any:
    return FetchTopic.FetchPartition(
        partition=p, fetch_offset=offset, partition_max_bytes=1 << 20, current_leader_epoch=epoch
    )


def _request(
    version: int,
    topics: Sequence[tuple[Any, Sequence[Any]]],
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
    replica_id: int = -1,
) -> Any:
    """Fetch of `(topic name or id, partitions)`: names below v13, ids from v13."""
    key = "topic_id" if version >= 13 else "topic"
    request = FetchRequest[version](
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=1 << 20,
        isolation_level=0,
        topics=[FetchTopic(**{key: t}, partitions=list(parts)) for t, parts in topics],
    )
    if version >= 15:
        request.replica_state = FetchRequest.ReplicaState(replica_id=replica_id, replica_epoch=-1)
    else:
        request.replica_id = replica_id
    return request


class _Topics:
    """Two topics created and filled once per broker; `key(t, name)` names them as asked."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.first, self.second = unique("fid"), unique("fid2")
        self.ids: dict[str, dict[str, uuid.UUID]] = {}

    def setup(self, t: Target) -> None:
        create_topic(t, self.first, 2)
        create_topic(t, self.second, 1)
        for n, ts in ((1, TS), (3, TS + 10), (2, TS + 20)):
            assert produce(t, self.first, 0, batch(n, ts, f"a{n}"))["error_code"] == NONE
        assert produce(t, self.first, 1, batch(2, TS, "b"))["error_code"] == NONE
        assert produce(t, self.second, 0, batch(4, TS, "c"))["error_code"] == NONE
        self.ids[t.name] = {n: _topic_id(t, n) for n in (self.first, self.second)}

    def key(self, t: Target, name: str) -> Any:
        """The topic as this version names it (an unknown name maps to UNKNOWN's id)."""
        if self.version < 13:
            return name
        return self.ids[t.name].get(name, UNKNOWN)

    def labels(self, t: Target) -> dict[str, str]:
        ids = self.ids[t.name]
        return {
            str(ids[self.first]): "first topic's",
            str(ids[self.second]): "second topic's",
            str(UNKNOWN): "unknown",
            str(ZERO): "zero",
            "None": "zero",  # kafka-python decodes the zero id as None
        }


@pytest.mark.parametrize("version", [13, 14, 15, 16, 17, 18])
def test_every_version_by_topic_id(targets: Targets, version: int) -> None:
    topics = _Topics(version)

    def scenario(t: Target) -> dict[str, Any]:
        topics.setup(t)
        first, second = topics.key(t, topics.first), topics.key(t, topics.second)
        request = _request(
            version,
            [(first, [_partition(0, 1), _partition(1, 0)]), (second, [_partition(0, 2)])],
        )
        return _view(t.request(request), topics.labels(t))

    answer = targets.compare(scenario, f"Fetch v{version} by topic id", drop=ALL_VOLATILE)
    first, second = answer["responses"]
    assert first["topic_id"] == "first topic's" and second["topic_id"] == "second topic's"
    assert [b[:2] for b in first["partitions"][0]["batches"]] == [[1, 3], [4, 2]]


@pytest.mark.parametrize("version", [12, 13, 16, 18])
def test_unknown_topics_and_partitions_answered_last(targets: Targets, version: int) -> None:
    topics = _Topics(version)
    missing = unique("fid-missing")

    def scenario(t: Target) -> dict[str, Any]:
        topics.setup(t)
        first, second = topics.key(t, topics.first), topics.key(t, topics.second)
        out: dict[str, Any] = {}
        cases: dict[str, list[tuple[Any, list[Any]]]] = {
            "unknown first": [
                (topics.key(t, missing), [_partition(0, 0)]),
                (first, [_partition(7, 0), _partition(0, 0), _partition(1, 9)]),
                (second, [_partition(0, 0, epoch=5)]),
            ],
            "unknown between": [
                (first, [_partition(0, 4)]),
                (topics.key(t, missing), [_partition(1, 0)]),
                (first, [_partition(1, 0)]),
            ],
            "only unknown": [(topics.key(t, missing), [_partition(0, 0), _partition(3, 0)])],
            "the same topic twice": [
                (first, [_partition(0, 0)]),
                (first, [_partition(1, 0)]),
                (second, [_partition(0, 0)]),
                (first, [_partition(4, 0)]),
            ],
        }
        if version >= 13:
            cases["zero id"] = [(ZERO, [_partition(0, 0)]), (second, [_partition(0, 0)])]
        for case, asked in cases.items():
            out[case] = _view(t.request(_request(version, asked)), topics.labels(t))
        return out

    answer = targets.compare(
        scenario, f"Fetch v{version}: unknown topics and partitions", drop=ALL_VOLATILE
    )
    parts = [
        (p["partition_index"], p["error_code"])
        for r in answer["unknown first"]["responses"]
        for p in r["partitions"]
    ]
    unknown = UNKNOWN_TOPIC_ID if version >= 13 else UNKNOWN_TOPIC_OR_PARTITION
    assert parts == [
        (0, NONE),
        (1, OFFSET_OUT_OF_RANGE),
        (0, UNKNOWN_LEADER_EPOCH),
        (0, unknown),
        (7, UNKNOWN_TOPIC_OR_PARTITION),
    ]


@pytest.mark.parametrize("version", [12, 15, 16, 18])
def test_fetch_from_a_follower(targets: Targets, version: int) -> None:
    """KIP-951: from v16 a NOT_LEADER_OR_FOLLOWER answer names the current leader."""
    topics = _Topics(version)

    def scenario(t: Target) -> dict[str, Any]:
        topics.setup(t)
        first = topics.key(t, topics.first)
        asked = [(first, [_partition(0, 0), _partition(5, 0)]), (UNKNOWN, [_partition(0, 0)])]
        if version < 13:
            asked.pop()
        return {
            f"replica {replica}": _view(
                t.request(_request(version, asked, replica_id=replica)), topics.labels(t)
            )
            for replica in (1, 0)
        }

    answer = targets.compare(scenario, f"Fetch v{version} from a follower", drop=ALL_VOLATILE)
    partition = answer["replica 1"]["responses"][0]["partitions"][0]
    assert partition["error_code"] == NOT_LEADER_OR_FOLLOWER
    if version >= 16:
        assert partition["current_leader"] == {"leader_id": 0, "leader_epoch": 0}


def test_unknown_partitions_do_not_end_a_long_poll(targets: Targets) -> None:
    """Kafka waits max_wait for the partitions it knows; with none, it answers at once."""
    topics = _Topics(18)
    wait_ms = 2_000

    def scenario(t: Target) -> dict[str, Any]:
        topics.setup(t)
        second = topics.key(t, topics.second)
        out: dict[str, Any] = {}
        cases = {
            "unknown id and an empty read": [
                (UNKNOWN, [_partition(0, 0)]),
                (second, [_partition(0, 4)]),
            ],
            "unknown partition and an empty read": [(second, [_partition(3, 0), _partition(0, 4)])],
            "only an unknown id": [(UNKNOWN, [_partition(0, 0)])],
        }
        for case, asked in cases.items():
            started = time.monotonic()
            t.request(_request(18, asked, max_wait_ms=wait_ms, min_bytes=1))
            waited_ms = (time.monotonic() - started) * 1000
            # Bounds far from both ends: a slow machine answers late, never early.
            out[case] = (
                "waited"
                if waited_ms >= wait_ms * 0.9
                else ("at once" if waited_ms < wait_ms / 2 else f"after {waited_ms:.0f} ms")
            )
        return out

    answer = targets.compare(scenario, "Fetch long polls with unknown partitions")
    assert answer["only an unknown id"] == "at once"
    assert answer["unknown id and an empty read"] == "waited"
