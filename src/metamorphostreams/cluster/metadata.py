"""The metadata a single broker keeps about its cluster: topics, topic ids, configs, producer ids.

Stored as one JSON document, ``<data>/__cluster_metadata.json``, replaced atomically (write,
fsync, rename) on every change. A cluster of brokers keeps the same facts in ZooKeeper.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILE = "__cluster_metadata.json"
MAX_TOPIC_NAME_LENGTH = 249  # Kafka's Topic.MAX_NAME_LENGTH
_LEGAL_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
PRODUCER_ID_BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


def topic_name_error(name: str) -> str | None:
    """Why ``name`` is not a legal topic name (Kafka's Topic.validate), or None."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return (
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, "
            f"topic name: {name}"
        )
    if not _LEGAL_TOPIC_NAME.match(name):
        return (
            f"Topic name {name} is illegal, it contains a character other than ASCII "
            "alphanumerics, '.', '_' and '-'"
        )
    return None


def collision_key(name: str) -> str:
    """Kafka forbids two topics whose names differ only by '.' versus '_'."""
    return name.replace(".", "_")


def uuid_to_kafka(u: uuid.UUID) -> str:
    """Kafka's string form of a Uuid: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")


def new_kafka_uuid() -> uuid.UUID:
    """A random Uuid as Kafka makes them: never the zero or the metadata-topic id, no '-' lead."""
    while True:
        u = uuid.uuid4()
        if not uuid_to_kafka(u).startswith("-") and u.int > 1:
            return u


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


class MetadataStore:
    """Topics and producer-id allocation, durable in one file. Not task-safe; loop-owned."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / METADATA_FILE
        self.topics: dict[str, TopicInfo] = {}
        self.cluster_id = ""
        self._next_producer_id = 0
        self._producer_id_block_end = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        self.cluster_id = str(doc.get("cluster_id", ""))
        for t in doc.get("topics", []):
            info = TopicInfo(
                t["name"], uuid.UUID(t["topic_id"]), int(t["partitions"]), dict(t["configs"])
            )
            self.topics[info.name] = info
        # Restart from the end of the last reserved block: ids are never handed out twice.
        self._next_producer_id = int(doc.get("producer_id_block_end", 0))
        self._producer_id_block_end = self._next_producer_id

    def save(self) -> None:
        doc = {
            "version": 1,
            "cluster_id": self.cluster_id,
            "producer_id_block_end": self._producer_id_block_end,
            "topics": [
                {
                    "name": t.name,
                    "topic_id": str(t.topic_id),
                    "partitions": t.partitions,
                    "configs": t.configs,
                }
                for t in sorted(self.topics.values(), key=lambda t: t.name)
            ],
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def ensure_cluster_id(self, wanted: str = "") -> str:
        if not self.cluster_id:
            self.cluster_id = wanted or uuid_to_kafka(new_kafka_uuid())
            self.save()
        return self.cluster_id

    def colliding_topic(self, name: str) -> str | None:
        key = collision_key(name)
        for other in self.topics:
            if other != name and collision_key(other) == key:
                return other
        return None

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> TopicInfo:
        info = TopicInfo(name, new_kafka_uuid(), partitions, dict(configs))
        self.topics[name] = info
        self.save()
        return info

    def delete_topic(self, name: str) -> None:
        del self.topics[name]
        self.save()

    def set_partition_count(self, name: str, partitions: int) -> None:
        self.topics[name].partitions = partitions
        self.save()

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.topics[name].configs = dict(configs)
        self.save()

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        for t in self.topics.values():
            if t.topic_id == topic_id:
                return t
        return None

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, even across restarts (blocks of 1000)."""
        if self._next_producer_id >= self._producer_id_block_end:
            self._producer_id_block_end = self._next_producer_id + PRODUCER_ID_BLOCK_SIZE
            self.save()
        pid = self._next_producer_id
        self._next_producer_id += 1
        return pid
