"""KIP-848 group membership: the ``consumer`` protocol's ConsumerGroupHeartbeat loop.

The broker computes assignments; the member sends its subscription and the partitions it
owns on heartbeats, and reconciles towards the target assignment (revoke first, then add)
inside ``ensure_active()``, which the consumer calls from poll(). Loop-owned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid

from ..protocol._generated.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from ..protocol.errors import ErrorCode
from ._group import GroupCoordinatorClient, GroupOwner
from .cluster import KafkaClient, TopicPartition
from .config import ClientConfig
from .errors import COORDINATOR_CODES, KafkaError, error_for

__all__ = ["ConsumerProtocolMember"]

log = logging.getLogger("metamorphostreams.client")


class ConsumerProtocolMember(GroupCoordinatorClient):
    """A member of a KIP-848 ``consumer`` group: heartbeats carry subscription and assignment."""

    def __init__(
        self, client: KafkaClient, config: ClientConfig, owner: GroupOwner, topics: set[str]
    ) -> None:
        super().__init__(client, config)
        self.owner = owner
        self.topics = set(topics)
        self.generation = 0
        self.member_id = _random_member_id()
        self.target: set[tuple[uuid.UUID, int]] | None = None
        self.interval = config["heartbeat.interval.ms"] / 1000
        self._send_subscription = True
        self._send_owned = True
        self._joined = False
        self._fenced = False
        self._kick = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self.error: KafkaError | None = None

    @property
    def state(self) -> str:
        return "Stable" if self._joined and self.target is None else "Reconciling"

    def set_topics(self, topics: set[str]) -> None:
        if topics != self.topics:
            self.topics = set(topics)
            self._send_subscription = True
            self._kick.set()

    async def ensure_active(self) -> None:
        if self._heartbeat is None:
            self.client.want_topics(self.topics)
            self._heartbeat = asyncio.ensure_future(self._heartbeat_loop())
            await self._first.wait()
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        if self._fenced:
            self._fenced = False
            owned = self.owner.group_assigned()
            if owned:
                await self.owner.group_revoke(owned, True)
        if self.target is None:
            return
        target = await self._resolve(self.target)
        if target is None:
            return
        self.target = None
        owned = self.owner.group_assigned()
        if owned - target:
            await self.owner.group_revoke(owned - target, False)
        if target - owned:
            await self.owner.group_add(target - owned)
        self._send_owned = True
        self._kick.set()

    async def _resolve(self, ids: set[tuple[uuid.UUID, int]]) -> set[TopicPartition] | None:
        names = self.client.metadata.topic_names
        if any(tid not in names for tid, _ in ids):
            await self.client.refresh_metadata(self.topics)
            if any(tid not in names for tid, _ in ids):
                return None
        return {TopicPartition(names[tid], p) for tid, p in ids}

    def _owned_ids(self) -> list[ConsumerGroupHeartbeatRequest.TopicPartitions]:
        by_id: dict[uuid.UUID, list[int]] = {}
        topics = self.client.metadata.topics
        for tp in sorted(self.owner.group_assigned()):
            info = topics.get(tp.topic)
            if info is not None:
                by_id.setdefault(info.topic_id, []).append(tp.partition)
        return [
            ConsumerGroupHeartbeatRequest.TopicPartitions(topic_id=t, partitions=p)
            for t, p in by_id.items()
        ]

    async def _heartbeat_loop(self) -> None:
        backoff = self.config["retry.backoff.ms"] / 1000
        while True:
            request = ConsumerGroupHeartbeatRequest(
                group_id=self.group_id,
                member_id=self.member_id,
                member_epoch=self.generation,
                instance_id=self.config["group.instance.id"],
                rack_id=self.config["client.rack"] or None,
                rebalance_timeout_ms=self.config["max.poll.interval.ms"],
                subscribed_topic_names=sorted(self.topics) if self._send_subscription else None,
                server_assignor=self.config["group.remote.assignor"],
                topic_partitions=self._owned_ids() if self._send_owned else None,
            )
            try:
                response: ConsumerGroupHeartbeatResponse = await self.send(request)
            except KafkaError as exc:
                if not self._first.is_set() and not exc.retriable:
                    self.error = exc
                    self._first.set()
                    return
                await asyncio.sleep(backoff)
                continue
            except Exception:
                log.exception("group %s: heartbeat failed", self.group_id)
                await asyncio.sleep(backoff)
                continue
            code = response.error_code
            if code == ErrorCode.NONE:
                self._joined = True
                self._send_subscription = self._send_owned = False
                if response.member_id:
                    self.member_id = response.member_id
                self.generation = response.member_epoch
                if response.heartbeat_interval_ms > 0:
                    self.interval = response.heartbeat_interval_ms / 1000
                if response.assignment is not None:
                    self.target = {
                        (tp.topic_id, p)
                        for tp in response.assignment.topic_partitions or []
                        for p in tp.partitions or []
                    }
                    self.owner.group_wake()
                self._first.set()
            elif code in COORDINATOR_CODES or code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                self.coordinator_dead()
                await asyncio.sleep(backoff)
                continue
            elif code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH):
                self.generation = 0
                self._fenced = True
                self._send_subscription = self._send_owned = True
                self.owner.group_wake()
                continue
            else:
                self.error = error_for(code, response.error_message or None)
                self._first.set()
                self.owner.group_wake()
                await asyncio.sleep(max(self.interval, backoff))
                continue
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)

    async def leave(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if not self._joined:
            return
        request = ConsumerGroupHeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=-2 if self.config["group.instance.id"] else -1,
            instance_id=self.config["group.instance.id"],
        )
        with contextlib.suppress(KafkaError):
            await self.send(request, timeout_s=5)
        self._joined = False


def _random_member_id() -> str:
    """A KIP-848 member id: a random UUID in Kafka's URL-safe base64 form."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
