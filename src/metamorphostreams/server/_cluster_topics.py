"""A cluster broker's topic administration: placement, creation (with the partitions'
states in the same ZooKeeper transaction), partition growth, internal topics and deletion
requests. Part of ``ClusterRuntime`` (a mixin over its state); ZooKeeper calls run on its
worker thread, never on the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ..cluster.metadata import TopicInfo
from ..cluster.placement import assign_replicas
from ..cluster.zk_partitions import current_controller_epoch, partition_state_ops
from ..cluster.zk_store import TopicAlreadyMarkedForDeletion, TopicExistsError, UnknownTopicError
from ..cluster.zk_txn import commit
from ..protocol.errors import ErrorCode

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from ..cluster import zk_paths as zp
    from ..cluster.zk_store import ZkMetadataStore
    from .broker import Broker

log = logging.getLogger("metamorphostreams.server")

DELETE_WAIT_POLL_S = 0.05


T = TypeVar("T")


class ClusterTopicAdmin:
    """The topic-admin methods of ``ClusterRuntime``, over these parts of its state."""

    broker: Broker
    client: KazooClient
    store: ZkMetadataStore
    brokers: dict[int, zp.BrokerRegistration]
    _zk: ThreadPoolExecutor
    _creating: set[str]

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the ZooKeeper worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._zk, fn, *args)

    def placement(
        self,
        partitions: int,
        assignment: dict[int, list[int]] | None = None,
        replication_factor: int = 1,
    ) -> dict[int, list[int]]:
        """Kafka's replica placement over the live brokers (rack-aware when they all have a
        rack). Raises PlacementError."""
        if assignment is not None:
            return assignment
        racks = {b: reg.rack for b, reg in self.brokers.items()}
        return assign_replicas(racks, partitions, replication_factor)

    async def create_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str],
        assignment: dict[int, list[int]] | None = None,
        *,
        replication_factor: int = 1,
    ) -> TopicInfo:
        """Place the partitions, write the topic and its partition states in one transaction.
        Raises TopicExistsError, PlacementError."""
        placed = self.placement(partitions, assignment, replication_factor)
        live = set(self.brokers)

        def create() -> TopicInfo:
            epoch = current_controller_epoch(self.client)
            ops = partition_state_ops(name, placed, epoch, with_root=True, live=live)
            return self.store.create_topic(name, partitions, configs, placed, extra_ops=ops)

        info = await self._run(create)
        log.info("created topic %s: %d partitions on brokers %s", name, partitions, placed)
        return info

    async def add_partitions(
        self, name: str, total: int, assignment: list[list[int]] | None
    ) -> None:
        """CreatePartitions: place partitions ``current .. total-1`` (Kafka's placement,
        continuing from where the topic's partition 0 starts, at its replication factor),
        create their states, then extend the topic's assignment. Raises PlacementError."""
        current = dict(self.store.assignments[name].partitions)
        first = len(current)
        if assignment is None:
            existing = current[0]
            racks = {b: reg.rack for b, reg in self.brokers.items()}
            start = sorted(racks).index(existing[0]) if existing[0] in racks else None
            added = assign_replicas(
                racks, total - first, len(existing), first_partition=first, start_index=start
            )
        else:
            added = {first + i: list(replicas) for i, replicas in enumerate(assignment)}
        live = set(self.brokers)

        def write() -> None:
            epoch = current_controller_epoch(self.client)
            commit(self.client, partition_state_ops(name, added, epoch, with_root=False, live=live))
            self.store.set_partition_count(name, total, added)

        await self._run(write)
        log.info("added partitions to %s: %s", name, added)

    def internal_replication_factor(self, name: str) -> int:
        """``offsets.topic.replication.factor`` / ``transaction.state.log.replication.factor``
        (default 3), lowered to the live broker count with a warning."""
        from .group_runtime import OFFSETS_TOPIC

        key = (
            "offsets.topic.replication.factor"
            if name == OFFSETS_TOPIC
            else "transaction.state.log.replication.factor"
        )
        wanted = int(self.broker.config.props.get(key, "3"))
        live = len(self.brokers)
        if wanted > live:
            log.warning(
                "%s=%d but only %d broker(s) are registered: %s gets replication factor %d",
                key,
                wanted,
                live,
                name,
                live,
            )
            return live
        return wanted

    def ensure_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str],
        replication_factor: int | None = None,
    ) -> None:
        """Create a topic in the background if it does not exist yet: an internal one at its
        replication factor (None), or an auto-created one at ``replication_factor``."""
        if name in self.store.topics or name in self._creating or not self.brokers:
            return
        self._creating.add(name)

        async def create() -> None:
            try:
                await self.create_topic(
                    name,
                    partitions,
                    configs,
                    replication_factor=self.internal_replication_factor(name)
                    if replication_factor is None
                    else replication_factor,
                )
            except TopicExistsError:
                pass
            except Exception:
                log.exception("cannot create %s", name)
            finally:
                self._creating.discard(name)

        asyncio.get_running_loop().create_task(create())

    async def delete_topic(self, name: str, timeout_ms: int) -> ErrorCode:
        """Ask the controller to delete ``name`` and wait until the deletion is seen."""
        try:
            await self._run(self.store.mark_topic_for_deletion, name)
        except UnknownTopicError:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        except TopicAlreadyMarkedForDeletion:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        while name in self.store.topics:
            if loop.time() >= deadline:
                return ErrorCode.REQUEST_TIMED_OUT
            await asyncio.sleep(DELETE_WAIT_POLL_S)
        return ErrorCode.NONE
