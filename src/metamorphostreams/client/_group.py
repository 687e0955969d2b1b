"""Consumer group membership: the coordinator, committed offsets, the classic protocol.

``GroupCoordinatorClient`` finds the group coordinator and commits/fetches offsets.
``ClassicMember`` runs Kafka's classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup;
the leader runs the client-side assignor); ``_kip848.ConsumerProtocolMember`` runs KIP-848
(ConsumerGroupHeartbeat; the broker assigns, the member reconciles). Both apply assignment
changes through the consumer (``GroupOwner``), which runs rebalance callbacks, and both
change the assignment only inside ``ensure_active()``, which the consumer calls from poll().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ..protocol._generated.consumer_protocol_assignment import ConsumerProtocolAssignment
from ..protocol._generated.consumer_protocol_subscription import ConsumerProtocolSubscription
from ..protocol._generated.find_coordinator import FindCoordinatorRequest
from ..protocol._generated.heartbeat import HeartbeatRequest
from ..protocol._generated.join_group import JoinGroupRequest, JoinGroupResponse
from ..protocol._generated.leave_group import LeaveGroupRequest
from ..protocol._generated.offset_commit import OffsetCommitRequest
from ..protocol._generated.offset_fetch import OffsetFetchRequest
from ..protocol._generated.sync_group import SyncGroupRequest
from ..protocol.errors import ErrorCode
from .assignors import Assignor, MemberSubscription, assignor_for
from .cluster import BrokerInfo, KafkaClient, TopicPartition
from .config import ClientConfig
from .errors import (
    COORDINATOR_CODES,
    CommitFailedError,
    ConfigError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    error_for,
)

log = logging.getLogger("metamorphostreams.client")

GROUP_KEY = 0  # FindCoordinator key types
TRANSACTION_KEY = 1
CONSUMER_PROTOCOL_VERSION = 3  # ConsumerProtocolSubscription/Assignment: owned partitions, rack
LANE = "coordinator"
_VERSION_PREFIX = struct.Struct(">h")
REBALANCE_CODES = frozenset(
    {
        ErrorCode.ILLEGAL_GENERATION,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.REBALANCE_IN_PROGRESS,
        ErrorCode.FENCED_INSTANCE_ID,
        ErrorCode.STALE_MEMBER_EPOCH,
        ErrorCode.FENCED_MEMBER_EPOCH,
    }
)


class GroupOwner(Protocol):
    """What a group member needs from its consumer."""

    def group_assigned(self) -> set[TopicPartition]: ...

    async def group_revoke(self, partitions: set[TopicPartition], lost: bool) -> None: ...

    async def group_add(self, partitions: set[TopicPartition]) -> None: ...

    def group_wake(self) -> None: ...

    def group_poll_age(self) -> float: ...


def encode_versioned(message: Any, version: int) -> bytes:
    return _VERSION_PREFIX.pack(version) + message.to_bytes(version)


def decode_versioned(cls: Any, data: bytes | memoryview | None, latest: int) -> Any:
    if data is None or len(data) < 2:
        return cls()
    (version,) = _VERSION_PREFIX.unpack_from(data)
    return cls.decode(memoryview(data)[2:], min(max(version, 0), latest))


async def find_coordinator(
    client: KafkaClient, key: str, key_type: int, *, timeout_s: float, backoff_s: float
) -> int:
    """FindCoordinator for a group id (GROUP_KEY) or a transactional id (TRANSACTION_KEY):
    the coordinator's node id, its address added to the metadata if it was not there.
    Retries retriable errors until ``timeout_s``; raises the error met otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        version = await client.api_version(FindCoordinatorRequest.API_KEY)
        request = FindCoordinatorRequest(key=key, key_type=key_type)
        if version >= 4:
            request.coordinator_keys = [key]
        response = await client.send(None, request, version=version)
        if version >= 4:
            c = response.coordinators[0]
            code, node, host, port = c.error_code, c.node_id, c.host, c.port
        else:
            code, node = response.error_code, response.node_id
            host, port = response.host, response.port
        if code == ErrorCode.NONE:
            if node not in client.metadata.brokers:
                client.metadata.brokers[node] = BrokerInfo(node, host, port)
            return int(node)
        err = error_for(code)
        if not err.retriable or time.monotonic() + backoff_s > deadline:
            raise err
        await asyncio.sleep(backoff_s)


