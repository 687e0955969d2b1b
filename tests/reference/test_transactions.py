"""Transactions, raw, against Kafka and us: the coordinator's APIs and their error paths.

FindCoordinator (key type 1), InitProducerId, AddPartitionsToTxn (v0-3 as producers send
it, v4-5 as brokers verify with it), AddOffsetsToTxn, TxnOffsetCommit with OffsetFetch
(require_stable), EndTxn, DescribeTransactions and ListTransactions, through our generated
codec (`differential.call`). Producer ids differ between brokers, so answers name them by
the scenario's own labels (`mask_producer_ids`); epochs, states, partitions and error codes
are compared as they are. Records and read_committed fetches: test_transactions_data.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from metamorphostreams.protocol._generated.add_offsets_to_txn import AddOffsetsToTxnRequest
from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
)
from metamorphostreams.protocol._generated.end_txn import EndTxnRequest
from metamorphostreams.protocol._generated.list_transactions import ListTransactionsRequest
from metamorphostreams.protocol._generated.offset_fetch import OffsetFetchRequest
from metamorphostreams.protocol._generated.txn_offset_commit import TxnOffsetCommitRequest
from metamorphostreams.protocol.errors import ErrorCode

from .differential import (
    CONCURRENT_TRANSACTIONS,
    COORDINATOR_NOT_AVAILABLE,
    INVALID_PRODUCER_EPOCH,
    INVALID_PRODUCER_ID_MAPPING,
    INVALID_REQUEST,
    INVALID_TRANSACTION_TIMEOUT,
    INVALID_TXN_STATE,
    NONE,
    OPERATION_NOT_ATTEMPTED,
    PRODUCER_FENCED,
    TRANSACTIONAL_ID_NOT_FOUND,
    UNKNOWN_TOPIC_OR_PARTITION,
    UNSTABLE_OFFSET_COMMIT,
    VOLATILE,
    Target,
    Targets,
    call,
    create_topic,
    describe_transaction,
    find_transaction_coordinator,
    init_transactional,
    mask_producer_ids,
    plain,
    unique,
    wait_transaction_state,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

Scenario = Callable[[Target], dict[str, Any]]
COMPLETE = ("CompleteCommit", "CompleteAbort")
# Names no test creates (answers carry them, so they must be the same on both brokers).
UNKNOWN_TOPIC = "txn-no-such-topic"
UNKNOWN_ID = "txn-no-such-transactional-id"
# Coordinator addresses are each broker's own; node ids (both 0) are compared.
COORDINATOR_VOLATILE = VOLATILE | {"host"}


class Txn:
    """One transactional producer of a scenario: id, producer id, epoch (raw requests)."""

    def __init__(self, target: Target, transactional_id: str, timeout_ms: int = 60_000) -> None:
        self.target = target
        self.id = transactional_id
        answer = init_transactional(target, transactional_id, timeout_ms=timeout_ms)
        assert answer.error_code == NONE, f"{target}: InitProducerId {transactional_id}: {answer}"
        self.producer_id: int = answer.producer_id
        self.epoch: int = answer.producer_epoch

    def add(
        self,
        partitions: Mapping[str, Sequence[int]],
        *,
        version: int = 3,
        producer_id: int | None = None,
        epoch: int | None = None,
        transactional_id: str | None = None,
    ) -> dict[Any, Any]:
        """AddPartitionsToTxn v0-3: {(topic, partition): error code}."""
        T = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
        request = AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=self.id if transactional_id is None else transactional_id,
            v3_and_below_producer_id=self.producer_id if producer_id is None else producer_id,
            v3_and_below_producer_epoch=self.epoch if epoch is None else epoch,
            v3_and_below_topics=[T(name=t, partitions=list(ps)) for t, ps in partitions.items()],
        )
        response = call(self.target, request, version)
        return {
            f"{topic.name}-{p.partition_index}": p.partition_error_code
            for topic in response.results_by_topic_v3_and_below
            for p in topic.results_by_partition
        }

    def add_offsets(
        self,
        group: str,
        *,
        version: int = 3,
        producer_id: int | None = None,
        epoch: int | None = None,
        transactional_id: str | None = None,
    ) -> int:
        request = AddOffsetsToTxnRequest(
            transactional_id=self.id if transactional_id is None else transactional_id,
            producer_id=self.producer_id if producer_id is None else producer_id,
            producer_epoch=self.epoch if epoch is None else epoch,
            group_id=group,
        )
        return int(call(self.target, request, version).error_code)

    def end(
        self,
        commit: bool,
        *,
        version: int = 3,
        producer_id: int | None = None,
        epoch: int | None = None,
        transactional_id: str | None = None,
    ) -> int:
        request = EndTxnRequest(
            transactional_id=self.id if transactional_id is None else transactional_id,
            producer_id=self.producer_id if producer_id is None else producer_id,
            producer_epoch=self.epoch if epoch is None else epoch,
            committed=commit,
        )
        return int(call(self.target, request, version).error_code)

    def wait(self, *states: str) -> None:
        wait_transaction_state(self.target, self.id, states or COMPLETE)

    def describe(self, names: Mapping[int, str] | None = None) -> dict[str, Any]:
        """DescribeTransactions, its producer id named and its start time checked, not kept."""
        state = plain(describe_transaction(self.target, self.id))
        start = state.pop("transaction_start_time_ms")
        state["started"] = "never" if start == -1 else _recent(start)
        state["topics"] = _sorted_topics(state["topics"])
        return mask_producer_ids(state, names or {self.producer_id: "<pid>"})


def _sorted_topics(topics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DescribeTransactions topics: Kafka lists a transaction's partitions in the order of
    its HashSet (not defined); compared sorted."""
    return sorted(
        ({**t, "partitions": sorted(t["partitions"])} for t in topics), key=lambda t: t["topic"]
    )


