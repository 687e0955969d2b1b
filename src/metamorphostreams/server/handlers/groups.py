"""FindCoordinator and the consumer-group APIs, answered by the group coordinator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...protocol._generated import RESPONSE_CLASSES
from ...protocol._generated.describe_groups import DescribeGroupsRequest
from ...protocol._generated.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from ...protocol._generated.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from ...protocol._generated.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from ...protocol._generated.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from ...protocol._generated.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
)
from ...protocol.errors import ErrorCode
from ..dispatch import HandlerFn, RequestContext
from ..group_runtime import OFFSETS_TOPIC
from ..txn_runtime import TRANSACTION_STATE_TOPIC
from .metadata import topic_ids

GROUP_KEY_TYPE = 0
BATCHED_OFFSET_FETCH_VERSION = 8  # OffsetFetch v8+: a list of groups
TRANSACTION_KEY_TYPE = 1
SHARE_KEY_TYPE = 2  # v6 (KIP-932): share groups, which we do not have
BATCHED_VERSION = 4  # FindCoordinator v4+: a list of keys
# Kafka's Errors.message() texts, which v1-3 carry for every answer ("NONE" on success);
# v4+ answers carry "" per key and the text only when the whole request fails.
_NONE_MESSAGE = "NONE"
_INVALID_REQUEST_MESSAGE = (
    "This most likely occurs because of a request being malformed by the client library or "
    "the message was sent to an incompatible broker. See the broker logs for more details."
)


def _coordinator_for(ctx: RequestContext, key_type: int) -> ErrorCode:
    if key_type == GROUP_KEY_TYPE:
        ctx.broker.groups.ensure_offsets_topic()
        return ErrorCode.NONE
    if key_type == TRANSACTION_KEY_TYPE:
        ctx.broker.transactions.ensure_state_topic()
        return ErrorCode.NONE
    # A share key: Kafka with share groups off answers INVALID_REQUEST for the key.
    return ErrorCode.INVALID_REQUEST


def _cluster_coordinator(
    ctx: RequestContext, key_type: int, key: str
) -> tuple[ErrorCode, int, str, int]:
    """In a cluster: the leader of the key's __consumer_offsets / __transaction_state
    partition (COORDINATOR_NOT_AVAILABLE while the topic is created or the leader is down)."""
    error = _coordinator_for(ctx, key_type)
    cluster = ctx.broker.cluster
    if error != ErrorCode.NONE or cluster is None:
        return error, -1, "", -1
    if key_type == GROUP_KEY_TYPE:
        topic, partition = OFFSETS_TOPIC, ctx.broker.groups.coordinator.partition_for(key)
    else:
        topic = TRANSACTION_STATE_TOPIC
        partition = ctx.broker.transactions.coordinator.partition_for(key)
    if topic not in ctx.broker.metadata.topics:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, -1, "", -1
    leader, _epoch = cluster.leader_of(topic, partition)
    endpoint = cluster.endpoint(leader) if leader >= 0 else None
    if endpoint is None:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, -1, "", -1
    return ErrorCode.NONE, leader, endpoint[0], endpoint[1]


def _find_in_cluster(ctx: RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse:
    known_type = req.key_type in (GROUP_KEY_TYPE, TRANSACTION_KEY_TYPE, SHARE_KEY_TYPE)
    if ctx.api_version >= BATCHED_VERSION:
        coordinators = []
        for key in req.coordinator_keys:
            if known_type:
                error, node, host, port = _cluster_coordinator(ctx, req.key_type, key)
            else:
                error, node, host, port = ErrorCode.INVALID_REQUEST, -1, "", -1
            coordinators.append(
                FindCoordinatorResponse.Coordinator(
                    key=key,
                    node_id=node,
                    host=host,
                    port=port,
                    error_code=error,
                    error_message="" if known_type else _INVALID_REQUEST_MESSAGE,
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    if known_type:
        error, node, host, port = _cluster_coordinator(ctx, req.key_type, req.key)
    else:
        error, node, host, port = ErrorCode.INVALID_REQUEST, -1, "", -1
    return FindCoordinatorResponse(
        error_code=error,
        error_message=_NONE_MESSAGE if error == ErrorCode.NONE else _INVALID_REQUEST_MESSAGE,
        node_id=node,
        host=host,
        port=port,
    )


def not_coordinator(ctx: RequestContext, req: Any) -> Any | None:
    """In a cluster, NOT_COORDINATOR for a one-group request this broker does not coordinate
    (it does not lead the group's __consumer_offsets partition); None to go on."""
    cluster = ctx.broker.cluster
    if cluster is None:
        return None
    groups = ctx.broker.groups
    if isinstance(req, OffsetFetchRequest) and ctx.api_version >= BATCHED_OFFSET_FETCH_VERSION:
        ids = [g.group_id for g in req.groups]
    else:
        group_id = getattr(req, "group_id", None)
        if not isinstance(group_id, str):
            return None
        ids = [group_id]
    if all(cluster.leads(OFFSETS_TOPIC, groups.coordinator.partition_for(g)) for g in ids):
        return None
    error = ErrorCode.NOT_COORDINATOR
    response = RESPONSE_CLASSES[ctx.header.request_api_key]()
    if hasattr(response, "error_code"):
        response.error_code = error
    if isinstance(req, OffsetCommitRequest):
        response.topics = [
            CommitTopic(
                name=t.name,
                topic_id=t.topic_id,
                partitions=[
                    CommitPartition(partition_index=p.partition_index, error_code=error)
                    for p in t.partitions
                ],
            )
            for t in req.topics
        ]
    elif isinstance(req, TxnOffsetCommitRequest):
        response.topics = [
            _txn_offset_topic(t.name, [(p.partition_index, error) for p in t.partitions])
            for t in req.topics
        ]
    elif isinstance(req, OffsetFetchRequest) and ctx.api_version >= BATCHED_OFFSET_FETCH_VERSION:
        response.groups = [
            OffsetFetchResponse.OffsetFetchResponseGroup(group_id=g, error_code=error) for g in ids
        ]
    return response


async def handle_find_coordinator(
    ctx: RequestContext, req: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    """Kafka's answers: an unknown key type fails the whole request (INVALID_REQUEST with its
    message on every key); a share key (v6, KIP-932) fails per key, as with share groups off.
    TRANSACTION_ABORTABLE (v5, KIP-890) is never an answer of ours."""
    if ctx.broker.cluster is not None:
        return _find_in_cluster(ctx, req)
    host, port = ctx.broker.advertised()
    me = ctx.broker.broker_id
    known_type = req.key_type in (GROUP_KEY_TYPE, TRANSACTION_KEY_TYPE, SHARE_KEY_TYPE)
    if ctx.api_version >= BATCHED_VERSION:
        coordinators = []
        for key in req.coordinator_keys:
            error = _coordinator_for(ctx, req.key_type) if known_type else ErrorCode.INVALID_REQUEST
            ok = error == ErrorCode.NONE
            coordinators.append(
                FindCoordinatorResponse.Coordinator(
                    key=key,
                    node_id=me if ok else -1,
                    host=host if ok else "",
                    port=port if ok else -1,
                    error_code=error,
                    error_message="" if known_type else _INVALID_REQUEST_MESSAGE,
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    error = _coordinator_for(ctx, req.key_type) if known_type else ErrorCode.INVALID_REQUEST
    ok = error == ErrorCode.NONE
    return FindCoordinatorResponse(
        error_code=error,
        error_message=_NONE_MESSAGE if ok else _INVALID_REQUEST_MESSAGE,
        node_id=me if ok else -1,
        host=host if ok else "",
        port=port if ok else -1,
    )


def _null_protocol_on_error(ctx: RequestContext, req: Any, response: Any) -> Any:
    """JoinGroup v7+ error answers carry a null protocol name, as Kafka's do."""
    if ctx.api_version >= 7 and response.error_code != ErrorCode.NONE:
        if response.protocol_name == "":
            response.protocol_name = None
    return response


# Without an authorizer Kafka grants every group operation: READ, DELETE, DESCRIBE,
# DESCRIBE_CONFIGS, ALTER_CONFIGS (AclOperation codes 3, 6, 8, 10, 11) as a bit set.
GROUP_AUTHORIZED_OPERATIONS = sum(1 << op for op in (3, 6, 8, 10, 11))
AUTHORIZED_OPERATIONS_VERSION = 3  # DescribeGroups v3+ carries authorized operations


def _authorized_operations(ctx: RequestContext, req: Any, response: Any) -> Any:
    """Fill in authorized operations when asked (DescribeGroups v3+, ConsumerGroupDescribe)."""
    wanted = req.include_authorized_operations
    if isinstance(req, DescribeGroupsRequest):
        wanted = wanted and ctx.api_version >= AUTHORIZED_OPERATIONS_VERSION
    if wanted:
        for group in response.groups:
            # Kafka fills them in only for groups described without error (v6: not found).
            if group.error_code == ErrorCode.NONE:
                group.authorized_operations = GROUP_AUTHORIZED_OPERATIONS
    return response


async def handle_offset_delete(
    ctx: RequestContext, req: OffsetDeleteRequest
) -> OffsetDeleteResponse:
    """Partitions that do not exist are answered here, as KafkaApis does; the rest go to the
    coordinator."""
    if ctx.broker.cluster is not None and (refused := not_coordinator(ctx, req)) is not None:
        return refused
    topics = ctx.broker.metadata.topics
    unknown: list[tuple[str, int]] = []
    known: list[OffsetDeleteRequest.OffsetDeleteRequestTopic] = []
    for topic in req.topics:
        info = topics.get(topic.name)
        keep = []
        for p in topic.partitions:
            if info is None or not 0 <= p.partition_index < info.partitions:
                unknown.append((topic.name, p.partition_index))
            else:
                keep.append(p)
        if keep:
            known.append(
                OffsetDeleteRequest.OffsetDeleteRequestTopic(name=topic.name, partitions=keep)
            )
    runtime = ctx.broker.groups
    response: OffsetDeleteResponse = await runtime.call(
        runtime.coordinator.offset_delete,
        OffsetDeleteRequest(group_id=req.group_id, topics=known),
        ctx.api_version,
    )
    if response.error_code != ErrorCode.NONE:
        return response
    by_name = {t.name: t for t in response.topics}
    for name, partition in unknown:
        topic_result = by_name.get(name)
        if topic_result is None:
            topic_result = OffsetDeleteResponse.OffsetDeleteResponseTopic(name=name, partitions=[])
            by_name[name] = topic_result
            response.topics.append(topic_result)
        topic_result.partitions.append(
            OffsetDeleteResponse.OffsetDeleteResponsePartition(
                partition_index=partition, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
        )
    return response


TOPIC_ID_VERSION = 10  # OffsetCommit and OffsetFetch v10+ (KIP-848) name topics by id
CommitTopic = OffsetCommitResponse.OffsetCommitResponseTopic
CommitPartition = OffsetCommitResponse.OffsetCommitResponsePartition


async def handle_offset_commit(
    ctx: RequestContext, req: OffsetCommitRequest
) -> OffsetCommitResponse:
    """KafkaApis' part of OffsetCommit: ids resolved to names (v10+), and partitions of
    unknown ids (UNKNOWN_TOPIC_ID), topics or partitions (UNKNOWN_TOPIC_OR_PARTITION)
    answered here; the rest go to the coordinator, whose answer is merged after these, as
    Kafka's OffsetCommitResponse.Builder merges it."""
    if ctx.broker.cluster is not None and (refused := not_coordinator(ctx, req)) is not None:
        return refused
    version = ctx.api_version
    store = ctx.broker.metadata
    index = topic_ids(store) if version >= TOPIC_ID_VERSION else None
    answered: list[CommitTopic] = []
    by_key: dict[Any, CommitTopic] = {}
    valid: list[OffsetCommitRequest.OffsetCommitRequestTopic] = []
    for topic in req.topics:
        if index is not None:
            info = index.get(topic.topic_id)
            missing = ErrorCode.UNKNOWN_TOPIC_ID if info is None else None
            if info is not None:
                topic.name = info.name
            key: Any = topic.topic_id
        else:
            info = store.topics.get(topic.name)
            missing = None
            key = topic.name
        keep = []
        for p in topic.partitions:
            if info is not None and 0 <= p.partition_index < info.partitions:
                keep.append(p)
                continue
            entry = by_key.get(key)
            if entry is None:
                entry = by_key[key] = CommitTopic(name=topic.name, topic_id=topic.topic_id)
                answered.append(entry)
            error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if missing is None else missing
            entry.partitions.append(
                CommitPartition(partition_index=p.partition_index, error_code=error)
            )
        if keep:
            valid.append(
                OffsetCommitRequest.OffsetCommitRequestTopic(
                    name=topic.name, topic_id=topic.topic_id, partitions=keep
                )
            )
    if not valid:
        return OffsetCommitResponse(topics=answered)
    req.topics = valid
    runtime = ctx.broker.groups
    response: OffsetCommitResponse = await runtime.call(
        runtime.coordinator.offset_commit, req, version
    )
    if answered:
        for topic_result in response.topics:
            key = topic_result.topic_id if index is not None else topic_result.name
            entry = by_key.get(key)
            if entry is None:
                by_key[key] = topic_result
                answered.append(topic_result)
            else:
                entry.partitions.extend(topic_result.partitions)
        response.topics = answered
    return response


async def handle_offset_fetch(ctx: RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse:
    """KafkaApis' part of OffsetFetch v10+: ids resolved to names; topics of unknown ids are
    answered UNKNOWN_TOPIC_ID after the coordinator's answer for their group (not when the
    group itself is in error)."""
    if ctx.broker.cluster is not None and (refused := not_coordinator(ctx, req)) is not None:
        return refused
    version = ctx.api_version
    runtime = ctx.broker.groups
    if version < TOPIC_ID_VERSION:
        response: OffsetFetchResponse = await runtime.call(
            runtime.coordinator.offset_fetch, req, version
        )
        return response
    index = topic_ids(ctx.broker.metadata)
    unknown: list[tuple[str, list[OffsetFetchResponse.OffsetFetchResponseTopics]]] = []
    for group in req.groups:
        failed: list[OffsetFetchResponse.OffsetFetchResponseTopics] = []
        if group.topics is not None:
            keep = []
            for topic in group.topics:
                info = index.get(topic.topic_id)
                if info is None:
                    failed.append(_unknown_topic_id(topic))
                else:
                    topic.name = info.name
                    keep.append(topic)
            group.topics = keep
        unknown.append((group.group_id, failed))
    response = await runtime.call(runtime.coordinator.offset_fetch, req, version)
    for group_result, (group_id, failed) in zip(response.groups, unknown, strict=False):
        if failed and group_result.group_id == group_id and group_result.error_code == 0:
            group_result.topics.extend(failed)
    return response


def _unknown_topic_id(
    topic: OffsetFetchRequest.OffsetFetchRequestTopics,
) -> OffsetFetchResponse.OffsetFetchResponseTopics:
    return OffsetFetchResponse.OffsetFetchResponseTopics(
        topic_id=topic.topic_id,
        partitions=[
            OffsetFetchResponse.OffsetFetchResponsePartitions(
                partition_index=p,
                committed_offset=-1,
                committed_leader_epoch=-1,
                metadata="",
                error_code=ErrorCode.UNKNOWN_TOPIC_ID,
            )
            for p in topic.partition_indexes
        ],
    )


LOAD_IN_PROGRESS_VERSION = 2  # TxnOffsetCommit v2+ clients retry COORDINATOR_LOAD_IN_PROGRESS


def _txn_offset_commit_errors(
    ctx: RequestContext, req: Any, response: TxnOffsetCommitResponse
) -> TxnOffsetCommitResponse:
    """Producers before 2.0 (TxnOffsetCommit v0-1) fail on COORDINATOR_LOAD_IN_PROGRESS
    (KAFKA-7296): KafkaApis answers COORDINATOR_NOT_AVAILABLE to them instead."""
    if ctx.api_version < LOAD_IN_PROGRESS_VERSION:
        for topic in response.topics:
            for p in topic.partitions:
                if p.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    p.error_code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return response


GENERIC_TXN_ERROR_VERSION = 4  # TxnOffsetCommit v4+ clients handle TRANSACTION_ABORTABLE
IMPLICIT_ADD_TXN_OFFSET_VERSION = 5  # KIP-890 part 2: the offsets partition is added for it
# Verification answers a client retries: Kafka's coordinator runtime answers them as
# COORDINATOR_NOT_AVAILABLE.
_RETRIABLE_VERIFICATION_ERRORS = frozenset(
    {
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NETWORK_EXCEPTION,
    }
)


async def handle_txn_offset_commit(
    ctx: RequestContext, req: TxnOffsetCommitRequest
) -> TxnOffsetCommitResponse:
    """As KafkaApis: partitions of unknown topics are answered here; for the others, KIP-890
    part 1 comes first (the group's ``__consumer_offsets`` partition must be part of the
    producer's ongoing transaction, AddOffsetsToTxn), then the group coordinator writes."""
    if ctx.broker.cluster is not None and (refused := not_coordinator(ctx, req)) is not None:
        return refused
    known_topics = ctx.broker.metadata.topics
    unknown: list[tuple[str, int]] = []
    known: list[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic] = []
    for topic in req.topics:
        info = known_topics.get(topic.name)
        keep = []
        for p in topic.partitions:
            if info is not None and 0 <= p.partition_index < info.partitions:
                keep.append(p)
            else:
                unknown.append((topic.name, p.partition_index))
        if keep:
            known.append(
                TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=topic.name, partitions=keep)
            )
    response = TxnOffsetCommitResponse(topics=[])
    if known:
        req.topics = known
        error = await _verify_offsets_partition(ctx, req)
        if error != ErrorCode.NONE:
            response.topics = [
                _txn_offset_topic(t.name, [(p.partition_index, error) for p in t.partitions])
                for t in known
            ]
        else:
            response = await ctx.broker.groups.call(
                ctx.broker.groups.coordinator.txn_offset_commit, req, ctx.api_version
            )
    by_name = {t.name: t for t in response.topics}
    for name, partition in unknown:
        topic_result = by_name.get(name)
        if topic_result is None:
            topic_result = by_name[name] = _txn_offset_topic(name, [])
            response.topics.append(topic_result)
        topic_result.partitions.append(
            TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition(
                partition_index=partition, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
        )
    return _txn_offset_commit_errors(ctx, req, response)


async def _verify_offsets_partition(ctx: RequestContext, req: TxnOffsetCommitRequest) -> ErrorCode:
    """The transaction coordinator's answer, translated as Kafka's group coordinator does.

    From v5 (transaction version 2, KIP-890 part 2) the broker adds the offsets partition to
    the transaction itself, whatever ``transaction.partition.verification.enable`` says."""
    transactions = ctx.broker.transactions
    implicit_add = ctx.api_version >= IMPLICIT_ADD_TXN_OFFSET_VERSION
    if not (implicit_add or transactions.verification_enabled) or not req.group_id:
        return ErrorCode.NONE  # an empty group id is INVALID_GROUP_ID first, as in Kafka
    partition = ctx.broker.groups.coordinator.partition_for(req.group_id)
    error = await transactions.check_partition(
        req.transactional_id,
        req.producer_id,
        req.producer_epoch,
        OFFSETS_TOPIC,
        partition,
        add=implicit_add,
    )
    if error == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if error == ErrorCode.TRANSACTION_ABORTABLE and ctx.api_version < GENERIC_TXN_ERROR_VERSION:
        return ErrorCode.INVALID_TXN_STATE
    if error in _RETRIABLE_VERIFICATION_ERRORS:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    return error


def _txn_offset_topic(
    name: str, errors: list[tuple[int, int]]
) -> TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic:
    return TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic(
        name=name,
        partitions=[
            TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition(
                partition_index=index, error_code=code
            )
            for index, code in errors
        ],
    )


def _group_api(
    method: Callable[[Any], Callable[..., Any]],
    *,
    with_client: bool = False,
    finish: Callable[[RequestContext, Any, Any], Any] | None = None,
) -> HandlerFn:
    """A handler that hands the request to a GroupCoordinator method through the runtime.

    ``with_client``: the method also takes the client id and host (``/ip``, Kafka's form),
    which member ids and descriptions carry.
    """

    async def handle(ctx: RequestContext, req: Any) -> Any:
        if ctx.broker.cluster is not None and (refused := not_coordinator(ctx, req)) is not None:
            return refused
        runtime = ctx.broker.groups
        fn = method(runtime.coordinator)
        if with_client:
            client_id = ctx.header.client_id or ""
            host = "/" + ctx.connection.peer.rpartition(":")[0]
            fn = functools.partial(fn, client_id=client_id, client_host=host)
        response = await runtime.call(fn, req, ctx.api_version)
        return response if finish is None else finish(ctx, req, response)

    return handle


GROUP_HANDLERS: dict[int, HandlerFn] = {
    8: handle_offset_commit,
    9: handle_offset_fetch,
    10: handle_find_coordinator,
    11: _group_api(lambda c: c.join_group, with_client=True, finish=_null_protocol_on_error),
    12: _group_api(lambda c: c.heartbeat),
    13: _group_api(lambda c: c.leave_group),
    14: _group_api(lambda c: c.sync_group),
    15: _group_api(lambda c: c.describe_groups, finish=_authorized_operations),
    16: _group_api(lambda c: c.list_groups),
    28: handle_txn_offset_commit,
    42: _group_api(lambda c: c.delete_groups),
    47: handle_offset_delete,
    68: _group_api(lambda c: c.consumer_group_heartbeat, with_client=True),
    69: _group_api(lambda c: c.consumer_group_describe, finish=_authorized_operations),
}
