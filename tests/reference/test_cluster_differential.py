"""Our three-broker cluster against a three-node Apache Kafka cluster, raw.

One scenario runs once per module on each cluster (Kafka: three KRaft nodes in combined
mode, `ReferenceKafkaCluster`; ours: three `mms broker --zookeeper` processes,
`BrokerCluster` of tests/cluster), and the tests compare what a client sees, field by field:

1. two topics with 3 partitions and replication factor 3 are created: `guarded`
   (min.insync.replicas=3) and `failover`; Metadata v12 of both (a);
2. five records go to partition 0 of `failover` in two batches (acks=-1) and a consumer
   Fetch (replica id -1) is sent to one of its followers at v4, v11 and v12 (c);
3. node X, the leader of `failover`-0, is stopped (SIGTERM: a controlled shutdown); once
   a new leader is elected and X left every ISR, Metadata v12 again (a);
4. a partition of `guarded` that X followed gets a Produce with acks=-1 (below
   min.insync.replicas) and one with acks=1 (b);
5. three more records go to `failover`-0 on its new leader, which is then asked
   OffsetForLeaderEpoch v4 (replica id -1) for stale, current, future and old epochs (d),
   and ListOffsets for the latest offset (e).

Placement differs between the two (which node leads which partition), so node ids are
compared as sets before X stops and as roles ("stopped", "live") after; everything else,
epochs and offsets included, is compared literally. Both clusters get byte-identical
batches, so Fetch answers' record bytes are compared whole.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cluster.conftest import BrokerCluster, new_chroot, zookeeper
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerProcess
from helpers.reference_kafka import (
    JVM_SIGTERM_EXIT,
    ReferenceKafkaCluster,
    require_reference_kafka,
)
from helpers.zookeeper import ZooKeeperServer

from .differential import (
    NONE,
    NOT_LEADER_OR_FOLLOWER,
    VOLATILE,
    Target,
    call,
    compare_answers,
    create_topics_request,
    list_offsets,
    metadata_request,
    plain,
    produce,
    wait_until,
)

__all__ = ["zookeeper"]  # tests/cluster's session ZooKeeper, a fixture here too

pytestmark = pytest.mark.timeout(300)

NOT_ENOUGH_REPLICAS = 19
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75

GUARDED = "cd-guarded"  # min.insync.replicas=3: acks=-1 is refused once a follower is gone
FAILOVER = "cd-failover"  # its partition 0's leader is the node stopped
PARTITIONS = 3
REPLICATION_FACTOR = 3
FIRST_BATCHES = (3, 2)  # records per batch sent to FAILOVER-0 before its leader stops
AFTER_FAILOVER = 3  # records sent to the new leader
FETCH_VERSIONS = (4, 11, 12)  # 11: KIP-392, a consumer may read from a follower
SETTLE_LIMIT_S = 60.0  # liveness bound for elections and metadata propagation
# Both clusters: a follower that stopped fetching leaves the ISR within 5 s (30 s default).
REPLICA_LAG_TIME_MAX_MS = 5000
# A stopped node leaves the ISRs at once (controlled shutdown) or, failing that, once it
# lags for replica.lag.time.max.ms: six times that is a liveness bound, not a timing check.
ISR_SHRINK_LIMIT_S = 6 * REPLICA_LAG_TIME_MAX_MS / 1000


# --------------------------------------------------------------------------- the clusters


class _OurCluster(BrokerCluster):
    """tests/cluster's BrokerCluster with the replica lag bound the Kafka cluster has."""

    def new_broker(self, broker_id: int, data_dir: Path | None = None) -> BrokerProcess:
        broker = super().new_broker(broker_id, data_dir)
        broker.settings["replica.lag.time.max.ms"] = REPLICA_LAG_TIME_MAX_MS
        return broker


