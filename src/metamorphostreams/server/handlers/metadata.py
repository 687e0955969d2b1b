"""Metadata and DescribeCluster: brokers, topics, partitions, leaders."""

from __future__ import annotations

from ...cluster.metadata import TopicInfo, topic_name_error
from ...protocol._generated.describe_cluster import DescribeClusterRequest, DescribeClusterResponse
from ...protocol._generated.metadata import MetadataRequest, MetadataResponse
from ...protocol.errors import ErrorCode
from ..connection import CloseConnection
from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH

TOPIC_ID_LOOKUP_VERSION = 12  # Metadata v12+: topics may be named by id alone


def _topic(ctx: RequestContext, info: TopicInfo) -> MetadataResponse.MetadataResponseTopic:
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


async def handle_metadata(ctx: RequestContext, req: MetadataRequest) -> MetadataResponse:
    broker = ctx.broker
    store = broker.metadata
    # v0: an empty list means all topics; v1+: null means all, empty means none.
    all_topics = req.topics is None or (ctx.api_version == 0 and not req.topics)
    auto_create = ctx.api_version < 4 or req.allow_auto_topic_creation
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    if all_topics:
        topics = [_topic(ctx, t) for t in sorted(store.topics.values(), key=lambda t: t.name)]
    else:
        seen: set[str] = set()
        for wanted in req.topics or []:
            name = wanted.name
            if name is None and ctx.api_version < TOPIC_ID_LOOKUP_VERSION:
                raise CloseConnection(
                    f"Topic name can not be null for Metadata version {ctx.api_version}"
                )
            if name is None:
                # v10+ may address topics by id only
                info = store.topic_by_id(wanted.topic_id)
                if info is None:
                    topics.append(
                        MetadataResponse.MetadataResponseTopic(
                            error_code=ErrorCode.UNKNOWN_TOPIC_ID,
                            name=None,
                            topic_id=wanted.topic_id,
                        )
                    )
                else:
                    topics.append(_topic(ctx, info))
                continue
            if name in seen:
                continue
            seen.add(name)
            info = store.topics.get(name)
            if info is None:
                if topic_name_error(name) is not None:
                    topics.append(_error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION))
                    continue
                if auto_create and store.colliding_topic(name) is None:
                    info = broker.replicas.maybe_auto_create(name)
                if info is None:
                    topics.append(_error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                    continue
            topics.append(_topic(ctx, info))
    host, port = broker.advertised()
    return MetadataResponse(
        brokers=[
            MetadataResponse.MetadataResponseBroker(node_id=broker.broker_id, host=host, port=port)
        ],
        cluster_id=store.cluster_id,
        controller_id=broker.broker_id,
        topics=topics,
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
    return DescribeClusterResponse(
        error_code=ErrorCode.NONE,
        endpoint_type=1,
        cluster_id=broker.metadata.cluster_id,
        controller_id=broker.broker_id,
        brokers=[
            DescribeClusterResponse.DescribeClusterBroker(
                broker_id=broker.broker_id, host=host, port=port
            )
        ],
    )
