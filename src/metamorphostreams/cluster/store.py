"""The metadata store interface the broker uses, whatever keeps the facts.

Two stores satisfy it: ``metadata.MetadataStore`` (a standalone broker: one JSON file) and
``zk_store.ZkMetadataStore`` (a broker in a cluster: Kafka's znodes in ZooKeeper). It lists
exactly what ``server/`` calls today, no more: the broker's wiring picks a store, the rest of
the server does not know which one it talks to.

Reads (``topics``, ``cluster_id``, ``colliding_topic``, ``topic_by_id``) are in-memory and
cheap. Writes of the JSON store are a file replace; those of the ZooKeeper store are blocking
round trips to ZooKeeper, meant for a worker thread (see ``zk_store``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .metadata import TopicInfo

__all__ = ["MetadataStoreProtocol"]


@runtime_checkable
class MetadataStoreProtocol(Protocol):
    """Topics (ids, partition counts, configs), the cluster id and producer-id allocation."""

    topics: dict[str, TopicInfo]
    cluster_id: str

    def ensure_cluster_id(self, wanted: str = "") -> str:
        """The cluster id, created once (``wanted`` if given, else a random Kafka Uuid)."""
        ...

    def colliding_topic(self, name: str) -> str | None:
        """Another topic whose name differs from ``name`` only by '.' versus '_'."""
        ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None: ...

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> TopicInfo: ...

    def delete_topic(self, name: str) -> None: ...

    def set_partition_count(self, name: str, partitions: int) -> None: ...

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before in this cluster, even across restarts."""
        ...


if TYPE_CHECKING:  # mypy proves both stores satisfy the interface
    from .metadata import MetadataStore
    from .zk_store import ZkMetadataStore

    def _both_stores(a: MetadataStore, b: ZkMetadataStore) -> list[MetadataStoreProtocol]:
        return [a, b]
