"""Metadata and DescribeCluster: brokers, topics, partitions, leaders."""

from __future__ import annotations

import uuid
import weakref
from typing import TYPE_CHECKING

from ...cluster.metadata import TopicInfo, topic_name_error
from ...cluster.store import MetadataStoreProtocol
from ...protocol._generated.describe_cluster import DescribeClusterRequest, DescribeClusterResponse
from ...protocol._generated.metadata import MetadataRequest, MetadataResponse
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH

if TYPE_CHECKING:
    from ..cluster_runtime import ClusterRuntime

TOPIC_ID_LOOKUP_VERSION = 12  # Metadata v12+: topics may be named by id alone (v10-11 refuse ids)
# v13 (KIP-1102) adds a top-level error code: set only when the whole request fails.
ZERO_UUID = uuid.UUID(int=0)

# Kafka's AclOperation codes; with no authorizer Kafka grants every operation a resource type
# supports (AuthHelper.authorizedOperations), as a bit field of those codes.
_READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE = 3, 4, 5, 6, 7, 8
_CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS, _IDEMPOTENT_WRITE = 9, 10, 11, 12
NOT_PROVIDED = -(2**31)  # authorized operations not asked for


def _bits(*operations: int) -> int:
    return sum(1 << op for op in operations)


TOPIC_OPERATIONS = _bits(
    _READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE, _DESCRIBE_CONFIGS, _ALTER_CONFIGS
)
CLUSTER_OPERATIONS = _bits(
    _CREATE, _ALTER, _DESCRIBE, _CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS,
    _IDEMPOTENT_WRITE,
)  # fmt: skip


class TopicIdIndex:
    """Topic id -> topic of one MetadataStore: one dict lookup per id (KIP-516 requests).

    The store keys topics by name; this index is rebuilt from it when a lookup misses or
    finds a topic the store no longer holds (deleted, or deleted and created again), so it
    never answers for a stale id. Not task-safe; loop-owned, like the store.
    """

    __slots__ = ("_by_id", "_store")

    def __init__(self, store: MetadataStoreProtocol) -> None:
        self._store = store
        self._by_id: dict[uuid.UUID, TopicInfo] = {}

    def get(self, topic_id: uuid.UUID) -> TopicInfo | None:
        info = self._by_id.get(topic_id)
        if info is not None and self._store.topics.get(info.name) is info:
            return info
        self._by_id = {t.topic_id: t for t in self._store.topics.values()}
        return self._by_id.get(topic_id)


_INDEXES: weakref.WeakKeyDictionary[MetadataStoreProtocol, TopicIdIndex] = (
    weakref.WeakKeyDictionary()
)


def topic_ids(store: MetadataStoreProtocol) -> TopicIdIndex:
    """The id index of ``store`` (one per broker's store, made on first use)."""
    index = _INDEXES.get(store)
    if index is None:
        index = _INDEXES[store] = TopicIdIndex(store)
    return index


def _cluster_topic(
    cluster: ClusterRuntime, info: TopicInfo
) -> MetadataResponse.MetadataResponseTopic:
    """A topic in a cluster: each partition's leader and epoch from its partition state."""
    partitions = []
    for p in range(info.partitions):
        leader, epoch = cluster.leader_of(info.name, p)
        replicas = cluster.replicas_of(info.name, p)
        offline = [b for b in replicas if b not in cluster.brokers]
        partitions.append(
            MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.NONE if leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=p,
                leader_id=leader,
                leader_epoch=epoch,
                replica_nodes=replicas,
                isr_nodes=cluster.isr_of(info.name, p),
                offline_replicas=offline,
            )
        )
    return MetadataResponse.MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.is_internal,
        partitions=partitions,
    )


def _topic(ctx: RequestContext, info: TopicInfo) -> MetadataResponse.MetadataResponseTopic:
    if ctx.broker.cluster is not None:
        return _cluster_topic(ctx.broker.cluster, info)
    me = ctx.broker.broker_id
    return MetadataResponse.MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.is_internal,
        partitions=[
            MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.NONE,
                partition_index=p,
                leader_id=me,
                leader_epoch=LEADER_EPOCH,
                replica_nodes=[me],
                isr_nodes=[me],
                offline_replicas=[],
            )
            for p in range(info.partitions)
        ],
    )


def _error_topic(name: str, error: ErrorCode) -> MetadataResponse.MetadataResponseTopic:
    return MetadataResponse.MetadataResponseTopic(error_code=error, name=name, partitions=[])


def _request_error(req: MetadataRequest, error: ErrorCode) -> MetadataResponse:
    """Kafka's MetadataRequest.getErrorResponse: no brokers, every asked topic in error, and
    from v13 the same error at the top level."""
    return MetadataResponse(
        brokers=[],
        cluster_id=None,
        controller_id=-1,
        error_code=error,
        topics=[
            MetadataResponse.MetadataResponseTopic(
                error_code=error,
                name="" if t.name is None else t.name,  # the response's name is not nullable
                topic_id=t.topic_id,
                partitions=[],
            )
            for t in req.topics or []
        ],
    )


def _request_problem(version: int, req: MetadataRequest) -> ErrorCode | None:
    """The whole-request error Kafka answers for names and ids this version cannot carry."""
    wanted = req.topics or []
    if version < TOPIC_ID_LOOKUP_VERSION and any(
        t.name is None or t.topic_id != ZERO_UUID for t in wanted
    ):
        return ErrorCode.INVALID_REQUEST
    if all(t.topic_id == ZERO_UUID for t in wanted) and any(t.name is None for t in wanted):
        # Kafka 4.3 fails on a null name with no id to look up (a NullPointerException).
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return None


