"""KIP-951: answers that tell a client where a partition's leadership went.

Produce (v10+) and Fetch (v16+) partitions answered NOT_LEADER_OR_FOLLOWER (or, for Fetch,
FENCED_LEADER_EPOCH) carry the partition's current leader and epoch, and the response lists
the endpoints of those leaders, so clients move without a Metadata round trip. Kafka lists
no endpoint for a leader that is the answering broker itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..dispatch import RequestContext
from ..replica_manager import LEADER_EPOCH

NO_LEADER = (-1, -1)


def current_leader(ctx: RequestContext, topic: str, partition: int) -> tuple[int, int]:
    """(leader id, leader epoch): a standalone broker leads everything in epoch 0."""
    cluster = ctx.broker.cluster
    if cluster is None:
        return ctx.broker.broker_id, LEADER_EPOCH
    leader, epoch = cluster.leader_of(topic, partition)
    return (leader, epoch) if leader >= 0 else NO_LEADER


def leader_endpoints(ctx: RequestContext, leaders: Iterable[int], endpoint_cls: Any) -> list[Any]:
    """The NodeEndpoints of ``leaders`` other than this broker, by id."""
    cluster = ctx.broker.cluster
    if cluster is None:
        return []
    endpoints = []
    for leader in sorted(set(leaders)):
        reg = cluster.brokers.get(leader)
        if leader == ctx.broker.broker_id or reg is None or not reg.endpoints:
            continue
        ep = reg.endpoints[0]
        endpoints.append(
            endpoint_cls(node_id=leader, host=ep.host or "", port=ep.port, rack=reg.rack)
        )
    return endpoints
