"""DescribeLogDirs on a standalone broker: every local log of the data dir with the bytes of
its segments, partitions asked for by name, every served version, and our admin client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metamorphostreams.client import (
    Admin,
    LogDirDescription,
    NewTopic,
    Producer,
    ReplicaInfo,
    TopicPartition,
)
from metamorphostreams.client.admin import _log_dirs
from metamorphostreams.client.errors import KafkaError
from metamorphostreams.protocol._generated.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from metamorphostreams.protocol.api_versions import SERVED
from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.pytest_plugin import BrokerThread

from .ourwire import WireClient

DESCRIBE_LOG_DIRS = 35
Request = DescribeLogDirsRequest
Topic = DescribeLogDirsRequest.DescribableLogDirTopic


def _segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    """What Kafka reports as a partition's size: the bytes of its .log segment files."""
    return sum(p.stat().st_size for p in (data_dir / f"{topic}-{partition}").glob("*.log"))


def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    with Producer({"bootstrap.servers": bootstrap, "linger.ms": 0}) as producer:
        for partition, n in counts.items():
            for i in range(n):
                producer.produce(topic, b"v%d" % i * 10, key=b"k%d" % i, partition=partition)
        producer.flush()


def _wire(broker: BrokerThread, request: Request, version: int) -> Any:
    async def ask() -> Any:
        client = await WireClient.connect(broker.host, broker.port)
        try:
            return await client.request(request, version)
        finally:
            await client.close()

    return asyncio.run(ask())


@pytest.fixture
def broker(kafka_broker_factory: Callable[..., BrokerThread]) -> BrokerThread:
    return kafka_broker_factory({"num.partitions": "1", "offsets.topic.num.partitions": "2"})


def test_served_versions_are_the_codecs() -> None:
    served = SERVED[DESCRIBE_LOG_DIRS]
    assert (served.served_min, served.max_version) == DescribeLogDirsRequest.VALID_VERSIONS


def test_every_local_log_with_its_segment_bytes(broker: BrokerThread) -> None:
    with Admin({"bootstrap.servers": broker.bootstrap}) as admin:
        admin.create_topics([NewTopic("a", 3), NewTopic("b", 1)])
        _produce(broker.bootstrap, "a", {0: 5, 2: 40})
        admin.alter_group_offsets("g", {TopicPartition("a", 0): 1})  # __consumer_offsets
        described = admin.describe_log_dirs()

    assert list(described) == [0]
    (path, d), *others = described[0].items()
    assert others == []
    assert path == d.path == str(broker.data_dir.absolute())
    assert d.error_code == ErrorCode.NONE and not d.is_cordoned
    expected = {("a", 0), ("a", 1), ("a", 2), ("b", 0)} | {
        ("__consumer_offsets", p) for p in (0, 1)
    }
    assert {(tp.topic, tp.partition) for tp in d.replicas} == expected
    for tp, info in d.replicas.items():
        assert info == ReplicaInfo(
            _segment_bytes(broker.data_dir, tp.topic, tp.partition), 0, False
        )
    sizes = {tp: info.size for tp, info in d.replicas.items()}
    assert sizes[TopicPartition("a", 1)] == sizes[TopicPartition("b", 0)] == 0
    assert 0 < sizes[TopicPartition("a", 0)] < sizes[TopicPartition("a", 2)]
    volume = os.statvfs(broker.data_dir)
    assert d.total_bytes == volume.f_blocks * volume.f_frsize
    assert d.usable_bytes is not None and 0 <= d.usable_bytes <= d.total_bytes


def test_asked_partitions_only_at_every_version(broker: BrokerThread) -> None:
    with Admin({"bootstrap.servers": broker.bootstrap}) as admin:
        admin.create_topics([NewTopic("a", 2), NewTopic("b", 1)])
        _produce(broker.bootstrap, "a", {1: 3})
        asked = admin.describe_log_dirs(
            [0], [TopicPartition("a", 1), TopicPartition("a", 9), TopicPartition("zz", 0)]
        )[0]
    assert [list(d.replicas) for d in asked.values()] == [[TopicPartition("a", 1)]]

    lo, hi = DescribeLogDirsRequest.VALID_VERSIONS
    for version in range(lo, hi + 1):
        # a-0 and a-7 (no such partition), b with no partitions, an unknown topic
        request = Request(
            topics=[
                Topic(topic="a", partitions=[0, 7]),
                Topic(topic="b"),
                Topic(topic="zz", partitions=[0]),
            ]
        )
        response = _wire(broker, request, version)
        assert response.error_code == ErrorCode.NONE and response.throttle_time_ms == 0
        [result] = response.results
        assert result.error_code == ErrorCode.NONE
        assert result.log_dir == str(broker.data_dir.absolute())
        assert [(t.name, [p.partition_index for p in t.partitions]) for t in result.topics] == [
            ("a", [0])
        ]
        [partition] = result.topics[0].partitions
        assert partition.partition_size == 0 and partition.offset_lag == 0
        assert partition.is_future_key is False
        if version >= 4:
            assert result.total_bytes > 0 and 0 <= result.usable_bytes <= result.total_bytes
        else:
            assert result.total_bytes == result.usable_bytes == -1  # not on the wire

        everything = _wire(broker, Request(topics=None), version).results[0]
        assert sorted((t.name, len(t.partitions)) for t in everything.topics) == [
            ("a", 2),
            ("b", 1),
        ]
        nothing = _wire(broker, Request(topics=[]), version).results[0]
        assert nothing.error_code == ErrorCode.NONE and nothing.topics == []


def test_sizes_follow_appends(broker: BrokerThread) -> None:
    tp = TopicPartition("grows", 0)
    with Admin({"bootstrap.servers": broker.bootstrap}) as admin:
        admin.create_topics([NewTopic(tp.topic, 1)])
        before = admin.describe_log_dirs(partitions=[tp])[0]
        _produce(broker.bootstrap, tp.topic, {0: 20})
        after = admin.describe_log_dirs(partitions=[tp])[0]
    [old] = [d.replicas[tp].size for d in before.values()]
    [new] = [d.replicas[tp].size for d in after.values()]
    assert old == 0 and new == _segment_bytes(broker.data_dir, tp.topic, tp.partition) > 0


def test_admin_reads_a_refusal_as_kafkas_client_does() -> None:
    """No log dir at all is a refused request: the top-level error (v3+), or before v3,
    where the response has none, the authorization failure Kafka's admin client assumes."""
    with pytest.raises(KafkaError) as refused:
        _log_dirs(1, DescribeLogDirsResponse(results=[]))
    assert refused.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    with pytest.raises(KafkaError) as raised:
        _log_dirs(1, DescribeLogDirsResponse(error_code=ErrorCode.KAFKA_STORAGE_ERROR))
    assert raised.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    offline = DescribeLogDirsResponse.DescribeLogDirsResult(
        error_code=ErrorCode.KAFKA_STORAGE_ERROR, log_dir="/gone"
    )
    described = _log_dirs(1, DescribeLogDirsResponse(results=[offline]))
    assert described == {
        "/gone": LogDirDescription("/gone", ErrorCode.KAFKA_STORAGE_ERROR, {}, None, None)
    }
