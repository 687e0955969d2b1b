"""Our clients against the reference Apache Kafka (one JVM per test session): the same
programs that pass against our broker must pass against Kafka, or the client is wrong."""

from __future__ import annotations

import time
import uuid

import pytest
from cli.runner import invoke_mms
from helpers.reference_kafka import ReferenceKafka, reference_kafka

from metamorphostreams.client import Admin, Consumer, NewTopic, Producer, TopicPartition

from .test_groups import three_members_share_commit_leave_and_resume

__all__ = ["reference_kafka"]

READ_LIMIT_S = 60.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_every_codec(reference_kafka: ReferenceKafka, codec: str) -> None:
    bootstrap = reference_kafka.bootstrap
    topic = _unique(f"ref-{codec}")
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(topic, 3, 1)])
    sent = [
        (f"k{i % 7}".encode(), f"value-{i}".encode(), [("h", b"%d" % i)], 1_700_000_000_000 + i)
        for i in range(300)
    ]
    with Producer({"bootstrap.servers": bootstrap, "compression.type": codec}) as producer:
        futures = [producer.produce(topic, v, k, headers=h, timestamp=t) for k, v, h, t in sent]
        producer.flush()
        assert all(f.result().offset >= 0 for f in futures)
    with Consumer({"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}) as consumer:
        consumer.assign([(topic, p) for p in range(3)])
        got: list = []
        deadline = time.monotonic() + READ_LIMIT_S
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += consumer.poll(0.5)
    assert sorted((r.key, r.value, r.headers, r.timestamp) for r in got) == sorted(
        (k, v, h, t) for k, v, h, t in sent
    )


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"partition.assignment.strategy": "cooperative-sticky"}, id="classic"),
        pytest.param({"group.protocol": "consumer"}, id="kip-848"),
    ],
)
def test_group_against_kafka(reference_kafka: ReferenceKafka, extra: dict[str, str]) -> None:
    three_members_share_commit_leave_and_resume(reference_kafka.bootstrap, extra)


def test_admin_and_cli_alter_config(reference_kafka: ReferenceKafka) -> None:
    bootstrap = reference_kafka.bootstrap
    topic = _unique("ref-admin")
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(topic, 2, 1)])
        admin.alter_configs("topic", topic, {"retention.ms": "86400000"})
        assert admin.describe_configs("topic", topic)["retention.ms"].value == "86400000"
        tp = TopicPartition(topic, 0)
        assert admin.list_offsets({tp: "latest"}) == {tp: (0, -1)}
        assert admin.describe_cluster().brokers
    result = invoke_mms("topic", "alter-config", topic, "--delete", "retention.ms", "-b", bootstrap)
    assert result.returncode == 0, result.stderr
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        assert admin.describe_configs("topic", topic)["retention.ms"].is_default
