"""The metadata store of a broker in a cluster: Kafka's znodes in ZooKeeper, through kazoo.

Same facts as the standalone ``MetadataStore`` (see ``store.MetadataStoreProtocol``), kept
where Kafka's ZooKeeper-era brokers kept them (``zk_paths``):

- cluster id: ``/cluster/id``, created once by whichever broker comes first;
- topics: ``/brokers/topics/T`` (replica assignment, topic id) with ``/config/topics/T``
  (overrides), both created in one ZooKeeper transaction; deletion goes through
  ``/admin/delete_topics/T`` as Kafka's did (until a controller exists to act on the request,
  the requesting store completes it itself: ``complete_topic_deletion``);
- config changes: ``/config/topics/T`` plus a ``/config/changes/config_change_N`` notification,
  in one transaction;
- producer ids: blocks of 1000 claimed from ``/latest_producer_id_block`` by a version-checked
  write, retried when another broker claimed a block first (Kafka's ZkProducerIdManager), so two
  brokers never hand out the same id.

Threads. kazoo runs its own threads (connection, callbacks). Every method that talks to
ZooKeeper blocks until ZooKeeper answers and is meant to run off the event loop
(``await loop.run_in_executor(None, store.create_topic, ...)``). The in-memory view that the
loop reads (``topics``, ``cluster_id``) is changed only by functions handed to ``deliver``:
the broker passes ``loop.call_soon_threadsafe``, so the view changes on the loop thread, and a
write's own update is queued before its executor future completes (the awaiting coroutine sees
it). The default ``deliver`` runs the change at once, in whichever thread made it (tests).
After ``watch()``, changes made by other brokers reach the view the same way.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from . import zk_paths as zp
from .metadata import (
    PRODUCER_ID_BLOCK_SIZE,
    TopicInfo,
    collision_key,
    new_kafka_uuid,
    uuid_to_kafka,
)
from .zk_txn import CreateOp, Op, SetDataOp, TransactionFailed, commit

__all__ = [
    "Deliver",
    "TopicAlreadyMarkedForDeletion",
    "TopicExistsError",
    "UnknownTopicError",
    "ZkMetadataStore",
]

log = logging.getLogger(__name__)

Deliver = Callable[[Callable[[], None]], None]
"""Runs a view change where the view's readers live: ``loop.call_soon_threadsafe``."""


def _run_now(change: Callable[[], None]) -> None:
    change()


class TopicExistsError(Exception):
    """Kafka's TopicExistsException: /brokers/topics/T is already there."""


class UnknownTopicError(Exception):
    """Kafka's UnknownTopicOrPartitionException: no /brokers/topics/T."""


class TopicAlreadyMarkedForDeletion(Exception):
    """Kafka's TopicAlreadyMarkedForDeletionException: /admin/delete_topics/T exists."""


