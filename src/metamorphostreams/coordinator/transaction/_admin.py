"""DescribeTransactions and ListTransactions: read-only views of the transaction table."""

from __future__ import annotations

import re
from collections.abc import Mapping

from metamorphostreams.protocol._generated.describe_transactions import (
    DescribeTransactionsRequest,
    DescribeTransactionsResponse,
)
from metamorphostreams.protocol._generated.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)
from metamorphostreams.protocol.errors import ErrorCode

from .state import TransactionMetadata, TransactionState

LIST_DURATION_FILTER_VERSION = 1  # ListTransactions v1: DurationFilter
LIST_PATTERN_FILTER_VERSION = 2  # ListTransactions v2: TransactionalIdPattern (KIP-1152)


def describe(
    txns: Mapping[str, TransactionMetadata], request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    states = []
    for tid in request.transactional_ids or ():
        state = DescribeTransactionsResponse.TransactionState(transactional_id=tid)
        meta = txns.get(tid)
        if not tid:
            state.error_code = ErrorCode.INVALID_REQUEST
        elif meta is None or meta.state is TransactionState.DEAD:
            state.error_code = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        else:
            by_topic: dict[str, list[int]] = {}
            for topic, p in sorted(meta.topic_partitions):
                by_topic.setdefault(topic, []).append(p)
            state.transaction_state = meta.state.kafka_name
            state.transaction_timeout_ms = meta.txn_timeout_ms
            state.transaction_start_time_ms = meta.txn_start_timestamp
            state.producer_id = meta.producer_id
            state.producer_epoch = meta.producer_epoch
            state.topics = [
                DescribeTransactionsResponse.TopicData(topic=t, partitions=ps)
                for t, ps in by_topic.items()
            ]
        states.append(state)
    return DescribeTransactionsResponse(transaction_states=states)


def list_transactions(
    txns: Mapping[str, TransactionMetadata],
    request: ListTransactionsRequest,
    version: int,
    now_ms: int,
) -> ListTransactionsResponse:
    response = ListTransactionsResponse()
    wanted_states: set[TransactionState] = set()
    state_names = list(request.state_filters or ())
    for name in state_names:
        state = TransactionState.from_name(name)
        if state is None:
            response.unknown_state_filters.append(name)
        else:
            wanted_states.add(state)
    producer_ids = set(request.producer_id_filters or ())
    duration = request.duration_filter if version >= LIST_DURATION_FILTER_VERSION else -1
    pattern: re.Pattern[str] | None = None
    if version >= LIST_PATTERN_FILTER_VERSION and request.transactional_id_pattern:
        try:
            pattern = re.compile(request.transactional_id_pattern)
        except re.error:
            response.error_code = ErrorCode.INVALID_REGULAR_EXPRESSION
            response.unknown_state_filters = []
            return response
    for tid in sorted(txns):
        meta = txns[tid]
        if meta.state is TransactionState.DEAD:
            continue  # being expired
        if producer_ids and meta.producer_id not in producer_ids:
            continue
        # An unknown name filters everything out of its own, as Kafka's state filter does.
        if state_names and meta.state not in wanted_states:
            continue
        if duration >= 0 and now_ms - meta.txn_start_timestamp <= duration:
            continue
        if pattern is not None and pattern.fullmatch(tid) is None:
            continue
        response.transaction_states.append(
            ListTransactionsResponse.TransactionState(
                transactional_id=tid,
                producer_id=meta.producer_id,
                transaction_state=meta.state.kafka_name,
            )
        )
    return response
