"""Transaction version 2 (KIP-890 part 2), raw, against Kafka and us.

Kafka 4.3 finalizes ``transaction.version`` 2, and so do we: a client that sends EndTxn v5 gets
its epoch bumped on every commit and abort (markers carry the bumped epoch), Produce v12+ adds
a partition to the transaction with its first transactional batch, and TxnOffsetCommit v5
adds the group's offsets partition. Produce v13 names topics by id. Epoch exhaustion needs
32766 transactions and is covered by tests/coordinator/transaction/test_tv2.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from metamorphostreams.protocol._generated.end_txn import EndTxnRequest
from metamorphostreams.protocol._generated.metadata import MetadataRequest
from metamorphostreams.protocol._generated.produce import ProduceRequest

from .differential import (
    CONCURRENT_TRANSACTIONS,
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    NONE,
    Target,
    Targets,
    call,
    create_topic,
    plain,
    unique,
)
from .test_transactions import Txn, _committed, _offset_fetch, find_group_coordinator
from .test_transactions_data import (
    READ_COMMITTED,
    describe_producers,
    fetch_view,
    produce_txn,
    txn_batch,
)

pytestmark = pytest.mark.timeout(120)

UNKNOWN_TOPIC_ID = 100


def end_v5(txn: Txn, commit: bool, epoch: int | None = None) -> dict[str, Any]:
    """EndTxn v5: its error and the producer id (named) and epoch to go on with."""
    request = EndTxnRequest(
        transactional_id=txn.id,
        producer_id=txn.producer_id,
        producer_epoch=txn.epoch if epoch is None else epoch,
        committed=commit,
    )
    answer = call(txn.target, request, 5)
    named = {txn.producer_id: "<pid>", -1: -1}
    return {
        "error_code": answer.error_code,
        "producer_id": named.get(answer.producer_id, f"other {answer.producer_id}"),
        "producer_epoch": answer.producer_epoch,
    }


def end_and_wait(txn: Txn, commit: bool) -> dict[str, Any]:
    """EndTxn v5 until the transaction is complete; the client goes on at the new epoch."""
    answer = end_v5(txn, commit)
    assert answer["error_code"] == NONE, f"{txn.target}: EndTxn v5: {answer}"
    txn.wait()
    txn.epoch = answer["producer_epoch"]
    return answer


def test_end_txn_v5_bumps_the_epoch(targets: Targets) -> None:
    topic = unique("tv2-end")
    tid = unique("tv2-end")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        txn = Txn(t, tid)
        epoch0 = txn.epoch

        def send(partition: int, seq: int, tag: str, epoch: int | None = None) -> Any:
            batch = txn_batch(txn, seq, 1, tag, epoch=epoch)
            return produce_txn(t, topic, partition, batch, tid, version=12)

        out: dict[str, Any] = {
            "Produce v12, partition not added": send(0, 0, "a"),
            "Produce v12, next batch": send(0, 1, "b"),
            "describe": txn.describe(),
            "commit": end_and_wait(txn, True),
        }
        out["describe after commit"] = txn.describe()
        out["retry of the commit"] = end_v5(txn, True, epoch=epoch0)
        out["retry as an abort"] = end_v5(txn, False, epoch=epoch0)
        out["commit without a transaction"] = end_v5(txn, True)
        out["an epoch from the future"] = end_v5(txn, True, epoch=txn.epoch + 3)
        out["abort without partitions"] = end_and_wait(txn, False)
        out["Produce v12, the old epoch"] = send(1, 0, "c", epoch=txn.epoch - 1)
        out["Produce v12, the new epoch"] = send(1, 0, "d")
        out["Produce v11 to a partition not added"] = produce_txn(
            t, topic, 0, txn_batch(txn, 0, 1, "e"), tid, version=11
        )
        out["abort"] = end_and_wait(txn, False)
        out["describe after abort"] = txn.describe()
        names = {txn.producer_id: "<pid>"}
        for p in (0, 1):
            out[f"read_committed {p}"] = fetch_view(t, topic, p, 0, names, isolation=READ_COMMITTED)
        out["producers"] = describe_producers(t, topic, [0, 1], names)
        return out

    answer = targets.compare(scenario, "EndTxn v5 and Produce v12 (transaction version 2)")
    assert answer["commit"]["producer_epoch"] == 1
    assert answer["retry of the commit"]["error_code"] == NONE
    assert answer["retry as an abort"]["error_code"] == INVALID_TXN_STATE
    assert answer["Produce v12, the old epoch"]["error_code"] == INVALID_PRODUCER_EPOCH
    assert answer["abort"]["producer_epoch"] == 3


def test_end_txn_v5_retry_while_markers_go_out(targets: Targets) -> None:
    """A retry carrying the pre-bump epoch, before the markers are in: CONCURRENT_TRANSACTIONS
    (or, once they are, the bumped epoch again). Which one depends on timing, so both are
    accepted; the final state is compared."""
    topic = unique("tv2-retry")
    tid = unique("tv2-retry")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        txn = Txn(t, tid)
        produce_txn(t, topic, 0, txn_batch(txn, 0, 1, "a"), tid, version=12)
        first = end_v5(txn, True)
        retry = end_v5(txn, True)
        assert retry["error_code"] in (CONCURRENT_TRANSACTIONS, NONE), retry
        if retry["error_code"] == NONE:
            assert retry == first
        txn.wait()
        return {"commit": first, "retry after completion": end_v5(txn, True)}

    answer = targets.compare(scenario, "EndTxn v5 retried")
    assert answer["retry after completion"] == answer["commit"]


def test_txn_offset_commit_v5_adds_the_offsets_partition(targets: Targets) -> None:
    topic = unique("tv2-oc")
    tid = unique("tv2-oc")
    group = unique("tv2-oc-group")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        find_group_coordinator(t, group)
        txn = Txn(t, tid)
        out: dict[str, Any] = {
            "v4 without AddOffsetsToTxn": _committed(txn, group, topic, {0: 3}, version=4),
            "v5 without AddOffsetsToTxn": _committed(txn, group, topic, {0: 5, 1: 6}, version=5),
        }
        described = txn.describe()
        # the group's __consumer_offsets partition depends on the partition count
        out["describe topics"] = sorted(d["topic"] for d in described.pop("topics"))
        out["describe"] = described
        out["pending"] = _offset_fetch(t, group, topic, stable=True, version=8)
        out["v5 with an old epoch"] = _committed(
            txn, group, topic, {0: 9}, version=5, producer_epoch=txn.epoch - 1
        )
        out["commit"] = end_and_wait(txn, True)
        out["committed"] = _offset_fetch(t, group, topic, stable=True, version=8)
        out["v5 with the pre-commit epoch"] = _committed(
            txn, group, topic, {0: 9}, version=5, producer_epoch=txn.epoch - 1
        )
        out["aborted offsets"] = _committed(txn, group, topic, {1: 11}, version=5)
        out["abort"] = end_and_wait(txn, False)
        out["after abort"] = _offset_fetch(t, group, topic, stable=True, version=8)
        return out

    answer = targets.compare(scenario, "TxnOffsetCommit v5 (transaction version 2)")
    assert answer["describe topics"] == ["__consumer_offsets"]


def _topic_id(t: Target, topic: str) -> uuid.UUID:
    request = MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    (answer,) = call(t, request, 12).topics
    topic_id: uuid.UUID = answer.topic_id
    return topic_id


def test_produce_v13_topics_by_id(targets: Targets) -> None:
    topic = unique("tv2-ids")
    tid = unique("tv2-ids")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        topic_id = _topic_id(t, topic)
        txn = Txn(t, tid)
        R = ProduceRequest

        def send(topic_ids: list[uuid.UUID], batch: bytes, transactional_id: str | None) -> Any:
            request = R(
                transactional_id=transactional_id,
                acks=-1,
                timeout_ms=10_000,
                topic_data=[
                    R.TopicProduceData(
                        topic_id=i, partition_data=[R.PartitionProduceData(index=0, records=batch)]
                    )
                    for i in topic_ids
                ],
            )
            answer = plain(call(t, request, 13))
            for topic_answer in answer["responses"]:
                known = topic_answer["topic_id"] == str(topic_id)
                topic_answer["topic_id"] = "<id>" if known else topic_answer["topic_id"]
            return answer

        unknown = uuid.UUID(int=UNKNOWN_TOPIC_ID)
        return {
            "transactional": send([topic_id], txn_batch(txn, 0, 1, "a"), tid),
            "an unknown id and a known one": send(
                [unknown, topic_id], txn_batch(txn, 1, 1, "b"), tid
            ),
            "commit": end_and_wait(txn, True),
            "plain": send([topic_id], txn_batch((-1, -1), -1, 1, "c", transactional=False), None),
        }

    answer = targets.compare(scenario, "Produce v13 (topics by id)")
    (known,) = answer["transactional"]["responses"]
    assert known["partition_responses"][0]["error_code"] == NONE
