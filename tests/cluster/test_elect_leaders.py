"""Preferred leader elections across real broker processes: a restarted broker's preferred
partitions stay led elsewhere until ElectLeaders (forwarded to the controller by any broker)
or the controller's automatic rebalance moves them back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from helpers.broker_process import BrokerProcess
from helpers.confluent import ADMIN_TIMEOUT_S, admin, create_topic, wait_until
from helpers.zookeeper import ZooKeeperServer

from metamorphostreams.client.connection import BrokerConnection
from metamorphostreams.protocol._generated.elect_leaders import ElectLeadersRequest
from metamorphostreams.protocol.errors import ErrorCode

from .conftest import BrokerCluster, new_chroot

LIMIT_S = 30.0
PARTITIONS = 6  # RF 3 over 3 brokers: each broker is the preferred leader of two
NOT_NEEDED = (ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.")
UNKNOWN = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist.")


class ConfiguredCluster(BrokerCluster):
    """A BrokerCluster whose brokers all get ``extra`` settings."""

    def __init__(self, zk: str, root: Path, count: int, extra: Mapping[str, object]) -> None:
        self.extra = dict(extra)
        super().__init__(zk, root, count)

    def new_broker(self, broker_id: int, data_dir: Path | None = None) -> BrokerProcess:
        broker = super().new_broker(broker_id, data_dir)
        broker.settings.update(self.extra)
        return broker


@pytest.fixture(scope="module")
def cluster(
    zookeeper: ZooKeeperServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerCluster]:
    """Three brokers that never rebalance on their own: only requests move leaders."""
    c = ConfiguredCluster(
        new_chroot(zookeeper),
        tmp_path_factory.mktemp("elect"),
        3,
        {"auto.leader.rebalance.enable": "false"},
    )
    try:
        yield c.start()
    finally:
        c.close()


def _partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) from metadata."""
    md = admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
    return {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in md.partitions.items()}


def _controller(cluster: BrokerCluster) -> int:
    return int(admin(cluster.bootstrap).list_topics(timeout=10).controller_id)


def _full_isr(cluster: BrokerCluster, topic: str) -> bool:
    parts = _partitions(cluster.bootstrap, topic)
    return len(parts) == PARTITIONS and all(
        len(isr) == 3 and leader >= 0 for leader, _, isr in parts.values()
    )


def _all_preferred(cluster: BrokerCluster, topic: str) -> bool:
    for broker in cluster.brokers:
        parts = _partitions(broker.bootstrap, topic)
        if any(leader != replicas[0] for leader, replicas, _ in parts.values()):
            return False
    return True


def _displace(cluster: BrokerCluster, topic: str) -> tuple[int, list[int]]:
    """Create ``topic``, restart a broker that is not the controller (its leaderships move
    away while it is down) and wait until it is back in every ISR: (that broker, the
    partitions it prefers)."""
    create_topic(cluster.bootstrap, topic, PARTITIONS, replication_factor=3)
    wait_until(lambda: _full_isr(cluster, topic), f"full ISRs of {topic}", LIMIT_S)
    assert _all_preferred(cluster, topic)
    controller = _controller(cluster)
    victim = next(b for b in cluster.brokers if b.broker_id != controller)
    victim.stop()  # controlled shutdown: its leaderships move first
    live = ",".join(b.bootstrap for b in cluster.brokers if b.running)
    parts = _partitions(live, topic)
    preferred = sorted(p for p, (_, rs, _) in parts.items() if rs[0] == victim.broker_id)
    assert len(preferred) == 2
    assert all(parts[p][0] not in (victim.broker_id, -1) for p in preferred)
    victim.start()
    cluster.wait_for_membership()
    wait_until(lambda: _full_isr(cluster, topic), f"{topic}'s ISRs with the restarted broker")
    return victim.broker_id, preferred


