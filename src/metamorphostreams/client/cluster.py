"""The client core shared by producer, consumer and admin: bootstrap, connections, metadata.

``KafkaClient`` owns one connection per (broker, lane) (lanes keep a long-polling Fetch from
delaying other requests: the broker answers a connection's requests one at a time), and the
``ClusterMetadata`` cache. Metadata is refreshed on demand: when a topic is unknown, when a
response says the cache is stale (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, ...),
and after ``metadata.max.age.ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol._generated.metadata import MetadataRequest, MetadataResponse
from ..protocol.errors import ErrorCode
from .config import ClientConfig
from .connection import BrokerConnection
from .errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownTopicOrPartitionError,
    error_for,
)

log = logging.getLogger("metamorphostreams.client")

ZERO_UUID = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """A topic and a partition index."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...] = ()
    error: int = 0


@dataclass(slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionInfo]
    is_internal: bool = False
    error: int = 0


@dataclass(slots=True)
class ClusterMetadata:
    """What the last Metadata responses said. Replaced topic by topic; loop-owned."""

    cluster_id: str | None = None
    controller_id: int = -1
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    topic_names: dict[uuid.UUID, str] = field(default_factory=dict)
    updated: float = 0.0

    def update(self, response: MetadataResponse, requested: list[str] | None) -> None:
        self.cluster_id = response.cluster_id
        self.controller_id = response.controller_id
        self.brokers = {
            b.node_id: BrokerInfo(b.node_id, b.host, b.port, b.rack) for b in response.brokers or []
        }
        if requested is None:
            self.topics.clear()
        for t in response.topics or []:
            if t.name is None:
                continue
            if t.error_code != ErrorCode.NONE and not t.partitions:
                self.topics.pop(t.name, None)
                continue
            parts = {
                p.partition_index: PartitionInfo(
                    p.partition_index,
                    p.leader_id,
                    p.leader_epoch,
                    tuple(p.replica_nodes or ()),
                    tuple(p.isr_nodes or ()),
                    tuple(p.offline_replicas or ()),
                    p.error_code,
                )
                for p in t.partitions or []
            }
            info = TopicInfo(t.name, t.topic_id, parts, t.is_internal, t.error_code)
            self.topics[t.name] = info
            if t.topic_id != ZERO_UUID:
                self.topic_names[t.topic_id] = t.name
        self.updated = time.monotonic()

    def leader(self, tp: TopicPartition) -> int | None:
        topic = self.topics.get(tp.topic)
        if topic is None:
            return None
        part = topic.partitions.get(tp.partition)
        if part is None or part.leader < 0 or part.leader not in self.brokers:
            return None
        return part.leader

    def partition_count(self, topic: str) -> int | None:
        info = self.topics.get(topic)
        return len(info.partitions) if info is not None else None