class GroupCoordinatorClient:
    """Finds the group's coordinator; commits and fetches offsets. Loop-owned."""

    def __init__(
        self, client: KafkaClient, config: ClientConfig, group_id: str | None = None
    ) -> None:
        self.client = client
        self.config = config
        self.group_id: str = group_id or config["group.id"]
        self.coordinator: int | None = None
        self.member_id = ""
        self.generation = -1  # classic generation, or KIP-848 member epoch
        self.api_timeout_s = config["default.api.timeout.ms"] / 1000

    async def coordinator_node(self) -> int:
        if self.coordinator is None:
            self.coordinator = await find_coordinator(
                self.client,
                self.group_id,
                GROUP_KEY,
                timeout_s=self.api_timeout_s,
                backoff_s=self.config["retry.backoff.ms"] / 1000,
            )
        return self.coordinator

    def coordinator_dead(self) -> None:
        self.coordinator = None

    def commit_failed(self, code: int) -> None:
        """A commit said the membership is stale; members rejoin (subclasses)."""

    async def send(self, request: Any, timeout_s: float | None = None) -> Any:
        node = await self.coordinator_node()
        try:
            return await self.client.send(node, request, lane=LANE, timeout_s=timeout_s)
        except (KafkaConnectionError, KafkaTimeoutError):
            self.coordinator_dead()
            raise

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """OffsetCommit, retried on retriable errors; CommitFailedError if the group moved on."""
        if not offsets:
            return
        by_topic: dict[str, list[OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
        for tp, offset in sorted(offsets.items()):
            by_topic.setdefault(tp.topic, []).append(
                OffsetCommitRequest.OffsetCommitRequestPartition(
                    partition_index=tp.partition, committed_offset=offset, committed_metadata=""
                )
            )
        request = OffsetCommitRequest(
            group_id=self.group_id,
            generation_id_or_member_epoch=self.generation,
            member_id=self.member_id,
            group_instance_id=self.config.get("group.instance.id"),
            topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(name=t, partitions=p)
                for t, p in by_topic.items()
            ],
        )
        await self._retrying(self._commit_once, request)

    async def _commit_once(self, request: OffsetCommitRequest) -> None:
        response = await self.send(request)
        for topic in response.topics or []:
            for part in topic.partitions or []:
                code = part.error_code
                if code == ErrorCode.NONE:
                    continue
                if code in REBALANCE_CODES:
                    self.commit_failed(code)
                    raise CommitFailedError(
                        f"commit of {topic.name}-{part.partition_index} failed: the group "
                        f"rebalanced ({ErrorCode(code).name})"
                    )
                raise error_for(code, f"commit of {topic.name}-{part.partition_index} failed")

    async def fetch_committed(
        self, partitions: Iterable[TopicPartition] | None, *, require_stable: bool = False
    ) -> dict[TopicPartition, int | None]:
        """Committed offsets (None: nothing committed); partitions None: all the group has."""
        tps = sorted(set(partitions)) if partitions is not None else None
        if tps is not None and not tps:
            return {}
        result: dict[TopicPartition, int | None] = await self._retrying(
            self._fetch_once, tps, require_stable
        )
        return result

    async def _fetch_once(
        self, tps: list[TopicPartition] | None, require_stable: bool
    ) -> dict[TopicPartition, int | None]:
        node = await self.coordinator_node()
        version = await self.client.api_version(OffsetFetchRequest.API_KEY, node)
        by_topic: dict[str, list[int]] = {}
        for tp in tps or ():
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        request = OffsetFetchRequest(group_id=self.group_id, require_stable=require_stable)
        if version >= 8:
            request.groups = [
                OffsetFetchRequest.OffsetFetchRequestGroup(
                    group_id=self.group_id,
                    member_id=self.member_id or None,
                    member_epoch=self.generation if self.member_id else -1,
                    topics=None
                    if tps is None
                    else [
                        OffsetFetchRequest.OffsetFetchRequestTopics(name=t, partition_indexes=p)
                        for t, p in by_topic.items()
                    ],
                )
            ]
        else:
            request.topics = (
                None
                if tps is None
                else [
                    OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=p)
                    for t, p in by_topic.items()
                ]
            )
        response = await self.send(request)
        if version >= 8:
            group = response.groups[0]
            code, topics = group.error_code, group.topics
        else:
            code, topics = response.error_code, response.topics
        if code != ErrorCode.NONE:
            raise error_for(code, f"fetching committed offsets of group {self.group_id!r}")
        out: dict[TopicPartition, int | None] = dict.fromkeys(tps or ())
        for topic in topics or []:
            for part in topic.partitions or []:
                if part.error_code != ErrorCode.NONE:
                    raise error_for(part.error_code, f"committed offset of {topic.name}")
                tp = TopicPartition(topic.name, part.partition_index)
                out[tp] = part.committed_offset if part.committed_offset >= 0 else None
        return out

    async def _retrying(self, fn: Any, *args: Any) -> Any:
        deadline = time.monotonic() + self.api_timeout_s
        backoff = self.config["retry.backoff.ms"] / 1000
        while True:
            try:
                return await fn(*args)
            except KafkaError as exc:
                if exc.code in COORDINATOR_CODES or isinstance(exc, KafkaConnectionError):
                    self.coordinator_dead()
                if isinstance(exc, CommitFailedError):
                    raise
                retriable = exc.retriable or isinstance(exc, KafkaConnectionError)
                if not retriable or time.monotonic() + backoff > deadline:
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config["retry.backoff.max.ms"] / 1000)