@dataclass
class ClusterUnderTest:
    """A cluster as the scenario sees it: a Target per node id, and a way to stop a node."""

    name: str
    nodes: dict[int, Target]
    stop: Callable[[int], None]
    stopped: set[int] = field(default_factory=set)

    def live(self) -> list[Target]:
        return [t for i, t in sorted(self.nodes.items()) if i not in self.stopped]

    def stop_node(self, node_id: int) -> None:
        self.stop(node_id)
        self.stopped.add(node_id)


def _kafka_under_test(kafka: ReferenceKafkaCluster) -> ClusterUnderTest:
    def stop(node_id: int) -> None:
        code = kafka.stop_node(node_id)
        assert code in (0, JVM_SIGTERM_EXIT), f"Kafka node {node_id} exited with {code}"

    nodes = {n.node_id: Target(f"kafka-{n.node_id}", n.bootstrap) for n in kafka.nodes}
    return ClusterUnderTest("kafka", nodes, stop)


def _ours_under_test(ours: BrokerCluster) -> ClusterUnderTest:
    def stop(node_id: int) -> None:
        ours.brokers[node_id].stop()

    nodes = {b.broker_id: Target(f"ours-{b.broker_id}", b.bootstrap) for b in ours.brokers}
    return ClusterUnderTest("ours", nodes, stop)


@pytest.fixture(scope="module")
def clusters(
    zookeeper: ZooKeeperServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ReferenceKafkaCluster, BrokerCluster]]:
    """Kafka's three nodes and our three brokers, started side by side (Kafka's JVMs spend
    much of their start waiting for each other)."""
    require_reference_kafka()
    kafka = ReferenceKafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    ours = _OurCluster(new_chroot(zookeeper), tmp_path_factory.mktemp("our-cluster"), 3)
    failures: list[BaseException] = []

    def start_kafka() -> None:
        try:
            kafka.start()
        except BaseException as exc:  # raised below, in the fixture's thread
            failures.append(exc)

    starter = threading.Thread(target=start_kafka, name="kafka-cluster-start")
    starter.start()
    try:
        try:
            ours.start()
        finally:
            starter.join()
        if failures:
            raise failures[0]
        yield kafka, ours
    finally:
        try:
            kafka.stop()
        finally:
            kafka.close()
            ours.close()


@pytest.fixture(scope="module")
def observed(clusters: tuple[ReferenceKafkaCluster, BrokerCluster]) -> dict[str, dict[str, Any]]:
    """The scenario's answers: {"kafka": {step: answer}, "ours": {step: answer}}."""
    kafka, ours = clusters
    # One set of batches for both, so stored and fetched bytes can be compared whole.
    batches = _batches(int(time.time() * 1000) - 60_000)
    return {
        "kafka": observe(_kafka_under_test(kafka), batches),
        "ours": observe(_ours_under_test(ours), batches),
    }


# --------------------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Batches:
    first: tuple[bytes, ...]
    after_failover: bytes
    guarded: bytes


def _batches(ts: int) -> Batches:
    def batch(tag: str, count: int) -> bytes:
        records = [wire.Record(f"{tag}-{i}".encode(), b"v" * 10, (), i) for i in range(count)]
        return wire.build_record_batch(records, base_timestamp=ts)

    return Batches(
        first=tuple(batch(f"first{n}", count) for n, count in enumerate(FIRST_BATCHES)),
        after_failover=batch("after", AFTER_FAILOVER),
        guarded=batch("guarded", 1),
    )


class _Steps:
    """Runs the scenario's steps, recording each one's answer or what it raised, so one
    broker's failure at a step shows in that step's comparison and the others still run."""

    def __init__(self, cluster: ClusterUnderTest) -> None:
        self.cluster = cluster
        self.answers: dict[str, Any] = {}

    def run(self, name: str, step: Callable[[], Any]) -> Any:
        try:
            answer = step()
        except Exception as exc:  # recorded, compared, reported by the test of this step
            answer = {"raised": f"{type(exc).__name__}: {exc}"}
        self.answers[name] = answer
        return answer


