"""DescribeLogDirs and the describing commands across three real broker processes: every
broker lists the partitions it leads and those it follows, with the same sizes once the
followers caught up; `mms topic describe` shows replicas, ISR and offline replicas, and
`mms cluster describe` the controller and every broker.

The tests share one cluster and run in file order: the last one kills a broker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cli.runner import invoke_mms
from helpers.confluent import wait_until

from metamorphostreams.client import Admin, NewTopic, Producer, TopicPartition

from .conftest import BrokerCluster

LIMIT_S = 60.0
TOPIC = "spread"
PARTITIONS = 3


def _mms_json(bootstrap: str, *args: str) -> Any:
    result = invoke_mms(*args, "--json", "-b", bootstrap)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _full_isr(admin: Admin) -> bool:
    parts = admin.describe_topics([TOPIC])[TOPIC].partitions
    return len(parts) == PARTITIONS and all(
        p.leader >= 0 and sorted(p.isr) == [0, 1, 2] for p in parts
    )


@pytest.fixture(scope="module")
def replicated(cluster3: BrokerCluster) -> BrokerCluster:
    """``TOPIC``: three partitions on all three brokers, records in each, full ISRs."""
    with Admin({"bootstrap.servers": cluster3.bootstrap}) as admin:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])
        wait_until(lambda: _full_isr(admin), f"{TOPIC} with every replica in sync", LIMIT_S)
    config = {"bootstrap.servers": cluster3.bootstrap, "acks": "all", "linger.ms": 0}
    with Producer(config) as producer:
        for partition in range(PARTITIONS):
            for i in range(10 * (partition + 1)):
                producer.produce(TOPIC, b"value-%d" % i, partition=partition)
        producer.flush()
    return cluster3


def _sizes(admin: Admin, broker: int) -> dict[int, tuple[int, int]]:
    """partition of ``TOPIC`` -> (size, offset lag) in ``broker``'s log dir."""
    [d] = admin.describe_log_dirs([broker])[broker].values()
    assert d.error_code == 0
    return {
        tp.partition: (info.size, info.offset_lag)
        for tp, info in d.replicas.items()
        if tp.topic == TOPIC
    }


def test_every_broker_lists_its_leader_and_follower_partitions(replicated: BrokerCluster) -> None:
    with Admin({"bootstrap.servers": replicated.bootstrap}) as admin:
        leaders = {p.partition: p.leader for p in admin.describe_topics([TOPIC])[TOPIC].partitions}
        assert sorted(set(leaders.values())) == [0, 1, 2]  # each broker leads one, follows two

        def caught_up() -> bool:
            seen = [_sizes(admin, b.broker_id) for b in replicated.brokers]
            return all(s == seen[0] for s in seen) and sorted(seen[0]) == [0, 1, 2]

        wait_until(caught_up, "the followers' logs as large as their leaders'", LIMIT_S)
        sizes = _sizes(admin, 0)
        assert all(lag == 0 for _size, lag in sizes.values())
        assert 0 < sizes[0][0] < sizes[1][0] < sizes[2][0]

        described = admin.describe_log_dirs()
        assert sorted(described) == [0, 1, 2]
        for broker in replicated.brokers:
            [path] = described[broker.broker_id]
            assert path == str(broker.data_dir.absolute())

        # One partition asked of every broker: each answers for its own replica.
        one = admin.describe_log_dirs(partitions=[TopicPartition(TOPIC, 1)])
        for dirs in one.values():
            [d] = dirs.values()
            assert list(d.replicas) == [TopicPartition(TOPIC, 1)]


def test_mms_describes_topic_replicas_and_the_cluster(replicated: BrokerCluster) -> None:
    bootstrap = replicated.brokers[0].bootstrap
    described = _mms_json(bootstrap, "topic", "describe", TOPIC)
    for p in described["partitions"]:
        assert sorted(p["replicas"]) == [0, 1, 2] and sorted(p["isr"]) == [0, 1, 2]
        assert p["offline_replicas"] == [] and p["leader"] in p["replicas"]
        assert p["latest_offset"] == 10 * (p["partition"] + 1)

    cluster = _mms_json(bootstrap, "cluster", "describe")
    assert cluster["controller_id"] in (0, 1, 2)
    assert [(b["id"], b["host"], b["port"]) for b in cluster["brokers"]] == [
        (b.broker_id, "127.0.0.1", b.port) for b in replicated.brokers
    ]
    table = invoke_mms("cluster", "describe", "-b", bootstrap).stdout
    assert f"Controller: {cluster['controller_id']}" in table

    log_dirs = _mms_json(bootstrap, "log-dirs", "--topic", TOPIC)
    assert [b["broker"] for b in log_dirs["brokers"]] == [0, 1, 2]
    for broker in log_dirs["brokers"]:
        [d] = broker["log_dirs"]
        assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]


def test_a_dead_broker_is_an_offline_replica(replicated: BrokerCluster) -> None:
    with Admin({"bootstrap.servers": replicated.bootstrap}) as admin:
        controller = admin.describe_cluster().controller_id
    victim = next(b for b in replicated.brokers if b.broker_id != controller)
    survivor = next(b for b in replicated.brokers if b is not victim and b.running)
    victim.kill()

    def offline_everywhere() -> bool:
        parts = _mms_json(survivor.bootstrap, "topic", "describe", TOPIC)["partitions"]
        return all(p["offline_replicas"] == [victim.broker_id] for p in parts)

    wait_until(offline_everywhere, f"broker {victim.broker_id} offline in every partition", LIMIT_S)
    result = invoke_mms("log-dirs", "--broker", str(victim.broker_id), "-b", survivor.bootstrap)
    assert result.returncode == 1 and f"no broker {victim.broker_id}" in result.stderr
