"""ZkMetadataStore against a real ZooKeeper: round trips, two brokers, producer-id blocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from metamorphostreams.cluster import zk_paths as zp
from metamorphostreams.cluster.metadata import MetadataStore, uuid_to_kafka
from metamorphostreams.cluster.store import MetadataStoreProtocol
from metamorphostreams.cluster.zk_store import (
    TopicAlreadyMarkedForDeletion,
    TopicExistsError,
    UnknownTopicError,
    ZkMetadataStore,
)

KazooFactory = Callable[..., KazooClient]
WAIT_S = 10.0


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def store(kazoo_factory: KazooFactory, broker_id: int = 1) -> ZkMetadataStore:
    s = ZkMetadataStore(kazoo_factory(), broker_id)
    s.open()
    return s


def test_both_stores_satisfy_the_interface(kazoo_factory: KazooFactory, tmp_path: Path) -> None:
    assert isinstance(MetadataStore(tmp_path), MetadataStoreProtocol)
    assert isinstance(ZkMetadataStore(kazoo_factory(), 1), MetadataStoreProtocol)


def test_open_creates_kafkas_persistent_paths(kazoo_factory: KazooFactory) -> None:
    s = store(kazoo_factory)
    for path in zp.PERSISTENT_PATHS:
        assert s.client.exists(path) is not None, path


def test_cluster_id_created_once(kazoo_factory: KazooFactory) -> None:
    a, b = store(kazoo_factory, 1), store(kazoo_factory, 2)
    first = a.ensure_cluster_id()
    assert len(first) == 22 and a.cluster_id == first
    assert b.ensure_cluster_id("some-other-id") == first
    data, _ = a.client.get(zp.CLUSTER_ID_PATH)
    assert data == b'{"version":"1","id":"' + first.encode() + b'"}'


def test_topic_round_trip(kazoo_factory: KazooFactory) -> None:
    s = store(kazoo_factory)
    info = s.create_topic("orders", 3, {"retention.ms": "1000"}, {0: [1, 2], 1: [2, 1], 2: [1, 2]})
    assert s.topics["orders"] is info and s.topic_by_id(info.topic_id) is info
    data, _ = s.client.get("/brokers/topics/orders")
    assert zp.TopicAssignment.decode("orders", data).partitions == {0: [1, 2], 1: [2, 1], 2: [1, 2]}
    assert f'"topic_id":"{uuid_to_kafka(info.topic_id)}"'.encode() in data
    cfg, _ = s.client.get("/config/topics/orders")
    assert cfg == b'{"version":1,"config":{"retention.ms":"1000"}}'
    with pytest.raises(TopicExistsError):
        s.create_topic("orders", 1, {})

    s.set_partition_count("orders", 5)
    assert s.topics["orders"].partitions == 5
    assert s.assignments["orders"].partitions[4] == [1]
    s.set_topic_configs("orders", {"cleanup.policy": "compact"})
    assert s.topics["orders"].configs == {"cleanup.policy": "compact"}
    (change,) = s.client.get_children("/config/changes")
    assert change.startswith("config_change_") and len(change) == len("config_change_") + 10
    assert s.client.get(f"/config/changes/{change}")[0] == (
        b'{"version":2,"entity_path":"topics/orders"}'
    )

    reopened = store(kazoo_factory, 2)
    assert reopened.topics["orders"] == s.topics["orders"]
    assert reopened.colliding_topic("orders") is None

    s.delete_topic("orders")
    assert "orders" not in s.topics
    assert s.client.exists("/brokers/topics/orders") is None
    assert s.client.exists("/config/topics/orders") is None
    assert s.client.get_children("/admin/delete_topics") == []
    with pytest.raises(UnknownTopicError):
        s.delete_topic("orders")


def test_deletion_request_is_kafkas(kazoo_factory: KazooFactory) -> None:
    s = store(kazoo_factory)
    s.create_topic("t", 1, {})
    s.mark_topic_for_deletion("t")
    assert s.client.get_children("/admin/delete_topics") == ["t"]
    with pytest.raises(TopicAlreadyMarkedForDeletion):
        s.mark_topic_for_deletion("t")
    s.complete_topic_deletion("t")
    assert s.client.get_children("/admin/delete_topics") == []
    again = s.create_topic("t", 2, {})  # the name is free again, with a new id
    assert again.partitions == 2


def test_two_brokers_see_each_others_topics(kazoo_factory: KazooFactory) -> None:
    a, b = store(kazoo_factory, 1), store(kazoo_factory, 2)
    a.watch()
    b.watch()
    made = a.create_topic("from-a", 2, {})
    wait_for(lambda: "from-a" in b.topics, "broker 2 to see from-a")
    assert b.topics["from-a"].topic_id == made.topic_id
    b.create_topic("from.b", 1, {"segment.ms": "100"})
    wait_for(lambda: "from.b" in a.topics, "broker 1 to see from.b")
    assert a.colliding_topic("from_b") == "from.b"
    b.set_partition_count("from-a", 4)
    wait_for(lambda: a.topics["from-a"].partitions == 4, "broker 1 to see 4 partitions")
    a.set_topic_configs("from.b", {"segment.ms": "200"})
    wait_for(lambda: b.topics["from.b"].configs == {"segment.ms": "200"}, "the config change")
    b.delete_topic("from-a")
    wait_for(lambda: "from-a" not in a.topics, "broker 1 to see the deletion")


def test_deliver_runs_every_view_change(kazoo_factory: KazooFactory) -> None:
    delivered: list[str] = []

    def deliver(change: Callable[[], None]) -> None:
        delivered.append(threading.current_thread().name)
        change()

    s = ZkMetadataStore(kazoo_factory(), 1, deliver=deliver)
    s.open()
    s.ensure_cluster_id()
    s.create_topic("x", 1, {})
    assert len(delivered) == 3


def test_producer_id_blocks(kazoo_factory: KazooFactory) -> None:
    s = store(kazoo_factory, 7)
    ids = [s.allocate_producer_id() for _ in range(1001)]
    assert ids == list(range(1001))
    data, _ = s.client.get("/latest_producer_id_block")
    assert data == b'{"version":1,"broker":7,"block_start":"1000","block_end":"1999"}'
    restarted = store(kazoo_factory, 7)
    assert restarted.allocate_producer_id() == 2000  # never hands out an id twice


def test_producer_id_blocks_from_two_brokers_never_overlap(kazoo_factory: KazooFactory) -> None:
    stores = [
        ZkMetadataStore(kazoo_factory(), broker_id, producer_id_block_size=10)
        for broker_id in (1, 2, 3)
    ]
    blocks: list[zp.ProducerIdBlock] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores))

    def claim(s: ZkMetadataStore) -> None:
        start.wait()
        for _ in range(25):
            block = s.claim_producer_id_block()
            with lock:
                blocks.append(block)

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(blocks) == 75
    ordered = sorted(blocks, key=lambda b: b.block_start)
    assert [b.block_start for b in ordered] == list(range(0, 750, 10))
    assert all(b.size == 10 for b in ordered)
    assert {b.broker for b in blocks} == {1, 2, 3}