def _metadata(target: Target) -> dict[str, Any]:
    answer: dict[str, Any] = target.request(metadata_request([GUARDED, FAILOVER])).to_dict()
    return answer


def _partitions(md: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (t["name"], p["partition_index"]): p
        for t in md["topics"]
        if t["error_code"] == NONE
        for p in t["partitions"]
    }


def _settled(md: dict[str, Any], check: Callable[[dict[str, Any]], bool]) -> bool:
    parts = _partitions(md)
    return len(parts) == 2 * PARTITIONS and all(check(p) for p in parts.values())


def _node_settled(target: Target, check: Callable[[dict[str, Any]], bool]) -> bool:
    return _settled(_metadata(target), check)


def _wait_metadata(
    cluster: ClusterUnderTest,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    limit_s: float = SETTLE_LIMIT_S,
) -> None:
    """Until every live node's Metadata passes `check` for every partition of both topics."""
    deadline = time.monotonic() + limit_s
    for target in cluster.live():
        wait_until(
            partial(_node_settled, target, check),
            f"{target}: {what}",
            max(deadline - time.monotonic(), 0.0),
        )


def _produce(target: Target, topic: str, partition: int, batch: bytes, acks: int) -> Any:
    """Produce's answer for one partition, its `index` (the partition asked, which depends on
    each cluster's placement) replaced by whether it echoes the partition asked."""
    answer = produce(target, topic, partition, batch, acks=acks)
    answer["index is the partition asked"] = answer.pop("index") == partition
    return answer


def _fetch(target: Target, partition: int, version: int) -> dict[str, Any]:
    response = target.request(wire.fetch_request(FAILOVER, partition, 0, version=version))
    out: dict[str, Any] = {"top-level error_code": response.error_code}
    (topic,) = response.responses
    (part,) = topic.partitions
    out.update(part.to_dict())
    out["records"] = bytes(part.records or b"")
    return out