def _topics_by_id(
    ctx: RequestContext, ids: list[uuid.UUID]
) -> list[MetadataResponse.MetadataResponseTopic]:
    """Kafka's lookup by id: names are ignored; unknown ids first, with a null name."""
    index = topic_ids(ctx.broker.metadata)
    unknown: list[MetadataResponse.MetadataResponseTopic] = []
    known: list[MetadataResponse.MetadataResponseTopic] = []
    for topic_id in dict.fromkeys(ids):
        info = index.get(topic_id)
        if info is None:
            unknown.append(
                MetadataResponse.MetadataResponseTopic(
                    error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=topic_id
                )
            )
        else:
            known.append(_topic(ctx, info))
    for topic in known:
        topic.topic_authorized_operations = TOPIC_OPERATIONS
    return unknown + known


def _topics_by_name(
    ctx: RequestContext, names: list[str], auto_create: bool
) -> list[MetadataResponse.MetadataResponseTopic]:
    broker = ctx.broker
    store = broker.metadata
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    for name in dict.fromkeys(names):
        info = store.topics.get(name)
        if info is None:
            if topic_name_error(name) is not None:
                topics.append(_error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION))
                continue
            if auto_create and store.colliding_topic(name) is None:
                if broker.cluster is not None:
                    if broker.config["auto.create.topics.enable"]:
                        # Kafka's answer while an auto-created topic is being created.
                        broker.cluster.ensure_topic(
                            name,
                            int(broker.config["num.partitions"]),
                            {},
                            int(broker.config["default.replication.factor"]),
                        )
                        topics.append(_error_topic(name, ErrorCode.LEADER_NOT_AVAILABLE))
                        continue
                else:
                    info = broker.replicas.maybe_auto_create(name)
            if info is None:
                topics.append(_error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
        topics.append(_topic(ctx, info))
    for topic in topics:
        topic.topic_authorized_operations = TOPIC_OPERATIONS
    return topics


async def handle_metadata(ctx: RequestContext, req: MetadataRequest) -> MetadataResponse:
    broker = ctx.broker
    store = broker.metadata
    version = ctx.api_version
    # v0: an empty list means all topics; v1+: null means all, empty means none.
    all_topics = req.topics is None or (version == 0 and not req.topics)
    auto_create = version < 4 or req.allow_auto_topic_creation
    if all_topics:
        topics = [_topic(ctx, t) for t in sorted(store.topics.values(), key=lambda t: t.name)]
        for topic in topics:
            topic.topic_authorized_operations = TOPIC_OPERATIONS
    else:
        problem = _request_problem(version, req)
        if problem is not None:
            return _request_error(req, problem)
        wanted = req.topics or []
        ids = [t.topic_id for t in wanted if t.topic_id != ZERO_UUID]
        if ids:
            topics = _topics_by_id(ctx, ids)
        else:
            topics = _topics_by_name(ctx, [t.name or "" for t in wanted], auto_create)
    if not req.include_topic_authorized_operations:
        for topic in topics:
            topic.topic_authorized_operations = NOT_PROVIDED
    host, port = broker.advertised()
    brokers = [
        MetadataResponse.MetadataResponseBroker(node_id=broker.broker_id, host=host, port=port)
    ]
    controller_id = broker.broker_id
    if broker.cluster is not None:
        brokers = [
            MetadataResponse.MetadataResponseBroker(
                node_id=reg.broker_id, host=ep.host or "", port=ep.port, rack=reg.rack
            )
            for reg in sorted(broker.cluster.brokers.values(), key=lambda r: r.broker_id)
            for ep in reg.endpoints[:1]
        ]
        controller_id = broker.cluster.controller_id
    return MetadataResponse(
        brokers=brokers,
        cluster_id=store.cluster_id,
        controller_id=controller_id,
        topics=topics,
        cluster_authorized_operations=CLUSTER_OPERATIONS
        if req.include_cluster_authorized_operations
        else NOT_PROVIDED,
    )


async def handle_describe_cluster(
    ctx: RequestContext, req: DescribeClusterRequest
) -> DescribeClusterResponse:
    broker = ctx.broker
    if ctx.api_version >= 1 and req.endpoint_type not in (1,):
        # endpoint type 1 = brokers; 2 = controllers, which a broker listener does not serve
        return DescribeClusterResponse(
            error_code=ErrorCode.MISMATCHED_ENDPOINT_TYPE,
            error_message="The request was sent to an endpoint of type BROKER, "
            "but we wanted an endpoint of type CONTROLLER",
            endpoint_type=1,
            cluster_id=broker.metadata.cluster_id,
        )
    host, port = broker.advertised()
    brokers = [
        DescribeClusterResponse.DescribeClusterBroker(
            broker_id=broker.broker_id, host=host, port=port
        )
    ]
    controller_id = broker.broker_id
    if broker.cluster is not None:
        brokers = [
            DescribeClusterResponse.DescribeClusterBroker(
                broker_id=reg.broker_id, host=ep.host or "", port=ep.port, rack=reg.rack
            )
            for reg in sorted(broker.cluster.brokers.values(), key=lambda r: r.broker_id)
            for ep in reg.endpoints[:1]
        ]
        controller_id = broker.cluster.controller_id
    return DescribeClusterResponse(
        error_code=ErrorCode.NONE,
        endpoint_type=1,
        cluster_id=broker.metadata.cluster_id,
        controller_id=controller_id,
        brokers=brokers,
        cluster_authorized_operations=CLUSTER_OPERATIONS
        if req.include_cluster_authorized_operations
        else NOT_PROVIDED,
    )