def _sorted_results(answer: dict[str, Any]) -> dict[str, Any]:
    """AddPartitionsToTxn v4+ results, in a defined order (Kafka's follows its hash maps)."""
    for txn in answer["results_by_transaction"]:
        for topic in txn["topic_results"]:
            topic["results_by_partition"].sort(key=lambda p: p["partition_index"])
        txn["topic_results"].sort(key=lambda t: t["name"])
    answer["results_by_transaction"].sort(key=lambda t: t["transactional_id"])
    return answer


def _recent(timestamp_ms: int) -> str:
    age = time.time() * 1000 - timestamp_ms
    return "now" if -5_000 < age < 120_000 else f"not now ({timestamp_ms})"


# --------------------------------------------------------------------------- FindCoordinator


def test_find_transaction_coordinator(targets: Targets) -> None:
    tid, other = unique("txn-find"), unique("txn-find")

    def scenario(t: Target) -> dict[str, Any]:
        from metamorphostreams.protocol._generated.find_coordinator import (
            FindCoordinatorRequest,
        )

        out: dict[str, Any] = {
            f"v{v}": plain(find_transaction_coordinator(t, tid, version=v)) for v in (1, 2, 3)
        }
        batched = FindCoordinatorRequest(key_type=1, coordinator_keys=[tid, other])
        out["v4 two keys"] = plain(call(t, batched, 4))
        out["v3 empty id"] = plain(call(t, FindCoordinatorRequest(key="", key_type=1), 3))
        return out

    answer = targets.compare(
        scenario, "FindCoordinator for a transactional id", drop=COORDINATOR_VOLATILE
    )
    assert answer["v3"]["error_code"] == NONE
    assert answer["v3"]["node_id"] == 0


# --------------------------------------------------------------------------- InitProducerId