class KafkaClient:
    """Connections and metadata for one producer, consumer or admin. Loop-owned."""

    def __init__(self, config: ClientConfig, *, allow_auto_topic_creation: bool = False) -> None:
        self.config = config
        self.client_id: str = config["client.id"]
        self.request_timeout_s = config["request.timeout.ms"] / 1000
        self.allow_auto_topic_creation = allow_auto_topic_creation
        self.metadata = ClusterMetadata()
        self._connections: dict[tuple[int, str], BrokerConnection] = {}
        self._connecting: dict[tuple[int, str], asyncio.Task[BrokerConnection]] = {}
        self._bootstrap_conn: BrokerConnection | None = None
        self._interesting: set[str] = set()
        self._refresh: asyncio.Task[None] | None = None
        self._closed = False

    # -- connections -------------------------------------------------------------------

    async def _open(self, host: str, port: int, node_id: int) -> BrokerConnection:
        return await BrokerConnection.open(
            host,
            port,
            client_id=self.client_id,
            node_id=node_id,
            timeout_s=self.config["socket.connection.setup.timeout.ms"] / 1000,
            max_frame_size=self.config["receive.message.max.bytes"],
        )

    async def bootstrap(self) -> None:
        """Connect to a bootstrap server and load the broker list (KafkaConnectionError if none)."""
        await self.refresh_metadata([])

    async def _any_connection(self) -> BrokerConnection:
        """A live connection to some broker: an existing one, a known broker, or bootstrap.

        Only default-lane connections: the fetch and coordinator lanes carry requests that
        wait (long-poll Fetch, JoinGroup), and the broker answers a connection in order.
        """
        for (_node, lane), conn in self._connections.items():
            if lane == "" and not conn.is_closed:
                return conn
        if self._bootstrap_conn is not None and not self._bootstrap_conn.is_closed:
            return self._bootstrap_conn
        errors: list[str] = []
        candidates = [(b.host, b.port, b.node_id) for b in self.metadata.brokers.values()]
        random.shuffle(candidates)
        candidates += [(h, p, -1) for h, p in self.config.bootstrap_servers]
        for host, port, node_id in candidates:
            try:
                conn = await self._open(host, port, node_id)
            except KafkaConnectionError as exc:
                errors.append(exc.message)
                continue
            if node_id >= 0:
                self._connections[(node_id, "")] = conn
            else:
                self._bootstrap_conn = conn
            return conn
        raise KafkaConnectionError(errors[-1] if len(errors) == 1 else "; ".join(errors))

    async def connection(self, node_id: int, lane: str = "") -> BrokerConnection:
        """The connection to ``node_id`` on ``lane``, opened if needed."""
        key = (node_id, lane)
        conn = self._connections.get(key)
        if conn is not None and not conn.is_closed:
            return conn
        task = self._connecting.get(key)
        if task is None:
            broker = self.metadata.brokers.get(node_id)
            if broker is None:
                await self.refresh_metadata()
                broker = self.metadata.brokers.get(node_id)
                if broker is None:
                    raise KafkaConnectionError(f"broker {node_id} is not in the cluster metadata")
            task = asyncio.ensure_future(self._open(broker.host, broker.port, node_id))
            self._connecting[key] = task
            task.add_done_callback(lambda _t: self._connecting.pop(key, None))
        conn = await asyncio.shield(task)
        self._connections[key] = conn
        return conn

    async def send(
        self,
        node_id: int | None,
        request: Any,
        *,
        lane: str = "",
        timeout_s: float | None = None,
        version: int | None = None,
    ) -> Any:
        """Send to a broker (None: any broker) and await the response."""
        conn = await (self._any_connection() if node_id is None else self.connection(node_id, lane))
        if version is None:
            version = conn.version_for(request.API_KEY)
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        return await conn.request(request, version, timeout)

    async def send_to_controller(self, request: Any, *, timeout_s: float | None = None) -> Any:
        """Admin requests that Kafka routes to the controller (falls back to any broker)."""
        if not self.metadata.brokers:
            await self.refresh_metadata([])
        controller = self.metadata.controller_id
        node = controller if controller in self.metadata.brokers else None
        return await self.send(node, request, timeout_s=timeout_s)

    async def api_version(self, api_key: int, node_id: int | None = None) -> int:
        conn = await (self._any_connection() if node_id is None else self.connection(node_id))
        return conn.version_for(api_key)

    async def supports(self, api_key: int) -> bool:
        conn = await self._any_connection()
        return conn.supports(api_key)

    async def close(self) -> None:
        self._closed = True
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(BaseException):
                await self._refresh
        for task in list(self._connecting.values()):
            task.cancel()
        conns = list(self._connections.values())
        if self._bootstrap_conn is not None:
            conns.append(self._bootstrap_conn)
        for conn in conns:
            conn.close()
        self._connections.clear()

    # -- metadata ----------------------------------------------------------------------

    def want_topics(self, topics: Iterable[str]) -> None:
        """Topics to keep in the cache from now on (refreshed with every metadata request)."""
        self._interesting.update(topics)

    async def refresh_metadata(self, topics: Iterable[str] | None = ()) -> MetadataResponse:
        """Fetch metadata for ``topics`` plus the interesting ones (None: every topic)."""
        names = None if topics is None else sorted(set(topics) | self._interesting)
        request = MetadataRequest(
            topics=None
            if names is None
            else [MetadataRequest.MetadataRequestTopic(name=n) for n in names],
            allow_auto_topic_creation=self.allow_auto_topic_creation,
        )
        last: KafkaError | None = None
        for _attempt in range(3):
            conn = await self._any_connection()
            version = conn.version_for(MetadataRequest.API_KEY)
            try:
                response: MetadataResponse = await conn.request(
                    request, version, self.request_timeout_s
                )
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                last = exc
                continue
            self.metadata.update(response, names)
            return response
        assert last is not None
        raise last

    def request_refresh(self) -> None:
        """Refresh metadata soon in the background (coalesces repeated calls)."""
        if self._closed or (self._refresh is not None and not self._refresh.done()):
            return

        async def run() -> None:
            with contextlib.suppress(KafkaError):
                await self.refresh_metadata()

        self._refresh = asyncio.ensure_future(run())

    async def topic_info(self, topic: str, *, timeout_s: float, refresh: bool = False) -> TopicInfo:
        """The topic's metadata with a leader for every partition, waiting up to ``timeout_s``.

        Raises UnknownTopicOrPartitionError (or the topic's error) when the deadline passes.
        """
        self.want_topics([topic])
        deadline = time.monotonic() + timeout_s
        backoff = self.config["retry.backoff.ms"] / 1000
        first = True
        while True:
            info = self.metadata.topics.get(topic)
            if info is not None and not (first and refresh) and self._usable(info):
                return info
            first = False
            response = await self.refresh_metadata([topic])
            info = self.metadata.topics.get(topic)
            if info is not None and self._usable(info):
                return info
            code = next(
                (t.error_code for t in response.topics or [] if t.name == topic),
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            )
            if code == ErrorCode.NONE:
                code = ErrorCode.LEADER_NOT_AVAILABLE
            err = error_for(code)
            if not err.retriable or time.monotonic() + backoff > deadline:
                if isinstance(err, UnknownTopicOrPartitionError):
                    raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
                raise error_for(code, f"topic {topic!r}: {err}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config["retry.backoff.max.ms"] / 1000)

    def _usable(self, info: TopicInfo) -> bool:
        return bool(info.partitions) and all(
            p.leader >= 0 and p.leader in self.metadata.brokers for p in info.partitions.values()
        )

    def maybe_stale(self) -> bool:
        age = time.monotonic() - self.metadata.updated
        return age * 1000 > self.config["metadata.max.age.ms"]
