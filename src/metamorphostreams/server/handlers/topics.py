"""CreateTopics, DeleteTopics, CreatePartitions: the topic admin APIs, with Kafka's errors."""

from __future__ import annotations

import uuid

from ...cluster.metadata import topic_name_error
from ...cluster.placement import PlacementError, validate_assignment
from ...protocol._generated.create_partitions import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
)
from ...protocol._generated.create_topics import CreateTopicsRequest, CreateTopicsResponse
from ...protocol._generated.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext
from ..topic_configs import describe_topic_configs, validate_topic_configs

# Kafka's controller refuses more new partitions than this in one request
# (ReplicationControlManager's per-batch cap); creating them is not free here either.
MAX_PARTITIONS = 10_000
Result = CreateTopicsResponse.CreatableTopicResult


def _check_new_topic(
    ctx: RequestContext, topic: CreateTopicsRequest.CreatableTopic
) -> tuple[ErrorCode, str | None, int, dict[str, str]]:
    """(error, message, partitions, normalised configs) for one topic of a CreateTopics."""
    broker = ctx.broker
    name = topic.name
    problem = topic_name_error(name)
    if problem is not None:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, problem, 0, {}
    if name in broker.metadata.topics:
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.", 0, {}
    other = broker.metadata.colliding_topic(name)
    if other is not None:
        return (
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic '{name}' collides with existing topic: {other}",
            0,
            {},
        )
    partitions = topic.num_partitions
    replication = topic.replication_factor
    if topic.assignments:
        if partitions != -1 or replication != -1:
            return (
                ErrorCode.INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. "
                "Both cannot be used at the same time.",
                0,
                {},
            )
        live = [broker.broker_id] if broker.cluster is None else broker.cluster.live_broker_ids()
        sizes = {len(a.broker_ids) for a in topic.assignments}
        if len(sizes) > 1 or 0 in sizes:
            return (
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "All partitions should have the same number of replicas",
                0,
                {},
            )
        for a in topic.assignments:
            if any(b not in live for b in a.broker_ids) or len(set(a.broker_ids)) != len(
                a.broker_ids
            ):
                return (
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Invalid replica assignment for partition {a.partition_index}",
                    0,
                    {},
                )
        indexes = sorted(a.partition_index for a in topic.assignments)
        if indexes != list(range(len(indexes))):
            return (
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence",
                0,
                {},
            )
        partitions = len(indexes)
    else:
        if partitions == -1:
            partitions = int(broker.config["num.partitions"])
        if replication == -1:
            replication = int(broker.config["default.replication.factor"])
        if partitions <= 0:
            return (
                ErrorCode.INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.",
                0,
                {},
            )
        if partitions > MAX_PARTITIONS:
            return (
                ErrorCode.INVALID_PARTITIONS,
                "Excessively large number of partitions per request.",
                0,
                {},
            )
        if replication <= 0:
            return (
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.",
                0,
                {},
            )
        registered = 1 if broker.cluster is None else len(broker.cluster.live_broker_ids())
        if replication > registered:
            return (
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Unable to replicate the partition {replication} time(s): The target "
                f"replication factor of {replication} cannot be reached because only "
                f"{registered} broker(s) are registered.",
                0,
                {},
            )
    configs, config_error = validate_topic_configs(
        {c.name: c.value for c in topic.configs}, broker.config.props
    )
    if config_error is not None:
        return ErrorCode.INVALID_CONFIG, config_error, 0, {}
    return ErrorCode.NONE, None, partitions, configs


def _replication_factor(ctx: RequestContext, topic: CreateTopicsRequest.CreatableTopic) -> int:
    if topic.assignments:
        return len(topic.assignments[0].broker_ids)
    if topic.replication_factor == -1:
        return int(ctx.broker.config["default.replication.factor"])
    return topic.replication_factor


