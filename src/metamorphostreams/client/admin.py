"""The asyncio admin client: topics, partitions, configs, offsets, groups, the cluster.

Each method sends Kafka's admin request to the broker Kafka would (the controller for topic
changes, the group coordinator for group offsets, the partition leader for ListOffsets) and
returns plain dataclasses. A failure raises the typed ``KafkaError`` of the first item that
failed (after the whole request completed), with the item's name in the message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol._generated.consumer_group_describe import ConsumerGroupDescribeRequest
from ..protocol._generated.consumer_protocol_assignment import ConsumerProtocolAssignment
from ..protocol._generated.create_partitions import CreatePartitionsRequest
from ..protocol._generated.create_topics import CreateTopicsRequest
from ..protocol._generated.delete_groups import DeleteGroupsRequest
from ..protocol._generated.delete_records import DeleteRecordsRequest
from ..protocol._generated.delete_topics import DeleteTopicsRequest
from ..protocol._generated.describe_cluster import DescribeClusterRequest
from ..protocol._generated.describe_configs import DescribeConfigsRequest
from ..protocol._generated.describe_groups import DescribeGroupsRequest
from ..protocol._generated.describe_log_dirs import DescribeLogDirsRequest
from ..protocol._generated.incremental_alter_configs import IncrementalAlterConfigsRequest
from ..protocol._generated.list_groups import ListGroupsRequest
from ..protocol.errors import ErrorCode
from ._group import CONSUMER_PROTOCOL_VERSION, GroupCoordinatorClient, decode_versioned
from ._offsets import EARLIEST, LATEST, MAX_TIMESTAMP, list_offsets
from .cluster import BrokerInfo, KafkaClient, PartitionInfo, TopicPartition
from .config import ClientConfig
from .errors import (
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
    error_for,
)

__all__ = [
    "AsyncAdmin",
    "ClusterDescription",
    "ConfigEntry",
    "GroupDescription",
    "GroupListing",
    "LogDirDescription",
    "MemberDescription",
    "NewTopic",
    "OffsetSpec",
    "ReplicaInfo",
    "TopicDescription",
]

TOPIC = 2  # ConfigResource.Type.TOPIC
BROKER = 4  # ConfigResource.Type.BROKER
RESOURCE_TYPES = {"topic": TOPIC, "broker": BROKER}
CONFIG_SOURCES = {
    -1: "UNKNOWN",
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
    7: "CLIENT_METRICS_CONFIG",
    8: "GROUP_CONFIG",
}
ALTER_OPS = {"set": 0, "delete": 1, "append": 2, "subtract": 3}
OffsetSpec = Literal["earliest", "latest", "max-timestamp"] | int


@dataclass(frozen=True, slots=True)
class NewTopic:
    name: str
    num_partitions: int = -1  # -1: the broker's num.partitions
    replication_factor: int = -1  # -1: the broker's default.replication.factor
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    topic_id: uuid.UUID
    is_internal: bool
    partitions: list[PartitionInfo]


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: str
    read_only: bool
    is_sensitive: bool

    @property
    def is_default(self) -> bool:
        return self.source == "DEFAULT_CONFIG"


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    cluster_id: str | None
    controller_id: int
    brokers: list[BrokerInfo]


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One partition's log in a log directory (Kafka's ReplicaInfo)."""

    size: int  # bytes of its segments
    offset_lag: int  # how far its log end offset is behind the high watermark; -1: unknown
    is_future: bool  # the log AlterReplicaLogDirs is moving it into