def _fetch_from_follower(target: Target, version: int, end: int) -> dict[str, Any]:
    """The follower's answer once it serves the whole log (or refuses): a follower learns
    the high watermark from its next fetch from the leader, a moment after acks=-1."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    answer = _fetch(target, 0, version)
    while answer["error_code"] == NONE and answer["high_watermark"] < end:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        answer = _fetch(target, 0, version)
    return answer


def _offset_for_leader_epoch(target: Target, current_epoch: int, epoch: int) -> dict[str, Any]:
    from metamorphostreams.protocol._generated.offset_for_leader_epoch import (
        OffsetForLeaderEpochRequest as Request,
    )

    request = Request(
        replica_id=-1,
        topics=[
            Request.OffsetForLeaderTopic(
                topic=FAILOVER,
                partitions=[
                    Request.OffsetForLeaderPartition(
                        partition=0, current_leader_epoch=current_epoch, leader_epoch=epoch
                    )
                ],
            )
        ],
    )
    answer: dict[str, Any] = plain(call(target, request, 4))
    return answer


def observe(cluster: ClusterUnderTest, batches: Batches) -> dict[str, Any]:
    """Run the scenario on one cluster; {step: answer}. Setup failures raise."""
    steps = _Steps(cluster)
    first = cluster.nodes[0]

    # -- 1. two RF=3 topics, each partition led and fully replicated on every node
    for topic, configs in ((GUARDED, {"min.insync.replicas": "3"}), (FAILOVER, {})):
        response = first.request(
            create_topics_request(
                {topic: PARTITIONS}, configs=configs, replication_factor=REPLICATION_FACTOR
            )
        )
        (created,) = response.topics
        assert created.error_code == NONE, f"{first}: CreateTopics {topic}: {created}"
    _wait_metadata(
        cluster,
        lambda p: p["leader_id"] >= 0 and len(p["isr_nodes"]) == REPLICATION_FACTOR,
        "every partition led, with a full ISR",
    )
    created_md = _metadata(first)
    steps.answers["metadata at creation"] = _creation_view(created_md)
    before = _partitions(created_md)
    stopped = before[(FAILOVER, 0)]["leader_id"]
    followers = sorted(set(before[(FAILOVER, 0)]["replica_nodes"]) - {stopped})
    guarded_partition = min(
        p for (t, p), part in before.items() if t == GUARDED and part["leader_id"] != stopped
    )
    guarded_leader = cluster.nodes[before[(GUARDED, guarded_partition)]["leader_id"]]

    # -- 2. records on FAILOVER-0; a consumer's Fetch to one of its followers
    leader = cluster.nodes[stopped]
    first_count = sum(FIRST_BATCHES)
    steps.answers["produce before the failover"] = [
        produce(leader, FAILOVER, 0, batch, acks=-1) for batch in batches.first
    ]
    for version in FETCH_VERSIONS:
        steps.run(
            f"fetch v{version} from a follower",
            partial(_fetch_from_follower, cluster.nodes[followers[0]], version, first_count),
        )

    # -- 3. the leader of FAILOVER-0 stops; a new leader, and X out of every ISR
    cluster.stop_node(stopped)

    def moved_on(p: dict[str, Any]) -> bool:
        return p["leader_id"] not in (-1, stopped) and stopped not in p["isr_nodes"]

    steps.run(
        "stopped node out of leaders and ISRs",
        lambda: _wait_metadata(
            cluster, moved_on, f"node {stopped} out of leaders and ISRs", ISR_SHRINK_LIMIT_S
        ),
    )
    after_md = _metadata(cluster.live()[0])
    steps.answers["metadata after a node stopped"] = _after_view(after_md, before, stopped)
    after = _partitions(after_md)

    # -- 4. acks=-1 below min.insync.replicas, then acks=1
    steps.run(
        "produce acks=-1 below min.insync.replicas",
        lambda: _produce(guarded_leader, GUARDED, guarded_partition, batches.guarded, -1),
    )
    steps.run(
        "produce acks=1 below min.insync.replicas",
        lambda: _produce(guarded_leader, GUARDED, guarded_partition, batches.guarded, 1),
    )

    # -- 5. the new leader of FAILOVER-0: more records, OffsetForLeaderEpoch, ListOffsets
    new_leader_id = after[(FAILOVER, 0)]["leader_id"]
    new_epoch = after[(FAILOVER, 0)]["leader_epoch"]
    new_leader = cluster.nodes[new_leader_id]
    steps.answers["new leader epoch"] = new_epoch
    steps.run(
        "produce after the failover",
        lambda: produce(new_leader, FAILOVER, 0, batches.after_failover, acks=-1),
    )
    other_follower = cluster.nodes[next(f for f in followers if f != new_leader_id)]
    cases = {
        "stale current epoch (0)": (new_leader, 0, 0),
        "current epoch, its end": (new_leader, new_epoch, new_epoch),
        "current epoch, the first epoch's end": (new_leader, new_epoch, 0),
        "no current epoch, the first epoch's end": (new_leader, -1, 0),
        "future current epoch": (new_leader, new_epoch + 1, new_epoch),
        "to a follower": (other_follower, new_epoch, 0),
    }
    for case, (target, current, epoch) in cases.items():
        steps.run(
            f"OffsetForLeaderEpoch: {case}",
            partial(_offset_for_leader_epoch, target, current, epoch),
        )
    steps.run(
        "list offsets latest on the new leader", lambda: list_offsets(new_leader, FAILOVER, 0, -1)
    )
    steps.answers["acknowledged"] = first_count + AFTER_FAILOVER
    return steps.answers


# --------------------------------------------------------------------------- views


def _brokers_view(md: dict[str, Any], role: Callable[[int], Any]) -> dict[str, Any]:
    ids = [b["node_id"] for b in md["brokers"]]
    return {
        "count": len(ids),
        "node ids": sorted(role(i) for i in ids),
        "hosts": sorted({b["host"] for b in md["brokers"]}),
        "racks": sorted({str(b["rack"]) for b in md["brokers"]}),
        "controller is one of them": md["controller_id"] in ids,
    }


def _creation_view(md: dict[str, Any]) -> dict[str, Any]:
    """Metadata with node ids as sets: placement is each cluster's own."""
    topics = {}
    for t in sorted(md["topics"], key=lambda t: t["name"]):
        partitions = []
        for p in sorted(t["partitions"], key=lambda p: p["partition_index"]):
            partitions.append(
                {
                    "partition_index": p["partition_index"],
                    "error_code": p["error_code"],
                    "leader is a replica": p["leader_id"] in p["replica_nodes"],
                    "leader_epoch": p["leader_epoch"],
                    "replicas": sorted(p["replica_nodes"]),
                    "isr": sorted(p["isr_nodes"]),
                    "offline_replicas": sorted(p["offline_replicas"]),
                }
            )
        topics[t["name"]] = {
            "error_code": t["error_code"],
            "is_internal": t["is_internal"],
            "authorized_operations": t["authorized_operations"],
            "distinct leaders": len({p["leader_id"] for p in t["partitions"]}),
            "partitions": partitions,
        }
    return {"brokers": _brokers_view(md, lambda i: i), "topics": topics}


