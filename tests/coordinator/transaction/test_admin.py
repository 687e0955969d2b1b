"""DescribeTransactions and ListTransactions."""

from __future__ import annotations

from typing import Any

from metamorphostreams.coordinator.transaction import TransactionState
from metamorphostreams.protocol._generated.describe_transactions import (
    DescribeTransactionsRequest,
)
from metamorphostreams.protocol._generated.list_transactions import ListTransactionsRequest
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import TIMEOUT, Harness, started


def _describe(h: Harness, *ids: str) -> list:
    req = DescribeTransactionsRequest(transactional_ids=list(ids))
    return h.take(h.coordinator.describe_transactions(h.now, req, 0)).transaction_states


def _list(h: Harness, version: int = 2, **kw: Any) -> tuple[list, list]:
    resp = h.take(h.coordinator.list_transactions(h.now, ListTransactionsRequest(**kw), version))
    assert resp.error_code == 0
    states = [
        (s.transactional_id, s.producer_id, s.transaction_state) for s in resp.transaction_states
    ]
    return states, resp.unknown_state_filters


def test_describe() -> None:
    h = Harness()
    start = h.now
    pid, epoch = started(h, [("b", 2), ("a", 1), ("a", 0)])
    ongoing, missing, empty = _describe(h, "txn", "nope", "")
    assert ongoing.error_code == 0 and ongoing.transaction_state == "Ongoing"
    assert (ongoing.producer_id, ongoing.producer_epoch) == (pid, epoch)
    assert (ongoing.transaction_timeout_ms, ongoing.transaction_start_time_ms) == (TIMEOUT, start)
    assert [(t.topic, t.partitions) for t in ongoing.topics] == [("a", [0, 1]), ("b", [2])]
    assert missing.error_code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    assert empty.error_code == ErrorCode.INVALID_REQUEST
    h.end(pid, epoch)
    assert _describe(h, "txn")[0].transaction_state == "PrepareCommit"


def test_list_filters() -> None:
    h = Harness()
    pid, _ = started(h)  # "txn": Ongoing since now
    h.now += 5_000
    other = h.init("other-1").producer_id  # Empty, start -1
    assert _list(h)[0] == [("other-1", other, "Empty"), ("txn", pid, "Ongoing")]
    assert _list(h, state_filters=["Ongoing", "Bogus"]) == ([("txn", pid, "Ongoing")], ["Bogus"])
    assert _list(h, state_filters=["Bogus"]) == ([], ["Bogus"])
    assert _list(h, producer_id_filters=[other])[0] == [("other-1", other, "Empty")]
    # v1: only transactions running for longer than the duration
    assert _list(h, duration_filter=4_000)[0] == [
        ("other-1", other, "Empty"),
        ("txn", pid, "Ongoing"),
    ]
    assert _list(h, duration_filter=5_000)[0] == [("other-1", other, "Empty")]
    assert len(_list(h, version=0, duration_filter=5_000)[0]) == 2  # not read before v1
    # v2: a regular expression over the whole transactional id
    assert _list(h, transactional_id_pattern="other-.*")[0] == [("other-1", other, "Empty")]
    assert _list(h, transactional_id_pattern="other")[0] == []
    assert len(_list(h, transactional_id_pattern="")[0]) == 2
    resp = h.take(
        h.coordinator.list_transactions(
            h.now, ListTransactionsRequest(transactional_id_pattern="("), 2
        )
    )
    assert resp.error_code == ErrorCode.INVALID_REGULAR_EXPRESSION


def test_state_names_are_kafkas() -> None:
    assert [s.kafka_name for s in TransactionState] == [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ]