@dataclass(frozen=True, slots=True)
class LogDirDescription:
    """One log directory of a broker (Kafka's LogDirDescription)."""

    path: str
    error_code: int  # ErrorCode.NONE, or why the directory could not be described
    replicas: dict[TopicPartition, ReplicaInfo]
    total_bytes: int | None  # of its volume; None when the broker does not say (before v4)
    usable_bytes: int | None
    is_cordoned: bool = False


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    group_type: str


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: list[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[MemberDescription]
    group_type: str = "classic"


class AsyncAdmin:
    """An asyncio admin client. Create and use it inside one event loop."""

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = ClientConfig.for_role("admin", config, **kwargs)
        self._client = KafkaClient(self.config)
        self._timeout_ms: int = self.config["default.api.timeout.ms"]
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._client.bootstrap()
            self._started = True

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncAdmin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def supports(self, api_key: int) -> bool:
        """Whether the broker advertises an API we speak (at an overlapping version)."""
        await self.start()
        return await self._client.supports(api_key)

    async def broker_api_versions(self) -> dict[int, tuple[int, int]]:
        """{api key: (min, max)} as a broker advertised them in ApiVersions."""
        await self.start()
        conn = await self._client._any_connection()
        return dict(conn.api_versions)

    async def _require(self, api_key: int, what: str) -> None:
        if not await self.supports(api_key):
            raise UnsupportedVersionError(f"the broker does not support {what}")

    # -- topics ------------------------------------------------------------------------

    async def create_topics(
        self, topics: Iterable[NewTopic], *, validate_only: bool = False
    ) -> None:
        await self.start()
        request = CreateTopicsRequest(
            topics=[
                CreateTopicsRequest.CreatableTopic(
                    name=t.name,
                    num_partitions=t.num_partitions,
                    replication_factor=t.replication_factor,
                    assignments=[],
                    configs=[
                        CreateTopicsRequest.CreatableTopicConfig(name=k, value=str(v))
                        for k, v in t.config.items()
                    ],
                )
                for t in topics
            ],
            timeout_ms=self._timeout_ms,
            validate_only=validate_only,
        )
        response = await self._client.send_to_controller(request)
        _raise_first(
            (r.error_code, r.error_message, f"topic {r.name!r}") for r in response.topics or []
        )
        self._client.request_refresh()

    async def delete_topics(self, names: Iterable[str]) -> None:
        await self.start()
        names = list(names)
        request = DeleteTopicsRequest(
            topic_names=names,
            topics=[DeleteTopicsRequest.DeleteTopicState(name=n) for n in names],
            timeout_ms=self._timeout_ms,
        )
        response = await self._client.send_to_controller(request)
        _raise_first(
            (r.error_code, r.error_message, f"topic {r.name!r}") for r in response.responses or []
        )
        self._client.request_refresh()

    async def list_topics(self, *, include_internal: bool = False) -> dict[str, TopicDescription]:
        await self.start()
        await self._client.refresh_metadata(None)
        return {
            name: _describe(info)
            for name, info in sorted(self._client.metadata.topics.items())
            if include_internal or not info.is_internal
        }

    async def describe_topics(self, names: Iterable[str]) -> dict[str, TopicDescription]:
        await self.start()
        names = list(names)
        response = await self._client.refresh_metadata(names)
        by_name = {t.name: t for t in response.topics or []}
        out: dict[str, TopicDescription] = {}
        for name in names:
            t = by_name.get(name)
            code = t.error_code if t is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            if code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            if code != ErrorCode.NONE and not (t and t.partitions):
                raise error_for(code, f"topic {name!r}")
            out[name] = _describe(self._client.metadata.topics[name])
        return out

    async def create_partitions(
        self, new_totals: Mapping[str, int], *, validate_only: bool = False
    ) -> None:
        await self.start()
        request = CreatePartitionsRequest(
            topics=[
                CreatePartitionsRequest.CreatePartitionsTopic(name=n, count=c, assignments=None)
                for n, c in new_totals.items()
            ],
            timeout_ms=self._timeout_ms,
            validate_only=validate_only,
        )
        response = await self._client.send_to_controller(request)
        _raise_first(
            (r.error_code, r.error_message, f"topic {r.name!r}") for r in response.results or []
        )
        self._client.request_refresh()

    async def delete_records(
        self, offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Move log start offsets up to ``offsets`` (-1: the high watermark); new low watermarks."""
        await self.start()
        by_node: dict[int, dict[TopicPartition, int]] = {}
        for tp, offset in offsets.items():
            await self._client.topic_info(tp.topic, timeout_s=self._timeout_ms / 1000)
            leader = self._client.metadata.leader(tp)
            if leader is None:
                raise UnknownTopicOrPartitionError(f"no partition {tp}")
            by_node.setdefault(leader, {})[tp] = offset
        out: dict[TopicPartition, int] = {}
        for node, part in by_node.items():
            by_topic: dict[str, list[DeleteRecordsRequest.DeleteRecordsPartition]] = {}
            for tp, offset in part.items():
                by_topic.setdefault(tp.topic, []).append(
                    DeleteRecordsRequest.DeleteRecordsPartition(
                        partition_index=tp.partition, offset=offset
                    )
                )
            request = DeleteRecordsRequest(
                topics=[
                    DeleteRecordsRequest.DeleteRecordsTopic(name=t, partitions=p)
                    for t, p in by_topic.items()
                ],
                timeout_ms=self._timeout_ms,
            )
            response = await self._client.send(node, request)
            for t in response.topics or []:
                for p in t.partitions or []:
                    tp = TopicPartition(t.name, p.partition_index)
                    if p.error_code != ErrorCode.NONE:
                        raise error_for(p.error_code, f"deleting records of {tp}")
                    out[tp] = p.low_watermark
        return out

    # -- configs -----------------------------------------------------------------------

    async def describe_configs(
        self, resource_type: str, name: str, keys: Iterable[str] | None = None
    ) -> dict[str, ConfigEntry]:
        """Configs of a ``topic`` or ``broker`` (by id) resource, by name."""
        await self.start()
        rtype = _resource_type(resource_type)
        request = DescribeConfigsRequest(
            resources=[
                DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=rtype,
                    resource_name=name,
                    configuration_keys=None if keys is None else list(keys),
                )
            ],
            include_synonyms=False,
            include_documentation=False,
        )
        node = int(name) if rtype == BROKER and name.isdigit() else None
        response = await self._client.send(node, request)
        result = response.results[0]
        if result.error_code != ErrorCode.NONE:
            if result.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            raise error_for(result.error_code, result.error_message or f"{resource_type} {name!r}")
        return {
            c.name: ConfigEntry(
                c.name,
                c.value,
                CONFIG_SOURCES.get(c.config_source, "UNKNOWN"),
                c.read_only,
                c.is_sensitive,
            )
            for c in sorted(result.configs or [], key=lambda c: c.name)
        }

    async def alter_configs(
        self,
        resource_type: str,
        name: str,
        changes: Mapping[str, str | None],
        *,
        operation: str = "set",
        validate_only: bool = False,
    ) -> None:
        """IncrementalAlterConfigs: ``set`` (None value: delete), ``append``, ``subtract``."""
        await self._require(IncrementalAlterConfigsRequest.API_KEY, "IncrementalAlterConfigs")
        rtype = _resource_type(resource_type)
        configs = []
        for key, value in changes.items():
            op = ALTER_OPS["delete"] if value is None else ALTER_OPS[operation]
            configs.append(
                IncrementalAlterConfigsRequest.AlterableConfig(
                    name=key, config_operation=op, value=value
                )
            )
        request = IncrementalAlterConfigsRequest(
            resources=[
                IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=rtype, resource_name=name, configs=configs
                )
            ],
            validate_only=validate_only,
        )
        node = int(name) if rtype == BROKER and name.isdigit() else None
        response = await self._client.send(node, request)
        _raise_first(
            (r.error_code, r.error_message, f"{resource_type} {r.resource_name!r}")
            for r in response.responses or []
        )

    # -- cluster and offsets -----------------------------------------------------------

    async def describe_cluster(self) -> ClusterDescription:
        await self.start()
        if await self._client.supports(DescribeClusterRequest.API_KEY):
            response = await self._client.send(None, DescribeClusterRequest())
            if response.error_code != ErrorCode.NONE:
                raise error_for(response.error_code, response.error_message)
            brokers = [
                BrokerInfo(b.broker_id, b.host, b.port, b.rack) for b in response.brokers or []
            ]
            return ClusterDescription(
                response.cluster_id, response.controller_id, sorted(brokers, key=_node)
            )
        await self._client.refresh_metadata([])
        md = self._client.metadata
        return ClusterDescription(
            md.cluster_id, md.controller_id, sorted(md.brokers.values(), key=_node)
        )

    async def describe_log_dirs(
        self,
        brokers: Iterable[int] | None = None,
        partitions: Iterable[TopicPartition] | None = None,
    ) -> dict[int, dict[str, LogDirDescription]]:
        """{broker: {log dir: description}} from each of ``brokers`` (None: every broker),
        for ``partitions`` (None: every partition a broker holds, led or followed)."""
        await self.start()
        if brokers is None:
            brokers = [b.node_id for b in (await self.describe_cluster()).brokers]
        topics = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for tp in partitions:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            topics = [
                DescribeLogDirsRequest.DescribableLogDirTopic(topic=t, partitions=ps)
                for t, ps in by_topic.items()
            ]
        ids = list(dict.fromkeys(brokers))
        answers = await asyncio.gather(
            *(self._client.send(node, DescribeLogDirsRequest(topics=topics)) for node in ids)
        )
        return {node: _log_dirs(node, r) for node, r in zip(ids, answers, strict=True)}

    async def list_offsets(
        self, specs: Mapping[TopicPartition, OffsetSpec], *, read_committed: bool = False
    ) -> dict[TopicPartition, tuple[int, int]]:
        """{tp: (offset, timestamp)} for "earliest", "latest", "max-timestamp" or a timestamp."""
        await self.start()
        wanted = {tp: _spec(s) for tp, s in specs.items()}
        return await list_offsets(
            self._client,
            wanted,
            isolation_level=1 if read_committed else 0,
            timeout_s=self._timeout_ms / 1000,
        )

    # -- groups ------------------------------------------------------------------------

    async def list_groups(self) -> list[GroupListing]:
        """Every group of every broker (ListGroups goes to each broker)."""
        await self._require(ListGroupsRequest.API_KEY, "consumer groups (ListGroups)")
        await self._client.refresh_metadata([])
        responses = await asyncio.gather(
            *(
                self._client.send(node, ListGroupsRequest(states_filter=[], types_filter=[]))
                for node in self._client.metadata.brokers
            )
        )
        out: list[GroupListing] = []
        for response in responses:
            if response.error_code != ErrorCode.NONE:
                raise error_for(response.error_code, "listing groups")
            for g in response.groups or []:
                out.append(
                    GroupListing(g.group_id, g.protocol_type, g.group_state, g.group_type or "")
                )
        return sorted(out, key=lambda g: g.group_id)

    async def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        await self._require(DescribeGroupsRequest.API_KEY, "consumer groups (DescribeGroups)")
        out: dict[str, GroupDescription] = {}
        for group_id in group_ids:
            out[group_id] = await self._describe_group(group_id)
        return out

    async def _describe_group(self, group_id: str) -> GroupDescription:
        coordinator = GroupCoordinatorClient(self._client, self.config, group_id)
        if await self._client.supports(ConsumerGroupDescribeRequest.API_KEY):
            response = await coordinator.send(ConsumerGroupDescribeRequest(group_ids=[group_id]))
            g = response.groups[0]
            if g.error_code == ErrorCode.NONE:
                return GroupDescription(
                    group_id,
                    g.group_state,
                    "consumer",
                    g.assignor_name,
                    [
                        MemberDescription(
                            m.member_id,
                            m.instance_id,
                            m.client_id,
                            m.client_host,
                            sorted(
                                TopicPartition(tp.topic_name, p)
                                for tp in (m.assignment.topic_partitions if m.assignment else [])
                                or []
                                for p in tp.partitions or []
                            ),
                        )
                        for m in g.members or []
                    ],
                    group_type="consumer",
                )
        response = await coordinator.send(DescribeGroupsRequest(groups=[group_id]))
        g = response.groups[0]
        if g.error_code != ErrorCode.NONE:
            raise error_for(g.error_code, g.error_message or f"group {group_id!r}")
        members = []
        for m in g.members or []:
            assignment: list[TopicPartition] = []
            if g.protocol_type == "consumer" and m.member_assignment:
                decoded = decode_versioned(
                    ConsumerProtocolAssignment, m.member_assignment, CONSUMER_PROTOCOL_VERSION
                )
                assignment = sorted(
                    TopicPartition(tp.topic, p)
                    for tp in decoded.assigned_partitions or []
                    for p in tp.partitions or []
                )
            members.append(
                MemberDescription(
                    m.member_id, m.group_instance_id, m.client_id, m.client_host, assignment
                )
            )
        return GroupDescription(group_id, g.group_state, g.protocol_type, g.protocol_data, members)

    async def delete_groups(self, group_ids: Iterable[str]) -> None:
        await self._require(DeleteGroupsRequest.API_KEY, "deleting groups (DeleteGroups)")
        for group_id in group_ids:
            coordinator = GroupCoordinatorClient(self._client, self.config, group_id)
            response = await coordinator.send(DeleteGroupsRequest(groups_names=[group_id]))
            _raise_first(
                (r.error_code, None, f"group {r.group_id!r}") for r in response.results or []
            )

    async def list_group_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """The group's committed offsets (all of them when ``partitions`` is None)."""
        await self.start()
        coordinator = GroupCoordinatorClient(self._client, self.config, group_id)
        found = await coordinator.fetch_committed(partitions)
        return {tp: o for tp, o in sorted(found.items()) if o is not None}

    async def alter_group_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Commit offsets for a group with no active members (Kafka refuses otherwise)."""
        await self.start()
        coordinator = GroupCoordinatorClient(self._client, self.config, group_id)
        await coordinator.commit(offsets)

    async def group_lag(self, group_id: str) -> dict[TopicPartition, tuple[int, int, int]]:
        """{tp: (committed offset, log end offset, lag)} for every partition it committed."""
        committed = await self.list_group_offsets(group_id)
        if not committed:
            return {}
        ends = await self.list_offsets(dict.fromkeys(committed, "latest"))
        return {
            tp: (offset, ends[tp][0], max(0, ends[tp][0] - offset))
            for tp, offset in committed.items()
        }


def _describe(info: Any) -> TopicDescription:
    return TopicDescription(
        info.name,
        info.topic_id,
        info.is_internal,
        [info.partitions[p] for p in sorted(info.partitions)],
    )


def _log_dirs(node: int, response: Any) -> dict[str, LogDirDescription]:
    out: dict[str, LogDirDescription] = {}
    for result in response.results or []:
        replicas = {
            TopicPartition(t.name, p.partition_index): ReplicaInfo(
                p.partition_size, p.offset_lag, p.is_future_key
            )
            for t in result.topics or []
            for p in t.partitions or []
        }
        out[result.log_dir] = LogDirDescription(
            result.log_dir,
            result.error_code,
            replicas,
            None if result.total_bytes < 0 else result.total_bytes,
            None if result.usable_bytes < 0 else result.usable_bytes,
            result.is_cordoned,
        )
    if not out:
        # Kafka's admin client: no directory at all means the request was refused; before v3
        # the response had no error code, and the refusal was the authorization.
        code = response.error_code or ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        raise error_for(code, f"describing the log dirs of broker {node}")
    return out


def _node(b: BrokerInfo) -> int:
    return b.node_id


def _resource_type(name: str) -> int:
    try:
        return RESOURCE_TYPES[name]
    except KeyError:
        raise ValueError(f"resource type must be topic or broker, not {name!r}") from None


def _spec(spec: OffsetSpec) -> int:
    if isinstance(spec, int):
        return spec
    return {"earliest": EARLIEST, "latest": LATEST, "max-timestamp": MAX_TIMESTAMP}[spec]


def _raise_first(results: Iterable[tuple[int, str | None, str]]) -> None:
    for code, message, what in results:
        if code != ErrorCode.NONE:
            err = error_for(code)
            detail = f": {message}" if message else f": {err}"
            raise error_for(code, f"{what}{detail}")