def _after_view(
    md: dict[str, Any], before: dict[tuple[str, int], dict[str, Any]], stopped: int
) -> dict[str, Any]:
    """Metadata with node ids as roles, each partition told by whether the stopped node
    led it (per topic, one partition did and two did not, in both clusters)."""

    def role(node: int) -> str:
        return "none" if node < 0 else "stopped" if node == stopped else "live"

    topics = {}
    for t in sorted(md["topics"], key=lambda t: t["name"]):
        rows = []
        for p in t["partitions"]:
            was = before[(t["name"], p["partition_index"])]
            rows.append(
                {
                    "stopped node led it": was["leader_id"] == stopped,
                    "error_code": p["error_code"],
                    "leader": role(p["leader_id"]),
                    "leader was a follower": p["leader_id"] in was["replica_nodes"]
                    and p["leader_id"] != was["leader_id"],
                    "leader_epoch": p["leader_epoch"],
                    "replicas": sorted(role(n) for n in p["replica_nodes"]),
                    "isr": sorted(role(n) for n in p["isr_nodes"]),
                    "offline_replicas": sorted(role(n) for n in p["offline_replicas"]),
                }
            )
        topics[t["name"]] = {
            "error_code": t["error_code"],
            "partitions": sorted(rows, key=repr),
        }
    return {"brokers": _brokers_view(md, role), "topics": topics}


# --------------------------------------------------------------------------- the tests


def _compare(
    observed: dict[str, dict[str, Any]], step: str, *, drop: frozenset[str] = VOLATILE
) -> Any:
    kafka, ours = observed["kafka"].get(step), observed["ours"].get(step)
    assert not (isinstance(kafka, dict) and "raised" in kafka), (
        f"the scenario is broken: on Kafka, step {step!r} raised {kafka['raised']}"
    )
    return compare_answers(kafka, ours, step, drop=drop)


def test_metadata_of_a_new_rf3_topic(observed: dict[str, dict[str, Any]]) -> None:
    answer = _compare(observed, "metadata at creation")
    assert answer["brokers"]["count"] == 3
    for topic in answer["topics"].values():
        for p in topic["partitions"]:
            assert p["leader_epoch"] == 0 and p["isr"] == [0, 1, 2], p


def test_metadata_after_a_node_stopped(observed: dict[str, dict[str, Any]]) -> None:
    _compare(observed, "stopped node out of leaders and ISRs")
    _compare(observed, "metadata after a node stopped")
    _compare(observed, "new leader epoch")


