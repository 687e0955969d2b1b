"""The admin client, and the connection's version negotiation and pipelining."""

from __future__ import annotations

import asyncio
import time

import pytest

from metamorphostreams.client import (
    Admin,
    NewTopic,
    Producer,
    TopicAlreadyExistsError,
    TopicPartition,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from metamorphostreams.client._versions import CLIENT_VERSIONS
from metamorphostreams.client.connection import BrokerConnection
from metamorphostreams.client.errors import InvalidPartitionsError, KafkaConnectionError
from metamorphostreams.protocol._generated.metadata import MetadataRequest
from metamorphostreams.protocol.api_versions import SERVED
from metamorphostreams.pytest_plugin import BrokerThread


def test_topic_lifecycle(bootstrap: str) -> None:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic("a", 2, config={"retention.ms": "123456"}), NewTopic("b")])
        topics = admin.list_topics()
        assert {n: len(t.partitions) for n, t in topics.items() if n in "ab"} == {"a": 2, "b": 3}
        desc = admin.describe_topics(["a"])["a"]
        assert [p.partition for p in desc.partitions] == [0, 1]
        assert all(p.leader == 0 and p.isr == (0,) for p in desc.partitions)
        with pytest.raises(TopicAlreadyExistsError, match="'a'"):
            admin.create_topics([NewTopic("a", 1)])
        admin.create_partitions({"a": 4})
        deadline = time.monotonic() + 30  # Kafka's metadata catches up asynchronously
        while len(admin.describe_topics(["a"])["a"].partitions) != 4:
            assert time.monotonic() < deadline, "new partitions never showed up"
            time.sleep(0.05)
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({"a": 2})
        configs = admin.describe_configs("topic", "a")
        assert configs["retention.ms"].value == "123456"
        assert configs["retention.ms"].source == "DYNAMIC_TOPIC_CONFIG"
        assert configs["cleanup.policy"].is_default
        admin.delete_topics(["b"])
        with pytest.raises(UnknownTopicOrPartitionError, match="'b'"):
            admin.describe_topics(["b"])
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics(["b"])
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.describe_configs("topic", "b")


def test_cluster_offsets_and_records(bootstrap: str) -> None:
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(10):
            producer.produce("logs", str(i), partition=0, timestamp=5000 + i)
        producer.flush()
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        cluster = admin.describe_cluster()
        assert cluster.controller_id == 0 and [b.node_id for b in cluster.brokers] == [0]
        assert cluster.cluster_id
        tp = TopicPartition("logs", 0)
        assert admin.list_offsets({tp: "earliest"})[tp][0] == 0
        assert admin.list_offsets({tp: "latest"})[tp][0] == 10
        assert admin.list_offsets({tp: 5003})[tp] == (3, 5003)
        assert admin.delete_records({tp: 4}) == {tp: 4}
        assert admin.list_offsets({tp: "earliest"})[tp][0] == 4
        config = admin.describe_configs("broker", "0")
        assert "num.partitions" in config


def test_alter_configs_unsupported_is_a_clear_error(bootstrap: str) -> None:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        if admin.supports(44):
            admin.create_topics([NewTopic("cfg", 1)])
            admin.alter_configs("topic", "cfg", {"retention.ms": "1000"})
            assert admin.describe_configs("topic", "cfg")["retention.ms"].value == "1000"
            return
        admin.create_topics([NewTopic("cfg", 1)])
        with pytest.raises(UnsupportedVersionError, match="IncrementalAlterConfigs"):
            admin.alter_configs("topic", "cfg", {"retention.ms": "1000"})


def test_versions_negotiated_and_requests_pipelined(broker_thread: BrokerThread) -> None:
    host, port = broker_thread.bootstrap.rsplit(":", 1)

    async def run() -> None:
        conn = await BrokerConnection.open(host, int(port), client_id="t")
        try:
            for api_key, (_lo, hi) in CLIENT_VERSIONS.items():
                served = SERVED.get(api_key)
                if served is None:
                    assert not conn.supports(api_key)
                    continue
                assert conn.version_for(api_key) == min(hi, served.max_version)
            version = conn.version_for(MetadataRequest.API_KEY)
            # Many requests in flight on one connection, answered in order.
            responses = await asyncio.gather(
                *(conn.request(MetadataRequest(topics=[]), version) for _ in range(200))
            )
            assert len({r.cluster_id for r in responses}) == 1
            assert conn.in_flight == 0
            with pytest.raises(UnsupportedVersionError, match="does not support"):
                conn.version_for(44 if 44 not in SERVED else 9999)
        finally:
            conn.close()

    asyncio.run(run())


def test_connection_errors() -> None:
    async def run() -> None:
        with pytest.raises(KafkaConnectionError, match="Connection refused"):
            await BrokerConnection.open("127.0.0.1", 1, client_id="t")

    asyncio.run(run())