def _result_configs(
    ctx: RequestContext, configs: dict[str, str]
) -> list[CreateTopicsResponse.CreatableTopicConfigs]:
    return [
        CreateTopicsResponse.CreatableTopicConfigs(
            name=name, value=value, read_only=False, config_source=source, is_sensitive=False
        )
        for name, value, source, _type, _syn in describe_topic_configs(
            configs, ctx.broker.config.props
        )
    ]


async def handle_create_topics(
    ctx: RequestContext, req: CreateTopicsRequest
) -> CreateTopicsResponse:
    counts: dict[str, int] = {}
    for topic in req.topics:
        counts[topic.name] = counts.get(topic.name, 0) + 1
    results: list[Result] = []
    reported: set[str] = set()
    for topic in req.topics:
        if counts[topic.name] > 1:
            if topic.name in reported:
                continue  # Kafka answers a duplicated name once
            reported.add(topic.name)
            results.append(
                Result(
                    name=topic.name,
                    error_code=ErrorCode.INVALID_REQUEST,
                    error_message="Duplicate topic name.",
                )
            )
            continue
        error, message, partitions, configs = _check_new_topic(ctx, topic)
        if error != ErrorCode.NONE:
            results.append(Result(name=topic.name, error_code=error, error_message=message))
            continue
        result = Result(
            name=topic.name,
            error_code=ErrorCode.NONE,
            error_message=None,
            num_partitions=partitions,
            replication_factor=_replication_factor(ctx, topic),
            configs=_result_configs(ctx, configs),
        )
        if not req.validate_only and ctx.broker.cluster is not None:
            from ...cluster.zk_store import TopicExistsError  # kazoo: only in a cluster

            try:
                assignment = None
                if topic.assignments:
                    assignment = {a.partition_index: list(a.broker_ids) for a in topic.assignments}
                info = await ctx.broker.cluster.create_topic(
                    topic.name,
                    partitions,
                    configs,
                    assignment,
                    replication_factor=_replication_factor(ctx, topic),
                )
            except TopicExistsError as e:
                result = Result(
                    name=topic.name, error_code=ErrorCode.TOPIC_ALREADY_EXISTS, error_message=str(e)
                )
            except PlacementError as e:
                result = Result(
                    name=topic.name,
                    error_code=ErrorCode.INVALID_REPLICATION_FACTOR,
                    error_message=str(e),
                )
            else:
                result.topic_id = info.topic_id
        elif not req.validate_only:
            info = ctx.broker.replicas.create_topic(topic.name, partitions, configs)
            result.topic_id = info.topic_id
        results.append(result)
    return CreateTopicsResponse(topics=results)


async def handle_delete_topics(
    ctx: RequestContext, req: DeleteTopicsRequest
) -> DeleteTopicsResponse:
    broker = ctx.broker
    Deleted = DeleteTopicsResponse.DeletableTopicResult
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(name, None) for name in req.topic_names]
    results = []
    for name, topic_id in wanted:
        info = broker.metadata.topics.get(name) if name is not None else None
        if name is None and topic_id is not None:
            info = broker.metadata.topic_by_id(topic_id)
            if info is None:
                results.append(
                    Deleted(name=None, topic_id=topic_id, error_code=ErrorCode.UNKNOWN_TOPIC_ID)
                )
                continue
        if info is None:
            results.append(
                Deleted(
                    name=name,
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    error_message="This server does not host this topic-partition.",
                )
            )
            continue
        if not broker.config["delete.topic.enable"]:
            results.append(
                Deleted(
                    name=info.name,
                    topic_id=info.topic_id,
                    error_code=ErrorCode.TOPIC_DELETION_DISABLED,
                    error_message="Topic deletion is disabled.",
                )
            )
            continue
        if broker.cluster is not None:
            error = await broker.cluster.delete_topic(info.name, req.timeout_ms)
            results.append(Deleted(name=info.name, topic_id=info.topic_id, error_code=error))
            continue
        broker.replicas.delete_topic(info.name)
        broker.groups.topics_deleted([info.name])
        results.append(Deleted(name=info.name, topic_id=info.topic_id, error_code=ErrorCode.NONE))
    return DeleteTopicsResponse(responses=results)