def test_produce_before_the_failover(observed: dict[str, dict[str, Any]]) -> None:
    answer = _compare(observed, "produce before the failover")
    assert [a["error_code"] for a in answer] == [NONE, NONE]


def test_produce_acks_all_below_min_insync_replicas(observed: dict[str, dict[str, Any]]) -> None:
    answer = _compare(observed, "produce acks=-1 below min.insync.replicas")
    assert answer["error_code"] == NOT_ENOUGH_REPLICAS


def _message_shape(message: str | None) -> str | None:
    """An error message with its numbers and node-id collections made generic."""
    if message is None:
        return None
    shape = re.sub(r"\b(Set|List)?[\[(]([\d, ]*)[\])]", "<ids>", message)
    return re.sub(r"\d+", "<n>", shape)


def test_not_enough_replicas_message(observed: dict[str, dict[str, Any]]) -> None:
    """The message that comes with NOT_ENOUGH_REPLICAS: null, or text of the same shape."""
    step = "produce acks=-1 below min.insync.replicas"
    kafka, ours = observed["kafka"][step], observed["ours"][step]

    def view(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "error_code": answer.get("error_code"),
            "error_message": _message_shape(answer.get("error_message")),
        }

    compare_answers(view(kafka), view(ours), f"{step}: the error message", drop=frozenset())


def test_produce_acks_1_below_min_insync_replicas(observed: dict[str, dict[str, Any]]) -> None:
    answer = _compare(observed, "produce acks=1 below min.insync.replicas")
    assert answer["error_code"] == NONE


@pytest.mark.parametrize("version", FETCH_VERSIONS)
def test_consumer_fetch_from_a_follower(observed: dict[str, dict[str, Any]], version: int) -> None:
    answer = _compare(observed, f"fetch v{version} from a follower")
    if version < 11:
        assert answer["error_code"] == NOT_LEADER_OR_FOLLOWER
    else:  # KIP-392: served by the follower, up to its high watermark, no redirection
        assert answer["error_code"] == NONE
        assert answer["high_watermark"] == sum(FIRST_BATCHES)
        assert answer["preferred_read_replica"] == -1


# case -> (error code, leader epoch, end offset) as Kafka answers; -1 for the new epoch.
OFFSET_FOR_LEADER_EPOCH_CASES: dict[str, tuple[int, int, int]] = {
    "stale current epoch (0)": (FENCED_LEADER_EPOCH, -1, -1),
    "current epoch, its end": (NONE, -1, sum(FIRST_BATCHES) + AFTER_FAILOVER),
    "current epoch, the first epoch's end": (NONE, 0, sum(FIRST_BATCHES)),
    "no current epoch, the first epoch's end": (NONE, 0, sum(FIRST_BATCHES)),
    "future current epoch": (UNKNOWN_LEADER_EPOCH, -1, -1),
    "to a follower": (NOT_LEADER_OR_FOLLOWER, -1, -1),
}


@pytest.mark.parametrize("case", OFFSET_FOR_LEADER_EPOCH_CASES)
def test_offset_for_leader_epoch_after_failover(
    observed: dict[str, dict[str, Any]], case: str
) -> None:
    _compare(observed, "produce after the failover")
    answer = _compare(observed, f"OffsetForLeaderEpoch: {case}")
    (topic,) = answer["topics"]
    (partition,) = topic["partitions"]
    error, epoch, end = OFFSET_FOR_LEADER_EPOCH_CASES[case]
    if case == "current epoch, its end":
        epoch = observed["kafka"]["new leader epoch"]
    assert (partition["error_code"], partition["leader_epoch"], partition["end_offset"]) == (
        error,
        epoch,
        end,
    )


def test_list_offsets_latest_on_the_new_leader(observed: dict[str, dict[str, Any]]) -> None:
    answer = _compare(observed, "list offsets latest on the new leader")
    assert answer["offset"] == observed["kafka"]["acknowledged"]
