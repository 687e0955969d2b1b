"""FindCoordinator and the consumer-group APIs, answered by the group coordinator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...protocol._generated.describe_groups import DescribeGroupsRequest
from ...protocol._generated.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from ...protocol._generated.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from ...protocol.errors import ErrorCode
from ..dispatch import HandlerFn, RequestContext

GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
BATCHED_VERSION = 4  # FindCoordinator v4+: a list of keys


def _coordinator_for(ctx: RequestContext, key: str, key_type: int) -> tuple[ErrorCode, str | None]:
    if key_type == GROUP_KEY_TYPE:
        ctx.broker.groups.ensure_offsets_topic()
        return ErrorCode.NONE, None
    if key_type == TRANSACTION_KEY_TYPE:
        # No transaction coordinator yet; Kafka says the same while __transaction_state is
        # unavailable.
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, "Transactions are not supported yet."
    return ErrorCode.INVALID_REQUEST, f"Unknown coordinator key type {key_type}"


async def handle_find_coordinator(
    ctx: RequestContext, req: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    host, port = ctx.broker.advertised()
    me = ctx.broker.broker_id
    if ctx.api_version >= BATCHED_VERSION:
        coordinators = []
        for key in req.coordinator_keys:
            error, message = _coordinator_for(ctx, key, req.key_type)
            ok = error == ErrorCode.NONE
            coordinators.append(
                FindCoordinatorResponse.Coordinator(
                    key=key,
                    node_id=me if ok else -1,
                    host=host if ok else "",
                    port=port if ok else -1,
                    error_code=error,
                    error_message=message,
                )
            )
        return FindCoordinatorResponse(coordinators=coordinators)
    error, message = _coordinator_for(ctx, req.key, req.key_type)
    ok = error == ErrorCode.NONE
    return FindCoordinatorResponse(
        error_code=error,
        error_message=message,
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
            group.authorized_operations = GROUP_AUTHORIZED_OPERATIONS
    return response


async def handle_offset_delete(
    ctx: RequestContext, req: OffsetDeleteRequest
) -> OffsetDeleteResponse:
    """Partitions that do not exist are answered here, as KafkaApis does; the rest go to the
    coordinator."""
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
    8: _group_api(lambda c: c.offset_commit),
    9: _group_api(lambda c: c.offset_fetch),
    10: handle_find_coordinator,
    11: _group_api(lambda c: c.join_group, with_client=True, finish=_null_protocol_on_error),
    12: _group_api(lambda c: c.heartbeat),
    13: _group_api(lambda c: c.leave_group),
    14: _group_api(lambda c: c.sync_group),
    15: _group_api(lambda c: c.describe_groups, finish=_authorized_operations),
    16: _group_api(lambda c: c.list_groups),
    42: _group_api(lambda c: c.delete_groups),
    47: handle_offset_delete,
    68: _group_api(lambda c: c.consumer_group_heartbeat, with_client=True),
    69: _group_api(lambda c: c.consumer_group_describe, finish=_authorized_operations),
}