async def handle_create_partitions(
    ctx: RequestContext, req: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    broker = ctx.broker
    Res = CreatePartitionsResponse.CreatePartitionsTopicResult
    results = []
    for topic in req.topics:
        info = broker.metadata.topics.get(topic.name)
        if info is None:
            results.append(
                Res(
                    name=topic.name,
                    error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    error_message="This server does not host this topic-partition.",
                )
            )
            continue
        current = info.partitions
        if topic.count < current:
            msg = (
                f"Topic currently has {current} partitions, which is higher than the "
                f"requested {topic.count}."
            )
            results.append(
                Res(name=topic.name, error_code=ErrorCode.INVALID_PARTITIONS, error_message=msg)
            )
            continue
        if topic.count == current:
            msg = f"Topic already has {current} partitions."
            results.append(
                Res(name=topic.name, error_code=ErrorCode.INVALID_PARTITIONS, error_message=msg)
            )
            continue
        if topic.count - current > MAX_PARTITIONS:
            results.append(
                Res(
                    name=topic.name,
                    error_code=ErrorCode.INVALID_PARTITIONS,
                    error_message="Excessively large number of partitions per request.",
                )
            )
            continue
        if broker.cluster is not None:
            results.append(await _create_partitions_in_cluster(ctx, req, topic, current))
            continue
        if topic.assignments is not None:
            added = topic.count - current
            bad = len(topic.assignments) != added or any(
                any(b != broker.broker_id for b in a.broker_ids) for a in topic.assignments
            )
            if bad:
                results.append(
                    Res(
                        name=topic.name,
                        error_code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        error_message=f"Increasing the number of partitions by {added} but "
                        f"{len(topic.assignments)} assignments provided.",
                    )
                )
                continue
        if not req.validate_only:
            broker.replicas.add_partitions(topic.name, topic.count)
        results.append(Res(name=topic.name, error_code=ErrorCode.NONE))
    return CreatePartitionsResponse(results=results)


async def _create_partitions_in_cluster(
    ctx: RequestContext,
    req: CreatePartitionsRequest,
    topic: CreatePartitionsRequest.CreatePartitionsTopic,
    current: int,
) -> CreatePartitionsResponse.CreatePartitionsTopicResult:
    """Kafka's checks of a manual assignment (KRaft's messages), then the placement and
    the new partitions' states through the cluster runtime."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    Res = CreatePartitionsResponse.CreatePartitionsTopicResult
    added = topic.count - current
    assignment = None
    if topic.assignments is not None:
        assignment = [list(a.broker_ids) for a in topic.assignments]
        replication = len(cluster.replicas_of(topic.name, 0))
        message = None
        if len(assignment) != added:
            message = (
                f"Increasing the number of partitions by {added} but "
                f"{len(assignment)} assignments provided."
            )
        elif any(len(replicas) != replication for replicas in assignment):
            size = next(len(r) for r in assignment if len(r) != replication)
            message = (
                f"The manual partition assignment includes a partition with {size} "
                "replica(s), but this is not consistent with previous partitions, which have "
                f"{replication} replica(s)."
            )
        else:
            # Brokers registered, none twice (the partition ids here are the new ones').
            message = validate_assignment(
                dict(enumerate(assignment)), set(cluster.live_broker_ids())
            )
        if message is not None:
            return Res(
                name=topic.name,
                error_code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                error_message=message,
            )
    if req.validate_only:
        return Res(name=topic.name, error_code=ErrorCode.NONE)
    try:
        await cluster.add_partitions(topic.name, topic.count, assignment)
    except PlacementError as e:
        return Res(name=topic.name, error_code=e.error_code, error_message=str(e))
    return Res(name=topic.name, error_code=ErrorCode.NONE)