def _elect(
    bootstrap: str,
    partitions: dict[str, list[int]] | None,
    *,
    election_type: int = 0,
    version: int = 2,
    client_id: str = "elect-test",
) -> Any:
    """One ElectLeaders request through our codec."""
    topics = None
    if partitions is not None:
        topics = [
            ElectLeadersRequest.TopicPartitions(topic=t, partitions=ps)
            for t, ps in partitions.items()
        ]
    request = ElectLeadersRequest(
        election_type=election_type, topic_partitions=topics, timeout_ms=int(LIMIT_S * 1000)
    )
    host, _, port = bootstrap.rpartition(":")

    async def call() -> Any:
        conn = await BrokerConnection.open(host, int(port), client_id=client_id)
        try:
            return await conn.request(request, version, LIMIT_S + 10)
        finally:
            conn.close()

    return asyncio.run(call())


def _results(response: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {
        (t.topic, p.partition_id): (p.error_code, p.error_message)
        for t in response.replica_election_results
        for p in t.partition_result
    }


def test_elections_move_a_restarted_brokers_leadership_back(cluster: BrokerCluster) -> None:
    topic = "preferred"
    victim, (first, second) = _displace(cluster, topic)
    parts = _partitions(cluster.bootstrap, topic)
    assert parts[first][0] != victim and parts[second][0] != victim  # nothing moved them back
    balanced = next(p for p in range(PARTITIONS) if p not in (first, second))

    # Any broker but the controller forwards the request and relays the controller's answer.
    controller = _controller(cluster)
    other = next(b for b in cluster.brokers if b.broker_id != controller)
    response = _elect(other.bootstrap, {topic: [first, balanced, 99], "nope": [0]})
    assert response.error_code == ErrorCode.NONE
    assert _results(response) == {
        (topic, first): (ErrorCode.NONE, None),
        (topic, balanced): NOT_NEEDED,
        (topic, 99): UNKNOWN,
        ("nope", 0): UNKNOWN,
    }
    assert _partitions(cluster.brokers[controller].bootstrap, topic)[first][0] == victim
    # UNCLEAN elects only where a partition has no live leader.
    unclean = _elect(other.bootstrap, {topic: [second]}, election_type=1, version=1)
    assert _results(unclean) == {(topic, second): NOT_NEEDED}

    # confluent-kafka's AdminClient, every partition: only the election that was needed shows.
    client = admin(cluster.bootstrap)  # kept: the future fails once the client is collected
    result = client.elect_leaders(ElectionType.PREFERRED, None).result(ADMIN_TIMEOUT_S)
    assert result == {TopicPartition(topic, second): None}
    wait_until(lambda: _all_preferred(cluster, topic), "every broker to see preferred leaders")

    named = [TopicPartition(topic, p) for p in (first, second)] + [TopicPartition("nope", 0)]
    again = client.elect_leaders(ElectionType.PREFERRED, named)
    errors = {(tp.topic, tp.partition): e for tp, e in again.result(ADMIN_TIMEOUT_S).items()}
    assert {k: e.code() for k, e in errors.items()} == {
        (topic, first): KafkaError.ELECTION_NOT_NEEDED,
        (topic, second): KafkaError.ELECTION_NOT_NEEDED,
        ("nope", 0): KafkaError.UNKNOWN_TOPIC_OR_PART,
    }


def test_a_forwarded_request_is_never_forwarded_again(cluster: BrokerCluster) -> None:
    """A request a broker forwarded that reaches a broker no longer controller: answered
    NOT_CONTROLLER (as Kafka's ZooKeeper-era brokers answer), so it cannot loop."""
    controller = _controller(cluster)
    other = next(b for b in cluster.brokers if b.broker_id != controller)
    response = _elect(other.bootstrap, {"x": [0, 1]}, client_id="broker-9-elect-leaders-forward")
    assert _results(response) == {
        ("x", 0): (ErrorCode.NOT_CONTROLLER, None),
        ("x", 1): (ErrorCode.NOT_CONTROLLER, None),
    }


def test_the_controller_rebalances_leaders_by_itself(
    zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    """auto.leader.rebalance.enable (the default) with a check every second: leadership goes
    back to the restarted broker without any request."""
    c = ConfiguredCluster(
        new_chroot(zookeeper), tmp_path, 3, {"leader.imbalance.check.interval.seconds": 1}
    )
    try:
        c.start()
        _displace(c, "rebalanced")
        wait_until(lambda: _all_preferred(c, "rebalanced"), "the controller's rebalance", LIMIT_S)
    finally:
        c.close()