def test_init_producer_id_transactional(targets: Targets) -> None:
    tid = unique("txn-init")

    def scenario(t: Target) -> dict[str, Any]:
        first = init_transactional(t, tid)
        pid, epoch = first.producer_id, first.producer_epoch
        names = {pid: "<pid>"}

        def init(**kw: Any) -> Any:
            return mask_producer_ids(plain(init_transactional(t, tid, **kw)), names)

        out: dict[str, Any] = {"first": mask_producer_ids(plain(first), names)}
        out["again (bumps the epoch)"] = init()
        out["KIP-360, current id and epoch"] = init(producer_id=pid, producer_epoch=epoch + 1)
        out["KIP-360, retry of that bump"] = init(producer_id=pid, producer_epoch=epoch + 1)
        out["KIP-360, an old epoch"] = init(producer_id=pid, producer_epoch=epoch)
        out["KIP-360, another producer id"] = init(producer_id=pid + 7, producer_epoch=epoch + 2)
        out["KIP-360, another producer id, v3"] = init(
            producer_id=pid + 7, producer_epoch=epoch + 2, version=3
        )
        out["id without epoch"] = init(producer_id=pid, producer_epoch=-1)
        for timeout in (0, -1, 900_001):
            out[f"timeout {timeout}"] = init(timeout_ms=timeout)
        out["timeout at the maximum"] = init(timeout_ms=900_000)
        for version in (0, 1, 2, 3, 4, 5):
            out[f"v{version}"] = init(version=version)
        out["empty id"] = plain(init_transactional(t, ""))
        out["describe"] = mask_producer_ids(plain(describe_transaction(t, tid)), names)
        out["describe"].pop("transaction_start_time_ms")
        return out

    answer = targets.compare(scenario, "InitProducerId with a transactional id")
    assert answer["first"]["producer_epoch"] == 0
    assert answer["again (bumps the epoch)"]["producer_epoch"] == 1
    assert answer["KIP-360, another producer id"]["error_code"] == PRODUCER_FENCED
    assert answer["KIP-360, another producer id, v3"]["error_code"] == INVALID_PRODUCER_EPOCH
    assert answer["timeout 0"]["error_code"] == INVALID_TRANSACTION_TIMEOUT
    assert answer["empty id"]["error_code"] == INVALID_REQUEST


def test_init_producer_id_while_a_transaction_is_ongoing(targets: Targets) -> None:
    topic = unique("txn-reinit")
    tid = unique("txn-reinit")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        txn = Txn(t, tid)
        names = {txn.producer_id: "<pid>"}
        out: dict[str, Any] = {"add": txn.add({topic: [0]})}
        out["describe ongoing"] = txn.describe()
        answers: list[Any] = []
        # CONCURRENT_TRANSACTIONS while the coordinator fences the producer and aborts its
        # transaction; clients retry until the abort is complete.
        for _ in range(200):
            answer = mask_producer_ids(plain(init_transactional(t, tid)), names)
            if not answers or answers[-1] != answer:
                answers.append(answer)
            if answer["error_code"] != CONCURRENT_TRANSACTIONS:
                break
            time.sleep(0.05)
        out["re-init answers"] = answers
        out["describe after"] = txn.describe()
        out["EndTxn with the fenced epoch"] = txn.end(True)
        out["AddPartitions with the fenced epoch"] = txn.add({topic: [0]})
        return out

    answer = targets.compare(scenario, "InitProducerId while a transaction is ongoing")
    answers = answer["re-init answers"]
    assert answers[0]["error_code"] == CONCURRENT_TRANSACTIONS
    assert answers[-1]["error_code"] == NONE and answers[-1]["producer_epoch"] == 2


# --------------------------------------------------------------------------- AddPartitionsToTxn


def _add_partitions_case(version: int) -> Scenario:
    topic = unique(f"txn-add-v{version}")
    tid = unique("txn-add")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        txn = Txn(t, tid)
        add = txn.add
        out: dict[str, Any] = {
            "unknown topic": add({UNKNOWN_TOPIC: [0]}, version=version),
            "unknown partition and a known one": add({topic: [0, 5]}, version=version),
            "internal topic": add({"__consumer_offsets": [0]}, version=version),
            "describe (nothing added)": txn.describe(),
            "partition 0": add({topic: [0]}, version=version),
            "partition 0 again": add({topic: [0]}, version=version),
            "partition 0 and 1": add({topic: [0, 1]}, version=version),
            "old epoch": add({topic: [1]}, epoch=txn.epoch - 1, version=version),
            "newer epoch": add({topic: [1]}, epoch=txn.epoch + 1, version=version),
            "another producer id": add(
                {topic: [1]}, producer_id=txn.producer_id + 9, version=version
            ),
            "unknown transactional id": add(
                {topic: [1]}, transactional_id=UNKNOWN_ID, version=version
            ),
            "empty transactional id": add({topic: [1]}, transactional_id="", version=version),
            "describe": txn.describe(),
        }
        return out

    return scenario