class ClassicMember(GroupCoordinatorClient):
    """A member of a classic-protocol group (KIP-429 cooperative when every assignor is)."""

    def __init__(
        self, client: KafkaClient, config: ClientConfig, owner: GroupOwner, topics: set[str]
    ) -> None:
        super().__init__(client, config)
        try:
            self.assignors: list[Assignor] = [
                assignor_for(n) for n in config["partition.assignment.strategy"]
            ]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not self.assignors:
            raise ConfigError("partition.assignment.strategy must name at least one assignor")
        self.cooperative = all(a.cooperative for a in self.assignors)
        self.owner = owner
        self.topics = set(topics)
        self.need_join = True
        self.lost = False
        self.protocol: str | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stable = False
        self._counts: dict[str, int] = {}  # partitions per subscribed topic at the last join

    @property
    def state(self) -> str:
        return "Stable" if self._stable and not self.need_join else "PreparingRebalance"

    def set_topics(self, topics: set[str]) -> None:
        if topics != self.topics:
            self.topics = set(topics)
            self.need_join = True
            self.owner.group_wake()

    def _partitions_changed(self) -> bool:
        now = self._partition_counts()
        return any(t in now and now[t] != n for t, n in self._counts.items())

    def _partition_counts(self) -> dict[str, int]:
        topics = self.client.metadata.topics
        return {t: len(topics[t].partitions) for t in self.topics if t in topics}

    def commit_failed(self, code: int) -> None:
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
            self.need_join = True
            self.owner.group_wake()

    async def ensure_active(self) -> None:
        """Join (or rejoin) the group if needed and apply the new assignment."""
        if not self.need_join and self._partitions_changed():
            log.info("group %s: subscribed topics changed partitions; rejoining", self.group_id)
            self.need_join = True
        while self.need_join:
            owned = self.owner.group_assigned()
            if self.lost and owned:
                await self.owner.group_revoke(owned, True)
            elif not self.cooperative and owned:
                await self.owner.group_revoke(owned, False)
            self.lost = False
            self._stable = False
            self.need_join = False
            assignment = await self._join_and_sync()
            with contextlib.suppress(KafkaError):
                await self.client.refresh_metadata(self.topics)
            self._counts = self._partition_counts()
            self._stable = True
            self._start_heartbeat()
            owned = self.owner.group_assigned()
            revoked = owned - assignment
            if revoked:
                await self.owner.group_revoke(revoked, False)
                if self.cooperative:
                    self.need_join = True  # hand the revoked partitions over (KIP-429)
            await self.owner.group_add(assignment - owned)

    def _subscription(self) -> bytes:
        owned = self.owner.group_assigned() if self.cooperative else set()
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(owned):
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        sub = ConsumerProtocolSubscription(
            topics=sorted(self.topics),
            user_data=None,
            owned_partitions=[
                ConsumerProtocolSubscription.TopicPartition(topic=t, partitions=p)
                for t, p in by_topic.items()
            ],
            generation_id=self.generation,
            rack_id=self.config["client.rack"] or None,
        )
        return encode_versioned(sub, CONSUMER_PROTOCOL_VERSION)

    async def _join_and_sync(self) -> set[TopicPartition]:
        rebalance_ms = self.config["max.poll.interval.ms"]
        timeout = rebalance_ms / 1000 + 5
        backoff = self.config["retry.backoff.ms"] / 1000
        while True:
            request = JoinGroupRequest(
                group_id=self.group_id,
                session_timeout_ms=self.config["session.timeout.ms"],
                rebalance_timeout_ms=rebalance_ms,
                member_id=self.member_id,
                group_instance_id=self.config["group.instance.id"],
                protocol_type="consumer",
                protocols=[
                    JoinGroupRequest.JoinGroupRequestProtocol(
                        name=a.name, metadata=self._subscription()
                    )
                    for a in self.assignors
                ],
                reason=None,
            )
            try:
                joined: JoinGroupResponse = await self.send(request, timeout)
            except (KafkaConnectionError, KafkaTimeoutError):
                await asyncio.sleep(backoff)
                continue
            code = joined.error_code
            if code == ErrorCode.MEMBER_ID_REQUIRED:
                self.member_id = joined.member_id
                continue
            if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
                self.member_id, self.generation = "", -1
                continue
            if code in COORDINATOR_CODES:
                self.coordinator_dead()
                await asyncio.sleep(backoff)
                continue
            if code in (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.REBALANCE_IN_PROGRESS):
                await asyncio.sleep(backoff)
                continue
            if code != ErrorCode.NONE:
                raise error_for(code, f"joining group {self.group_id!r}")
            self.member_id = joined.member_id
            self.generation = joined.generation_id
            self.protocol = joined.protocol_name
            assignments: list[SyncGroupRequest.SyncGroupRequestAssignment] = []
            if joined.leader == joined.member_id and not joined.skip_assignment:
                assignments = await self._lead(joined)
            sync = SyncGroupRequest(
                group_id=self.group_id,
                generation_id=self.generation,
                member_id=self.member_id,
                group_instance_id=self.config["group.instance.id"],
                protocol_type="consumer",
                protocol_name=joined.protocol_name,
                assignments=assignments,
            )
            try:
                synced = await self.send(sync, timeout)
            except (KafkaConnectionError, KafkaTimeoutError):
                await asyncio.sleep(backoff)
                continue
            code = synced.error_code
            if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
                self.member_id, self.generation = "", -1
                continue
            if code in COORDINATOR_CODES:
                self.coordinator_dead()
                continue
            if code == ErrorCode.REBALANCE_IN_PROGRESS:
                continue
            if code != ErrorCode.NONE:
                raise error_for(code, f"syncing group {self.group_id!r}")
            assignment = decode_versioned(
                ConsumerProtocolAssignment, synced.assignment, CONSUMER_PROTOCOL_VERSION
            )
            log.debug("group %s generation %d: %s", self.group_id, self.generation, assignment)
            return {
                TopicPartition(tp.topic, p)
                for tp in assignment.assigned_partitions or []
                for p in tp.partitions or []
            }

    async def _lead(
        self, joined: JoinGroupResponse
    ) -> list[SyncGroupRequest.SyncGroupRequestAssignment]:
        assignor = next((a for a in self.assignors if a.name == joined.protocol_name), None)
        if assignor is None:
            raise ConfigError(f"the group chose assignor {joined.protocol_name!r}, which we lack")
        members: list[MemberSubscription] = []
        for m in joined.members or []:
            sub = decode_versioned(
                ConsumerProtocolSubscription, m.metadata, CONSUMER_PROTOCOL_VERSION
            )
            members.append(
                MemberSubscription(
                    m.member_id,
                    list(sub.topics or []),
                    [(tp.topic, p) for tp in sub.owned_partitions or [] for p in tp.partitions],
                    sub.generation_id,
                    m.group_instance_id,
                    sub.rack_id,
                )
            )
        topics = {t for m in members for t in m.topics}
        await self.client.refresh_metadata(topics)
        counts = {
            t: len(info.partitions)
            for t in topics
            if (info := self.client.metadata.topics.get(t)) is not None
        }
        result = assignor.assign(counts, members)
        out = []
        for member_id, tps in result.items():
            by_topic: dict[str, list[int]] = {}
            for topic, p in sorted(tps):
                by_topic.setdefault(topic, []).append(p)
            assignment = ConsumerProtocolAssignment(
                assigned_partitions=[
                    ConsumerProtocolAssignment.TopicPartition(topic=t, partitions=ps)
                    for t, ps in by_topic.items()
                ],
                user_data=None,
            )
            out.append(
                SyncGroupRequest.SyncGroupRequestAssignment(
                    member_id=member_id,
                    assignment=encode_versioned(assignment, CONSUMER_PROTOCOL_VERSION),
                )
            )
        return out

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._heartbeat_loop())

    async def _heartbeat_loop(self) -> None:
        interval = self.config["heartbeat.interval.ms"] / 1000
        max_poll_interval = self.config["max.poll.interval.ms"] / 1000
        while True:
            await asyncio.sleep(interval)
            if self.member_id and self.owner.group_poll_age() > max_poll_interval:
                # As Kafka's consumer does: an application that stopped polling leaves the
                # group, so its partitions go to members that make progress.
                log.warning(
                    "group %s: poll() not called for max.poll.interval.ms (%d); leaving",
                    self.group_id,
                    max_poll_interval * 1000,
                )
                await self._send_leave()
                self.lost = True
                self.need_join = True
                self._stable = False
                self.owner.group_wake()
                continue
            if not self._stable or self.need_join:
                continue
            request = HeartbeatRequest(
                group_id=self.group_id,
                generation_id=self.generation,
                member_id=self.member_id,
                group_instance_id=self.config["group.instance.id"],
            )
            try:
                response = await self.send(request)
            except KafkaError:
                continue
            except Exception:
                # A dead heartbeat task would leave the group waiting on us for a whole
                # rebalance timeout: log our bug and keep beating.
                log.exception("group %s: heartbeat failed", self.group_id)
                continue
            code = response.error_code
            if code == ErrorCode.NONE:
                continue
            if code in COORDINATOR_CODES:
                self.coordinator_dead()
                continue
            if code in REBALANCE_CODES:
                if code != ErrorCode.REBALANCE_IN_PROGRESS:
                    self.lost = True
                    self.member_id, self.generation = "", -1
                self.need_join = True
                self.owner.group_wake()

    async def leave(self) -> None:
        """LeaveGroup (dynamic members only, as Kafka does), then forget the membership."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if not self.member_id or self.config["group.instance.id"]:
            return
        await self._send_leave()
        self._stable = False

    async def _send_leave(self) -> None:
        request = LeaveGroupRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            members=[LeaveGroupRequest.MemberIdentity(member_id=self.member_id, reason=None)],
        )
        with contextlib.suppress(KafkaError):
            await self.send(request, timeout_s=5)
        self.member_id, self.generation = "", -1