class ZkMetadataStore:
    """Topics, configs, cluster id and producer-id blocks in ZooKeeper.

    Blocking methods are for a worker thread; ``topics``/``cluster_id`` are a view changed only
    through ``deliver`` (see the module's docstring). Not safe to call from several threads at
    once except ``allocate_producer_id``, which takes a lock.
    """

    def __init__(
        self,
        client: KazooClient,
        broker_id: int,
        *,
        deliver: Deliver = _run_now,
        producer_id_block_size: int = PRODUCER_ID_BLOCK_SIZE,
    ) -> None:
        self.client = client
        self.broker_id = broker_id
        self.deliver = deliver
        self.topics: dict[str, TopicInfo] = {}
        self.assignments: dict[str, zp.TopicAssignment] = {}
        self.cluster_id = ""
        self._block_size = producer_id_block_size
        self._pid_lock = threading.Lock()
        self._next_producer_id = 0
        self._block_end = -1  # inclusive; -1: no block yet
        self._prefetched_block: zp.ProducerIdBlock | None = None
        self._prefetching = False
        self.background: Callable[[Callable[[], None]], object] | None = None
        self._watching = False
        self._watched_topics: set[str] = set()
        self._last_change_seen = ""

    # -- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        """Create Kafka's persistent paths if missing and load every topic. Blocking."""
        for path in zp.PERSISTENT_PATHS:
            self.client.ensure_path(path)
        self.refresh()

    def refresh(self) -> None:
        """Re-read every topic from ZooKeeper into the view. Blocking."""
        names = self.client.get_children(zp.TOPICS_PATH)
        loaded = {name: self._read_topic(name) for name in names}
        found = {n: t for n, t in loaded.items() if t is not None}

        def apply() -> None:
            self.topics = {n: info for n, (info, _) in found.items()}
            self.assignments = {n: a for n, (_, a) in found.items()}

        self.deliver(apply)

    def _read_topic(self, name: str) -> tuple[TopicInfo, zp.TopicAssignment] | None:
        try:
            data, _ = self.client.get(zp.topic_path(name))
        except NoNodeError:
            return None
        assignment = zp.TopicAssignment.decode(name, data)
        try:
            config_data, _ = self.client.get(zp.topic_config_path(name))
        except NoNodeError:
            config_data = None
        # A topic written by a Kafka older than 2.8 has no id; Kafka's controller adds one.
        topic_id = assignment.topic_id or uuid.UUID(int=0)
        info = TopicInfo(
            name, topic_id, len(assignment.partitions), zp.decode_entity_config(config_data)
        )
        return info, assignment

    def _publish(self, name: str, found: tuple[TopicInfo, zp.TopicAssignment] | None) -> None:
        def apply() -> None:
            if found is None:
                self.topics.pop(name, None)
                self.assignments.pop(name, None)
            else:
                self.topics[name], self.assignments[name] = found

        self.deliver(apply)

    # -- watches --------------------------------------------------------------------------

    def watch(self) -> None:
        """Follow other brokers' changes: topics created, deleted, grown, reconfigured.

        Callbacks run on kazoo's callback thread, read what changed (blocking there is what
        kazoo's own recipes do) and hand the view change to ``deliver``.
        """
        if self._watching:
            return
        self._watching = True
        ChildrenWatch(self.client, zp.TOPICS_PATH, self._on_topics)
        changes = self.client.get_children(zp.CONFIG_CHANGES_PATH)
        self._last_change_seen = max(changes, default="")
        ChildrenWatch(self.client, zp.CONFIG_CHANGES_PATH, self._on_config_changes)

    def _on_topics(self, names: list[str]) -> bool:
        current = set(names)
        for name in current - self._watched_topics:
            self._watched_topics.add(name)
            DataWatch(self.client, zp.topic_path(name), self._topic_watcher(name))
        for name in self._watched_topics - current:
            self._watched_topics.discard(name)
            self._publish(name, None)
        return self._watching

    def _topic_watcher(self, name: str) -> Callable[..., bool]:
        def on_data(data: bytes | None, stat: object, event: object = None) -> bool:
            if data is None:
                self._publish(name, None)
                return False  # the znode is gone: a re-created topic gets a new watch
            self._publish(name, self._read_topic(name))
            return self._watching

        return on_data

    def _on_config_changes(self, children: list[str]) -> bool:
        for child in sorted(children):
            if child <= self._last_change_seen:
                continue
            self._last_change_seen = child
            try:
                data, _ = self.client.get(f"{zp.CONFIG_CHANGES_PATH}/{child}")
                entity_type, name = zp.decode_config_change(data)
            except (NoNodeError, zp.ZkDataError):
                continue  # purged already, or not a notification we read
            if entity_type == zp.CONFIG_TYPE_TOPIC:
                self._publish(name, self._read_topic(name))
        return self._watching

    def stop_watching(self) -> None:
        self._watching = False  # each watch ends at its next event

    # -- reads (the view) -----------------------------------------------------------------

    def colliding_topic(self, name: str) -> str | None:
        key = collision_key(name)
        for other in self.topics:
            if other != name and collision_key(other) == key:
                return other
        return None

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None

    # -- cluster id -----------------------------------------------------------------------

    def ensure_cluster_id(self, wanted: str = "") -> str:
        """The cluster's id: read /cluster/id, or create it (first broker wins). Blocking."""
        proposed = wanted or uuid_to_kafka(new_kafka_uuid())
        try:
            self.client.create(zp.CLUSTER_ID_PATH, zp.encode_cluster_id(proposed), makepath=True)
            cluster_id = proposed
        except NodeExistsError:
            data, _ = self.client.get(zp.CLUSTER_ID_PATH)
            cluster_id = zp.decode_cluster_id(data)

        def apply() -> None:
            self.cluster_id = cluster_id

        self.deliver(apply)
        return cluster_id

    # -- topics ---------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int,
        configs: dict[str, str],
        assignment: dict[int, list[int]] | None = None,
        extra_ops: Sequence[Op] = (),
    ) -> TopicInfo:
        """Create /config/topics/T and /brokers/topics/T in one transaction. Blocking.

        ``assignment`` maps each partition to its replicas, preferred leader first; without
        it every partition is placed on this broker alone (placement is the controller's).
        ``extra_ops`` join the same transaction (the partition states under the topic).
        """
        if assignment is None:
            assignment = {p: [self.broker_id] for p in range(partitions)}
        if sorted(assignment) != list(range(partitions)):
            raise ValueError(f"assignment must cover partitions 0..{partitions - 1}")
        topic_assignment = zp.TopicAssignment(new_kafka_uuid(), dict(assignment))
        config_data = zp.encode_entity_config(configs)
        ops = [
            CreateOp(zp.topic_config_path(name), config_data),
            CreateOp(zp.topic_path(name), topic_assignment.encode()),
            *extra_ops,
        ]
        try:
            commit(self.client, ops)
        except TransactionFailed as e:
            if not isinstance(e.error, NodeExistsError):
                raise
            if e.index == 1 or self.client.exists(zp.topic_path(name)):
                raise TopicExistsError(f"Topic '{name}' already exists.") from None
            # A config left behind by an earlier topic of that name: Kafka overwrites it too.
            commit(
                self.client,
                [
                    SetDataOp(zp.topic_config_path(name), config_data),
                    CreateOp(zp.topic_path(name), topic_assignment.encode()),
                    *extra_ops,
                ],
            )
        assert topic_assignment.topic_id is not None
        info = TopicInfo(name, topic_assignment.topic_id, partitions, dict(configs))
        self._publish(name, (info, topic_assignment))
        return info

    def mark_topic_for_deletion(self, name: str) -> None:
        """Kafka's AdminZkClient.deleteTopic: create /admin/delete_topics/T. Blocking."""
        if not self.client.exists(zp.topic_path(name)):
            raise UnknownTopicError(f"Topic {name} does not exist")
        try:
            self.client.create(zp.delete_topic_path(name), makepath=True)
        except NodeExistsError:
            raise TopicAlreadyMarkedForDeletion(
                f"topic {name} is already marked for deletion"
            ) from None

    def complete_topic_deletion(self, name: str) -> None:
        """Remove the topic's znodes, then the deletion request (the controller's part)."""
        self.client.delete(zp.topic_path(name), recursive=True)
        try:
            self.client.delete(zp.topic_config_path(name))
        except NoNodeError:
            pass
        try:
            self.client.delete(zp.delete_topic_path(name))
        except NoNodeError:
            pass
        self._publish(name, None)

    def delete_topic(self, name: str) -> None:
        """Request the deletion and, with no controller to act on it yet, carry it out."""
        self.mark_topic_for_deletion(name)
        self.complete_topic_deletion(name)

    def set_partition_count(
        self, name: str, partitions: int, new_assignment: dict[int, list[int]] | None = None
    ) -> None:
        """Add partitions: rewrite /brokers/topics/T with its znode version checked. Blocking.

        New partitions get ``new_assignment`` or this broker alone; a concurrent rewrite by
        another broker makes this one re-read and try again.
        """
        while True:
            data, stat = self.client.get(zp.topic_path(name))
            current = zp.TopicAssignment.decode(name, data)
            have = len(current.partitions)
            if partitions <= have:
                raise ValueError(
                    f"Topic currently has {have} partitions, which is higher than the "
                    f"requested {partitions}."
                )
            added = new_assignment or {p: [self.broker_id] for p in range(have, partitions)}
            if sorted(added) != list(range(have, partitions)):
                raise ValueError(f"new assignment must cover partitions {have}..{partitions - 1}")
            updated = zp.TopicAssignment(
                current.topic_id,
                {**current.partitions, **added},
                current.adding_replicas,
                current.removing_replicas,
            )
            try:
                self.client.set(zp.topic_path(name), updated.encode(), version=stat.version)
            except BadVersionError:
                continue
            self._publish(name, self._read_topic(name))
            return

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's overrides and notify every broker (/config/changes). Blocking."""
        data = zp.encode_entity_config(configs)
        notification = CreateOp(
            zp.config_change_create_path(),
            zp.encode_config_change(zp.CONFIG_TYPE_TOPIC, name),
            sequence=True,
        )
        try:
            commit(self.client, [SetDataOp(zp.topic_config_path(name), data), notification])
        except TransactionFailed as e:
            if not isinstance(e.error, NoNodeError) or e.index != 0:
                raise
            commit(self.client, [CreateOp(zp.topic_config_path(name), data), notification])
        self._publish(name, self._read_topic(name))

    # -- producer ids ---------------------------------------------------------------------

    def allocate_producer_id(self) -> int:
        """The next id of this broker's block; blocks only when it claims a new block.

        With ``background`` set (the broker: a worker thread), the next block is claimed
        there once half of the current one is handed out, so the caller (the event loop)
        does not wait for ZooKeeper unless the prefetch fell behind.
        """
        with self._pid_lock:
            if self._next_producer_id > self._block_end:
                block = self._prefetched_block or self.claim_producer_id_block()
                self._prefetched_block = None
                self._next_producer_id, self._block_end = block.block_start, block.block_end
            pid = self._next_producer_id
            self._next_producer_id += 1
            low = self._block_end - pid < self._block_size // 2
            if low and self.background is not None and not self._prefetching:
                if self._prefetched_block is None:
                    self._prefetching = True
                    self.background(self.prefetch_producer_id_block)
            return pid

    def prefetch_producer_id_block(self) -> None:
        """Claim the block the next ``allocate_producer_id`` will use. Blocking."""
        try:
            block = self.claim_producer_id_block()
            with self._pid_lock:
                if self._prefetched_block is None:
                    self._prefetched_block = block
        finally:
            self._prefetching = False

    def claim_producer_id_block(self) -> zp.ProducerIdBlock:
        """Claim the block after /latest_producer_id_block's, version-checked. Blocking.

        Kafka's ZkProducerIdManager: read the latest block and its znode version, write the
        next block only if the version is unchanged; another broker's claim in between makes
        the write fail, and this one reads again.
        """
        self.client.ensure_path(zp.PRODUCER_ID_BLOCK_PATH)
        while True:
            data, stat = self.client.get(zp.PRODUCER_ID_BLOCK_PATH)
            previous = zp.ProducerIdBlock.decode(data) if data else None
            block = zp.ProducerIdBlock.next_after(previous, self.broker_id, self._block_size)
            try:
                self.client.set(zp.PRODUCER_ID_BLOCK_PATH, block.encode(), version=stat.version)
            except BadVersionError:
                log.info("Producer id block conflict at znode version %d, retrying", stat.version)
                continue
            return block