def test_add_partitions_to_txn(targets: Targets) -> None:
    cases = {f"v{v}": _add_partitions_case(v) for v in (0, 1, 2, 3)}
    answers = targets.compare_each(cases, "AddPartitionsToTxn v0-3")
    for answer in answers.values():
        (added,) = answer["partition 0"].values()
        assert added == NONE
        assert sorted(answer["unknown partition and a known one"].values()) == [
            UNKNOWN_TOPIC_OR_PARTITION,
            OPERATION_NOT_ATTEMPTED,
        ]
        assert list(answer["unknown transactional id"].values()) == [INVALID_PRODUCER_ID_MAPPING]


def _verify_only_case(version: int) -> Scenario:
    topic = unique(f"txn-verify-v{version}")
    tid, other = unique("txn-verify"), unique("txn-verify")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 3)
        txn, txn2 = Txn(t, tid), Txn(t, other)
        txn.add({topic: [0]})
        names = {txn.producer_id: "<pid>", txn2.producer_id: "<pid2>"}
        R = AddPartitionsToTxnRequest
        one = R.AddPartitionsToTxnTransaction

        def batch(*transactions: Any) -> Any:
            response = call(t, R(transactions=list(transactions)), version)
            return mask_producer_ids(_sorted_results(plain(response)), names)

        def entry(x: Txn, parts: Sequence[int], verify: bool, **kw: Any) -> Any:
            fields: dict[str, Any] = {
                "transactional_id": x.id,
                "producer_id": x.producer_id,
                "producer_epoch": x.epoch,
                "verify_only": verify,
                "topics": [R.AddPartitionsToTxnTopic(name=topic, partitions=list(parts))],
            }
            fields.update(kw)
            return one(**fields)

        out: dict[str, Any] = {
            "verify added and not added": batch(entry(txn, [0, 1], True)),
            "verify, old epoch": batch(entry(txn, [0], True, producer_epoch=txn.epoch - 1)),
            "verify, another producer id": batch(
                entry(txn, [0], True, producer_id=txn.producer_id + 5)
            ),
            "verify, an id without a transaction": batch(entry(txn2, [0], True)),
            "verify, unknown id": batch(entry(txn, [0], True, transactional_id=UNKNOWN_ID)),
            "verify, unknown partition": batch(entry(txn, [9], True)),
            "add (not verify) two transactions": batch(
                entry(txn, [2], False), entry(txn2, [1], False)
            ),
            "describe": txn.describe(names),
            "describe other": Txn.describe(txn2, names),
        }
        return out

    return scenario


def test_add_partitions_to_txn_verify_only(targets: Targets) -> None:
    """The batched form brokers send to the coordinator (KIP-890 part 1 verification)."""
    cases = {f"v{v}": _verify_only_case(v) for v in (4, 5)}
    targets.compare_each(cases, "AddPartitionsToTxn v4-5 (broker-to-coordinator)")


# --------------------------------------------------------------------------- AddOffsetsToTxn


