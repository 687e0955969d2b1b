"""Transactional records, raw, against Kafka and us: Produce, read_committed Fetch, LSO.

Transactional batches are built with our record codec (`protocol.records.build_batch`), the
same bytes for both brokers. Compared: Produce errors by version, and what read_committed
and read_uncommitted fetches return over committed, aborted and open transactions: high
watermark, last stable offset, log start, aborted transactions, and every batch returned
(control batches included) as a summary of its header plus its records, with producer ids
named by the scenario and timestamps checked to be recent (markers are stamped by the
broker). Also ListOffsets by isolation level, DescribeProducers, and a transaction the
coordinator aborts when it times out. Coordinator APIs: test_transactions.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from helpers.broker_process import BrokerProcess
from helpers.reference_kafka import ReferenceKafka

from metamorphostreams.protocol._generated.describe_producers import DescribeProducersRequest
from metamorphostreams.protocol._generated.fetch import FetchRequest
from metamorphostreams.protocol._generated.list_offsets import ListOffsetsRequest
from metamorphostreams.protocol._generated.produce import ProduceRequest
from metamorphostreams.protocol.record_batch import BatchHeader
from metamorphostreams.protocol.records import build_batch, iter_batches

from .differential import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    NONE,
    TRANSACTION_ABORTABLE,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    TXN_ABORT_CHECK_INTERVAL_MS,
    Target,
    Targets,
    call,
    create_topic,
    init_producer_id,
    mask_producer_ids,
    plain,
    unique,
)
from .test_transactions import COMPLETE, Txn, _recent

pytestmark = pytest.mark.timeout(120)

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
# Record timestamps: the same for both brokers, a minute before the session started.
BASE_TIMESTAMP = int(time.time() * 1000) - 60_000


def txn_batch(
    txn: Txn | tuple[int, int],
    seq: int,
    n: int,
    tag: str,
    *,
    transactional: bool = True,
    epoch: int | None = None,
) -> bytes:
    producer_id, producer_epoch = (txn.producer_id, txn.epoch) if isinstance(txn, Txn) else txn
    return build_batch(
        [
            (f"{tag}-k{i}".encode(), f"{tag}-v{i}".encode(), [], BASE_TIMESTAMP + i)
            for i in range(n)
        ],
        producer_id=producer_id,
        producer_epoch=producer_epoch if epoch is None else epoch,
        base_sequence=seq,
        is_transactional=transactional,
    )


def produce_txn(
    t: Target,
    topic: str,
    partition: int,
    batch: bytes,
    transactional_id: str | None,
    *,
    version: int = 9,
) -> dict[str, Any]:
    """One batch to one partition: (error code, base offset) of its answer."""
    R = ProduceRequest
    request = R(
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=10_000,
        topic_data=[
            R.TopicProduceData(
                name=topic,
                partition_data=[R.PartitionProduceData(index=partition, records=batch)],
            )
        ],
    )
    response = call(t, request, version)
    (topic_response,) = response.responses
    (answer,) = topic_response.partition_responses
    return {
        "error_code": answer.error_code,
        "base_offset": answer.base_offset,
        "log_start_offset": answer.log_start_offset,
    }


def fetch_view(
    t: Target,
    topic: str,
    partition: int,
    offset: int,
    names: Mapping[int, str],
    *,
    isolation: int = READ_COMMITTED,
    version: int = 12,
) -> dict[str, Any]:
    """One partition's Fetch answer, its records summarised batch by batch."""
    F = FetchRequest
    request = F(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=isolation,
        session_id=0,
        session_epoch=-1,
        topics=[
            F.FetchTopic(
                topic=topic,
                partitions=[
                    F.FetchPartition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    response = call(t, request, version)
    assert response.error_code == NONE, f"{t}: Fetch: {response}"
    (topic_response,) = response.responses
    (answer,) = topic_response.partitions
    records = bytes(answer.records or b"")
    view = plain(answer)
    view["records"] = [_batch_view(h, rs) for h, rs in iter_batches(records)]
    return mask_producer_ids(view, names)


def _batch_view(header: BatchHeader, records: list[Any]) -> dict[str, Any]:
    return {
        "base_offset": header.base_offset,
        "last_offset_delta": header.last_offset_delta,
        "partition_leader_epoch": header.partition_leader_epoch,
        "attributes": header.attributes,
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "records_count": header.records_count,
        # A marker is stamped by the broker that writes it; data keeps the client's times.
        "max_timestamp": _recent(header.max_timestamp)
        if header.is_control
        else header.max_timestamp,
        "records": [(r.offset, r.key, r.value) for r in records],
    }


def list_offset(
    t: Target, topic: str, partition: int, timestamp: int, isolation: int, version: int = 7
) -> tuple[int, int]:
    L = ListOffsetsRequest
    request = L(
        replica_id=-1,
        isolation_level=isolation,
        topics=[
            L.ListOffsetsTopic(
                name=topic,
                partitions=[L.ListOffsetsPartition(partition_index=partition, timestamp=timestamp)],
            )
        ],
    )
    (topic_response,) = call(t, request, version).topics
    (answer,) = topic_response.partitions
    return answer.error_code, answer.offset


def describe_producers(
    t: Target, topic: str, partitions: list[int], names: Mapping[int, str]
) -> Any:
    R = DescribeProducersRequest
    request = R(topics=[R.TopicRequest(name=topic, partition_indexes=partitions)])
    answer = plain(call(t, request, 0))
    for topic_answer in answer["topics"]:
        for p in topic_answer["partitions"]:
            for producer in p["active_producers"]:
                producer["last_timestamp"] = _recent(producer["last_timestamp"])
            p["active_producers"].sort(key=lambda s: str(names.get(s["producer_id"])))
    return mask_producer_ids(answer, names)


# --------------------------------------------------------------------------- Produce


def _produce_case(version: int) -> Callable[[Target], dict[str, Any]]:
    topic = unique(f"txn-produce-v{version}")
    tid = unique("txn-produce")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 3)
        txn = Txn(t, tid)
        txn.add({topic: [0, 2]})
        other = init_producer_id(t)

        def send(partition: int, batch: bytes, transactional_id: str | None = tid) -> Any:
            return produce_txn(t, topic, partition, batch, transactional_id, version=version)

        out: dict[str, Any] = {
            "to a partition not added": send(1, txn_batch(txn, 0, 1, "a")),
            "without a transactional id": send(0, txn_batch(txn, 0, 1, "b"), None),
            "another transactional id": send(0, txn_batch(txn, 0, 1, "c"), tid + "-x"),
            "another producer's batch": send(0, txn_batch(other, 0, 1, "d")),
            "added partition": send(0, txn_batch(txn, 0, 2, "e")),
            "non-transactional batch, same producer": send(
                0, txn_batch(txn, 2, 1, "f", transactional=False)
            ),
            "next batch": send(0, txn_batch(txn, 2, 1, "g")),
            "a newer epoch": send(2, txn_batch(txn, 0, 1, "h", epoch=txn.epoch + 1)),
        }
        txn.end(True)
        txn.wait()
        fenced = Txn(t, tid)  # bumps the epoch: the old one is fenced
        fenced.add({topic: [0]})
        out["fenced epoch, partition added by the new one"] = send(0, txn_batch(txn, 3, 1, "i"))
        out["fenced epoch, partition not added"] = send(2, txn_batch(txn, 0, 1, "j"))
        out["new epoch"] = send(0, txn_batch(fenced, 0, 1, "k"))
        fenced.end(False)
        return out

    return scenario


PRODUCE_VERSIONS = (3, 7, 9, 10, 11)


def test_transactional_produce_errors(targets: Targets) -> None:
    cases = {f"v{v}": _produce_case(v) for v in PRODUCE_VERSIONS}
    answers = targets.compare_each(cases, "transactional Produce v3-11")
    for version in PRODUCE_VERSIONS:
        answer = answers[f"v{version}"]
        assert answer["added partition"]["error_code"] == NONE
        assert answer["without a transactional id"]["error_code"] == (
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        )
        not_added = answer["to a partition not added"]["error_code"]
        assert not_added == (TRANSACTION_ABORTABLE if version >= 11 else INVALID_TXN_STATE)
        assert answer["fenced epoch, partition added by the new one"]["error_code"] == (
            INVALID_PRODUCER_EPOCH
        )


# --------------------------------------------------------------------------- Fetch


def _layout(t: Target, topic: str, tid_a: str, tid_b: str) -> tuple[Txn, Txn, dict[int, str]]:
    """Partition 0: A commits 0-1 (marker 2), B aborts 3-4 (marker 5), a plain batch at 6,
    A's open transaction at 7-8 (and an open one of B on partition 1 at 0-1)."""
    create_topic(t, topic, 2)
    a, b = Txn(t, tid_a), Txn(t, tid_b)
    plain_producer = init_producer_id(t)
    names = {a.producer_id: "<a>", b.producer_id: "<b>", plain_producer[0]: "<plain>"}
    a.add({topic: [0]})
    assert produce_txn(t, topic, 0, txn_batch(a, 0, 2, "a1"), a.id)["error_code"] == NONE
    a.end(True)
    a.wait()
    b.add({topic: [0]})
    assert produce_txn(t, topic, 0, txn_batch(b, 0, 2, "b1"), b.id)["error_code"] == NONE
    b.end(False)
    b.wait()
    assert (
        produce_txn(t, topic, 0, txn_batch(plain_producer, 0, 1, "p", transactional=False), None)[
            "error_code"
        ]
        == NONE
    )
    a.add({topic: [0]})
    assert produce_txn(t, topic, 0, txn_batch(a, 2, 2, "a2"), a.id)["error_code"] == NONE
    b.add({topic: [1]})
    assert produce_txn(t, topic, 1, txn_batch(b, 2, 2, "b2"), b.id)["error_code"] == NONE
    return a, b, names


def _fetch_case(version: int) -> Callable[[Target], dict[str, Any]]:
    topic = unique(f"txn-fetch-v{version}")
    tid_a, tid_b = unique("txn-fetch-a"), unique("txn-fetch-b")

    def scenario(t: Target) -> dict[str, Any]:
        a, b, names = _layout(t, topic, tid_a, tid_b)

        def view(partition: int, offset: int, isolation: int = READ_COMMITTED) -> Any:
            return fetch_view(
                t, topic, partition, offset, names, isolation=isolation, version=version
            )

        out: dict[str, Any] = {}
        for offset in (0, 3, 4, 6, 7, 9):
            out[f"read_committed @{offset}, A open"] = view(0, offset)
        out["read_uncommitted @0, A open"] = view(0, 0, READ_UNCOMMITTED)
        out["read_committed, partition 1, B open"] = view(1, 0)
        a.end(False)
        a.wait()
        b.end(True)
        b.wait()
        for offset in (0, 5, 7, 10):
            out[f"read_committed @{offset}, all done"] = view(0, offset)
        out["read_uncommitted @0, all done"] = view(0, 0, READ_UNCOMMITTED)
        out["read_committed, partition 1, B committed"] = view(1, 0)
        return out

    return scenario


def test_read_committed_fetch(targets: Targets) -> None:
    cases = {f"v{v}": _fetch_case(v) for v in (4, 12)}
    for answer in targets.compare_each(cases, "read_committed Fetch v4 and v12").values():
        open_at_0 = answer["read_committed @0, A open"]
        assert (open_at_0["high_watermark"], open_at_0["last_stable_offset"]) == (9, 7)
        assert [r["base_offset"] for r in open_at_0["records"]] == [0, 2, 3, 5, 6]
        assert open_at_0["aborted_transactions"] == [{"producer_id": "<b>", "first_offset": 3}]


def test_last_stable_offset_and_producers(targets: Targets) -> None:
    """ListOffsets latest by isolation level (the LSO for read_committed) and
    DescribeProducers, while transactions are open and once they are done."""
    topic = unique("txn-lso")
    tid_a, tid_b = unique("txn-lso-a"), unique("txn-lso-b")

    def scenario(t: Target) -> dict[str, Any]:
        a, b, names = _layout(t, topic, tid_a, tid_b)

        def offsets() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for isolation in (READ_UNCOMMITTED, READ_COMMITTED):
                for partition in (0, 1):
                    for ts, what in ((-1, "latest"), (-2, "earliest")):
                        key = f"isolation {isolation}, partition {partition}, {what}"
                        out[key] = list_offset(t, topic, partition, ts, isolation)
                out[f"isolation {isolation}, v2 latest"] = list_offset(
                    t, topic, 0, -1, isolation, version=2
                )
            return out

        out = {
            "offsets, open": offsets(),
            "producers, open": describe_producers(t, topic, [0, 1, 7], names),
        }
        a.end(True)
        a.wait()
        b.end(False)
        b.wait()
        out["offsets, done"] = offsets()
        out["producers, done"] = describe_producers(t, topic, [0, 1], names)
        return out

    answer = targets.compare(scenario, "ListOffsets by isolation level, DescribeProducers")
    assert answer["offsets, open"]["isolation 1, partition 0, latest"] == [NONE, 7]
    assert answer["offsets, open"]["isolation 0, partition 0, latest"] == [NONE, 9]


# --------------------------------------------------------------------------- timeouts


@pytest.fixture
def quick_abort_targets(reference_kafka: ReferenceKafka, broker_factory: Any) -> Targets:
    """Kafka of the session (its abort check runs every second, conftest) and ours told the
    same."""
    ours: BrokerProcess = broker_factory(
        {"transaction.abort.timed.out.transaction.cleanup.interval.ms": TXN_ABORT_CHECK_INTERVAL_MS}
    )
    return Targets(
        kafka=Target("kafka", reference_kafka.bootstrap), ours=Target("ours", ours.bootstrap)
    )


def test_transaction_timeout(quick_abort_targets: Targets) -> None:
    topic = unique("txn-timeout")
    tid = unique("txn-timeout")
    timeout_ms = 1_500

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        txn = Txn(t, tid, timeout_ms=timeout_ms)
        names = {txn.producer_id: "<pid>"}
        txn.add({topic: [0]})
        out: dict[str, Any] = {
            "produce": produce_txn(t, topic, 0, txn_batch(txn, 0, 2, "t"), tid),
            "describe": txn.describe(),
        }
        txn.wait(*COMPLETE)  # the coordinator's abort: well within wait_until's bound
        out["describe after the timeout"] = txn.describe()
        out["fetch"] = fetch_view(t, topic, 0, 0, names)
        out["produce with the old epoch"] = produce_txn(t, topic, 0, txn_batch(txn, 2, 1, "u"), tid)
        out["AddPartitions with the old epoch"] = txn.add({topic: [0]})
        out["EndTxn commit with the old epoch"] = txn.end(True)
        out["EndTxn abort with the old epoch"] = txn.end(False)
        again = Txn(t, tid, timeout_ms=timeout_ms)
        out["re-init epoch"] = again.epoch
        out["re-init same producer id"] = again.producer_id == txn.producer_id
        return out

    answer = quick_abort_targets.compare(scenario, "a transaction past its timeout")
    assert answer["describe after the timeout"]["transaction_state"] == "CompleteAbort"
    assert answer["describe after the timeout"]["producer_epoch"] == 1
