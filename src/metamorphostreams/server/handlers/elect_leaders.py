"""ElectLeaders: preferred and unclean leader elections on request, with Kafka's answers.

Kafka's ZooKeeper-era broker hands the request to its controller and answers per partition:
NONE once the new leader is in its metadata (REQUEST_TIMED_OUT when ``timeout_ms`` ends
first), ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION for a topic being deleted. A null
partition list means every partition, and then the partitions that needed no election are
left out (topics left with none as well). The top-level error (v1+) is NONE unless the
request itself fails: an unknown election type is UNKNOWN_SERVER_ERROR, at the top and for
every partition named.

Where: a standalone broker leads every replica of its partitions, so it answers
ELECTION_NOT_NEEDED (or unknown). In a cluster the controller runs the elections
(``ClusterRuntime.elect_leaders``); another broker forwards the request to it and relays its
answer (Kafka's admin clients send it to the controller anyway). A forwarded request that
reaches a broker no longer controller is answered NOT_CONTROLLER, never forwarded twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from ...protocol._generated.elect_leaders import ElectLeadersRequest, ElectLeadersResponse
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext

ELECTION_TYPES = (0, 1)  # Kafka's ElectionType: PREFERRED, UNCLEAN
# Client id of the requests a broker forwards to its controller; a broker that gets one while
# not controller answers instead of forwarding again.
FORWARD_CLIENT_ID_SUFFIX = "-elect-leaders-forward"
FORWARD_MARGIN_S = 5.0  # beyond the request's own timeout, for the hop and the answer
# Kafka's messages (ApiError(Errors.X) carries the error's default message).
NOT_NEEDED_MESSAGE = "Leader election not needed for topic partition."
UNKNOWN_PARTITION_MESSAGE = "The partition does not exist."

Key = tuple[str, int]
Outcome = tuple[ErrorCode, str | None]
PartitionResult = ElectLeadersResponse.PartitionResult
TopicResult = ElectLeadersResponse.ReplicaElectionResult


async def handle_elect_leaders(
    ctx: RequestContext, req: ElectLeadersRequest
) -> ElectLeadersResponse:
    election_type = req.election_type if ctx.api_version >= 1 else 0
    requested = None if req.topic_partitions is None else _requested(req.topic_partitions)
    if election_type not in ELECTION_TYPES:
        # Kafka's ElectionType.valueOf throws; the error response names every partition asked.
        failed = {key: (ErrorCode.UNKNOWN_SERVER_ERROR, None) for key in requested or ()}
        return _response(failed, ErrorCode.UNKNOWN_SERVER_ERROR, omit_not_needed=False)
    cluster = ctx.broker.cluster
    if cluster is None:
        outcomes = _standalone(ctx, requested)
    elif cluster.is_controller:
        elected = await cluster.elect_leaders(election_type, requested, req.timeout_ms)
        outcomes = {key: (o.error, o.message) for key, o in elected.items()}
    elif (ctx.header.client_id or "").endswith(FORWARD_CLIENT_ID_SUFFIX):
        outcomes = _everywhere(ctx, requested, (ErrorCode.NOT_CONTROLLER, None))
    else:
        return await _forward(ctx, req, requested)
    return _response(outcomes, ErrorCode.NONE, omit_not_needed=requested is None)


def _requested(topics: Iterable[ElectLeadersRequest.TopicPartitions]) -> list[Key]:
    """The partitions asked for, each once (Kafka reads them into a set), in request order."""
    return list(dict.fromkeys((t.topic, p) for t in topics for p in t.partitions or ()))


def _all_partitions(ctx: RequestContext) -> list[Key]:
    topics = ctx.broker.metadata.topics
    return [(name, p) for name in sorted(topics) for p in range(topics[name].partitions)]


def _everywhere(
    ctx: RequestContext, requested: list[Key] | None, outcome: Outcome
) -> dict[Key, Outcome]:
    return dict.fromkeys(_all_partitions(ctx) if requested is None else requested, outcome)


def _standalone(ctx: RequestContext, requested: list[Key] | None) -> dict[Key, Outcome]:
    """One broker: it leads every partition it has, which is its only replica."""
    topics = ctx.broker.metadata.topics
    outcomes: dict[Key, Outcome] = {}
    for topic, p in _all_partitions(ctx) if requested is None else requested:
        info = topics.get(topic)
        known = info is not None and 0 <= p < info.partitions
        outcomes[(topic, p)] = (
            (ErrorCode.ELECTION_NOT_NEEDED, NOT_NEEDED_MESSAGE)
            if known
            else (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_PARTITION_MESSAGE)
        )
    return outcomes


async def _forward(
    ctx: RequestContext, req: ElectLeadersRequest, requested: list[Key] | None
) -> ElectLeadersResponse:
    """Send the request to the controller at the client's version and relay its answer;
    NOT_CONTROLLER for every partition when the controller cannot be reached, and
    REQUEST_TIMED_OUT when it does not answer in time."""
    from ...client.connection import BrokerConnection
    from ...client.errors import KafkaError, KafkaTimeoutError

    cluster = ctx.broker.cluster
    assert cluster is not None
    controller = cluster.controller_id
    endpoint = cluster.endpoint(controller) if controller >= 0 else None
    failure: Outcome = (ErrorCode.NOT_CONTROLLER, None)
    if endpoint is not None:
        timeout_s = max(req.timeout_ms, 0) / 1000 + FORWARD_MARGIN_S
        conn: BrokerConnection | None = None
        try:
            conn = await BrokerConnection.open(
                *endpoint,
                client_id=f"broker-{ctx.broker.broker_id}{FORWARD_CLIENT_ID_SUFFIX}",
                node_id=controller,
                timeout_s=FORWARD_MARGIN_S,
            )
            response: ElectLeadersResponse = await conn.request(req, ctx.api_version, timeout_s)
            response.throttle_time_ms = 0
            return response
        except KafkaTimeoutError:
            failure = (ErrorCode.REQUEST_TIMED_OUT, None)
        except KafkaError:
            pass
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
    outcomes = _everywhere(ctx, requested, failure)
    return _response(outcomes, ErrorCode.NONE, omit_not_needed=False)


def _response(
    outcomes: Mapping[Key, Outcome], error: ErrorCode, *, omit_not_needed: bool
) -> ElectLeadersResponse:
    by_topic: dict[str, list[PartitionResult]] = {}
    for (topic, p), (code, message) in outcomes.items():
        if omit_not_needed and code == ErrorCode.ELECTION_NOT_NEEDED:
            continue
        by_topic.setdefault(topic, []).append(
            PartitionResult(partition_id=p, error_code=code, error_message=message)
        )
    return ElectLeadersResponse(
        throttle_time_ms=0,
        error_code=error,
        replica_election_results=[
            TopicResult(topic=topic, partition_result=results)
            for topic, results in by_topic.items()
        ],
    )