def test_add_offsets_to_txn(targets: Targets) -> None:
    tid = unique("txn-offsets")
    group = unique("txn-group")

    def scenario(t: Target) -> dict[str, Any]:
        txn = Txn(t, tid)
        out: dict[str, Any] = {}
        for version in (0, 1, 2, 3, 4):
            out[f"old epoch v{version}"] = txn.add_offsets(
                group, epoch=txn.epoch - 1 if txn.epoch else txn.epoch + 1, version=version
            )
        out["another producer id"] = txn.add_offsets(group, producer_id=txn.producer_id + 3)
        out["unknown transactional id"] = txn.add_offsets(group, transactional_id=UNKNOWN_ID)
        out["empty transactional id"] = txn.add_offsets(group, transactional_id="")
        out["describe before"] = txn.describe()
        out["add"] = txn.add_offsets(group)
        out["add again"] = txn.add_offsets(group)
        out["add another group"] = txn.add_offsets(group + "-2")
        described = txn.describe()
        # Which __consumer_offsets partition a group maps to depends on the partition count
        # (Kafka's test node has 3, ours 50 by default): compare the topic names only.
        out["describe topics"] = sorted(d["topic"] for d in described.pop("topics"))
        out["describe"] = described
        out["commit"] = txn.end(True)
        txn.wait()
        out["describe after"] = txn.describe()
        return out

    answer = targets.compare(scenario, "AddOffsetsToTxn")
    assert answer["add"] == NONE
    assert answer["old epoch v1"] == INVALID_PRODUCER_EPOCH
    assert answer["old epoch v2"] == PRODUCER_FENCED


# --------------------------------------------------------------------------- TxnOffsetCommit


def find_group_coordinator(t: Target, group: str) -> None:
    """FindCoordinator for a group, as clients do before committing (Kafka creates
    `__consumer_offsets` then, and answers COORDINATOR_NOT_AVAILABLE until it is ready)."""
    from metamorphostreams.protocol._generated.find_coordinator import FindCoordinatorRequest

    request = FindCoordinatorRequest(key=group, key_type=0)
    wait_until(lambda: call(t, request, 3).error_code == NONE, f"{t}: a coordinator for {group}")


def _offset_fetch(t: Target, group: str, topic: str, *, stable: bool, version: int) -> Any:
    if version >= 8:
        G = OffsetFetchRequest.OffsetFetchRequestGroup
        request = OffsetFetchRequest(
            groups=[
                G(
                    group_id=group,
                    topics=[
                        OffsetFetchRequest.OffsetFetchRequestTopics(
                            name=topic, partition_indexes=[0, 1]
                        )
                    ],
                )
            ],
            require_stable=stable,
        )
    else:
        request = OffsetFetchRequest(
            group_id=group,
            topics=[
                OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=[0, 1])
            ],
            require_stable=stable,
        )
    return plain(call(t, request, version))


def _txn_offset_commit(
    txn: Txn, group: str, topic: str, offsets: Mapping[int, int], *, version: int = 3, **kw: Any
) -> Any:
    R = TxnOffsetCommitRequest
    fields: dict[str, Any] = {
        "transactional_id": txn.id,
        "group_id": group,
        "producer_id": txn.producer_id,
        "producer_epoch": txn.epoch,
        "generation_id": -1,
        "member_id": "",
        "topics": [
            R.TxnOffsetCommitRequestTopic(
                name=topic,
                partitions=[
                    R.TxnOffsetCommitRequestPartition(
                        partition_index=p, committed_offset=o, committed_metadata="m"
                    )
                    for p, o in offsets.items()
                ],
            )
        ],
    }
    fields.update(kw)
    return plain(call(txn.target, R(**fields), version))


# clients retry these; Kafka answers them while its group coordinator loads a partition
_COORDINATOR_RETRIED = frozenset(
    {
        COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.NOT_COORDINATOR,
    }
)


def _committed(
    txn: Txn, group: str, topic: str, offsets: Mapping[int, int], *, version: int = 3, **kw: Any
) -> Any:
    """TxnOffsetCommit retried while Kafka answers a coordinator error clients retry
    (COORDINATOR_NOT_AVAILABLE when its verification of the offsets partition is retriable,
    NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS while it loads the group's partition)."""
    answer = _txn_offset_commit(txn, group, topic, offsets, version=version, **kw)
    deadline = time.monotonic() + 10
    while (
        any(
            p["error_code"] in _COORDINATOR_RETRIED
            for tp in answer["topics"]
            for p in tp["partitions"]
        )
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        answer = _txn_offset_commit(txn, group, topic, offsets, version=version, **kw)
    return answer


def _txn_offset_commit_case(commit: bool) -> Scenario:
    topic = unique("txn-oc")
    tid = unique("txn-oc")
    group = unique("txn-oc-group")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        find_group_coordinator(t, group)
        txn = Txn(t, tid)
        out: dict[str, Any] = {"AddOffsetsToTxn": txn.add_offsets(group)}
        for version in (0, 2, 3):
            out[f"commit v{version}"] = _committed(
                txn, group, topic, {0: 5 + version, 1: 7}, version=version
            )
        for version in (7, 8):
            out[f"pending, stable, v{version}"] = _offset_fetch(
                t, group, topic, stable=True, version=version
            )
            out[f"pending, not stable, v{version}"] = _offset_fetch(
                t, group, topic, stable=False, version=version
            )
        out["EndTxn"] = txn.end(commit)
        txn.wait()
        for version in (7, 8):
            out[f"after, stable, v{version}"] = _offset_fetch(
                t, group, topic, stable=True, version=version
            )
        return out

    return scenario


def test_txn_offset_commit_and_require_stable(targets: Targets) -> None:
    cases = {"commit": _txn_offset_commit_case(True), "abort": _txn_offset_commit_case(False)}
    answers = targets.compare_each(cases, "TxnOffsetCommit, EndTxn, OffsetFetch(require_stable)")
    for answer in answers.values():
        (pending,) = answer["pending, stable, v7"]["topics"]
        assert {p["error_code"] for p in pending["partitions"]} == {UNSTABLE_OFFSET_COMMIT}


def test_txn_offset_commit_outside_the_transaction(targets: Targets) -> None:
    topic = unique("txn-oc-checks")
    tid = unique("txn-oc-checks")
    group = unique("txn-oc-checks")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        find_group_coordinator(t, group)
        txn = Txn(t, tid)
        return {
            "before AddOffsetsToTxn": _committed(txn, group, topic, {0: 3}),
            "AddOffsetsToTxn": txn.add_offsets(group),
            "a newer epoch": _committed(txn, group, topic, {0: 4}, producer_epoch=txn.epoch + 1),
            "another producer id": _committed(
                txn, group, topic, {0: 4}, producer_id=txn.producer_id + 1
            ),
            "commit": _committed(txn, group, topic, {0: 5}),
            "EndTxn": txn.end(True),
        }

    targets.compare(scenario, "TxnOffsetCommit outside the producer's transaction")


# --------------------------------------------------------------------------- EndTxn


def _end_txn_case(version: int) -> Scenario:
    topic = unique(f"txn-end-v{version}")
    tid = unique("txn-end")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        txn = Txn(t, tid)
        end = txn.end
        out: dict[str, Any] = {
            "commit with nothing added (Empty)": end(True, version=version),
            "abort with nothing added (Empty)": end(False, version=version),
            "add": txn.add({topic: [0]}),
            "old epoch": end(
                True, epoch=txn.epoch - 1 if txn.epoch else txn.epoch + 1, version=version
            ),
            "newer epoch": end(True, epoch=txn.epoch + 1, version=version),
            "another producer id": end(True, producer_id=txn.producer_id + 11, version=version),
            "unknown transactional id": end(True, transactional_id=UNKNOWN_ID, version=version),
            "empty transactional id": end(True, transactional_id="", version=version),
            "commit": end(True, version=version),
        }
        txn.wait()
        out["commit again (a retry)"] = end(True, version=version)
        out["abort after the commit"] = end(False, version=version)
        out["describe"] = txn.describe()
        out["add again"] = txn.add({topic: [0]})
        out["abort"] = end(False, version=version)
        txn.wait()
        out["abort again (a retry)"] = end(False, version=version)
        out["commit after the abort"] = end(True, version=version)
        out["describe after abort"] = txn.describe()
        return out

    return scenario


def test_end_txn(targets: Targets) -> None:
    answers = targets.compare_each({f"v{v}": _end_txn_case(v) for v in range(5)}, "EndTxn v0-4")
    for answer in answers.values():
        assert answer["commit"] == NONE
        assert answer["commit with nothing added (Empty)"] == INVALID_TXN_STATE
        assert answer["another producer id"] == INVALID_PRODUCER_ID_MAPPING
    assert answers["v1"]["old epoch"] == INVALID_PRODUCER_EPOCH
    assert answers["v2"]["old epoch"] == PRODUCER_FENCED


# --------------------------------------------------------------------------- admin


def test_describe_transactions(targets: Targets) -> None:
    topic = unique("txn-describe")
    tid = unique("txn-describe")

    def scenario(t: Target) -> dict[str, Any]:
        from metamorphostreams.protocol._generated.describe_transactions import (
            DescribeTransactionsRequest,
        )

        create_topic(t, topic, 3)
        txn = Txn(t, tid, timeout_ms=45_000)
        out: dict[str, Any] = {"Empty": txn.describe()}
        txn.add({topic: [2, 0]})
        txn.add({topic: [1]})
        out["Ongoing"] = txn.describe()
        txn.end(True)
        txn.wait()
        out["CompleteCommit"] = txn.describe()
        txn.add({topic: [0]})
        txn.end(False)
        txn.wait()
        out["CompleteAbort"] = txn.describe()
        many = DescribeTransactionsRequest(transactional_ids=[tid, UNKNOWN_ID, ""])
        response = plain(call(t, many, 0))
        known, *unknown = response["transaction_states"]
        known.pop("transaction_start_time_ms")
        known["topics"] = _sorted_topics(known["topics"])
        # The unknown ids' entries carry the schema's defaults (producer id 0 and so on),
        # compared as they are.
        out["three ids"] = [mask_producer_ids(known, {txn.producer_id: "<pid>"}), *unknown]
        return out

    answer = targets.compare(scenario, "DescribeTransactions through a transaction's life")
    assert answer["Ongoing"]["transaction_state"] == "Ongoing"
    assert answer["three ids"][1]["error_code"] == TRANSACTIONAL_ID_NOT_FOUND


def test_list_transactions(targets: Targets) -> None:
    topic = unique("txn-list")
    prefix = unique("txn-list")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        ongoing, done, empty = (Txn(t, f"{prefix}-{n}") for n in ("a", "b", "c"))
        ongoing.add({topic: [0]})
        done.add({topic: [0]})
        done.end(True)
        done.wait()
        names = {ongoing.producer_id: "<a>", done.producer_id: "<b>", empty.producer_id: "<c>"}
        pids = [ongoing.producer_id, done.producer_id, empty.producer_id]
        mine = {f"{prefix}-{n}" for n in ("a", "b", "c")}

        def listed(version: int = 1, **filters: Any) -> Any:
            filters.setdefault("producer_id_filters", pids)
            request = ListTransactionsRequest(**filters)
            answer = plain(call(t, request, version))
            # Kafka's answer follows its state partitions' order: compared sorted.
            answer["transaction_states"] = sorted(
                (s for s in answer["transaction_states"] if s["transactional_id"] in mine),
                key=lambda s: s["transactional_id"],
            )
            return mask_producer_ids(answer, names)

        return {
            "v0 by producer ids": listed(0),
            "by producer ids": listed(),
            "one producer id": listed(producer_id_filters=[done.producer_id]),
            "Ongoing": listed(state_filters=["Ongoing"]),
            "Ongoing and CompleteCommit": listed(state_filters=["Ongoing", "CompleteCommit"]),
            "an unknown state": listed(state_filters=["Ongoing", "Sleeping"]),
            "running for over an hour": listed(duration_filter=3_600_000),
            "running for over 0 ms": listed(duration_filter=0),
            "v2 pattern": listed(
                2, producer_id_filters=[], transactional_id_pattern=f"{prefix}-[ab]"
            ),
            "v2 bad pattern": listed(2, producer_id_filters=[], transactional_id_pattern="(("),
            "v2 empty pattern": listed(2, transactional_id_pattern=""),
        }

    targets.compare(scenario, "ListTransactions with filters")
