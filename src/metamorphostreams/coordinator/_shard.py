"""What the coordinator's managers share: groups, timers, the clock and the output buffers."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from metamorphostreams.protocol.errors import ErrorCode

from .config import GroupCoordinatorConfig
from .records import CoordinatorRecord, RecordKey
from .timers import Timers

if TYPE_CHECKING:
    from .classic_group import ClassicGroup
    from .consumer_group import ConsumerGroup

TopicMetadataProvider = Callable[[], Mapping[str, tuple[uuid.UUID, int]]]
"""Returns the cluster's topics: name -> (topic id, partition count). Called during requests."""

JOIN_GROUP_API_KEY = 11
SYNC_GROUP_API_KEY = 14


class GroupError(Exception):
    """A request the coordinator refuses: Kafka's error code and, where Kafka has one, message."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode``: 31-polynomial over UTF-16 code units, in int32."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: Integer.MIN_VALUE maps to 0 instead of staying negative."""
    return 0 if n == -(2**31) else abs(n)


def kafka_uuid_string(u: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, unpadded (22 chars)."""
    return base64.urlsafe_b64encode(u.bytes).rstrip(b"=").decode("ascii")


class Shard:
    """Mutable state of one coordinator, shared by the classic, consumer and offset managers.

    ``records`` and ``completions`` collect the effects of the entry point being run; the
    facade empties them into each ``Result``. ``write`` appends a record and, unless the
    caller already changed its in-memory state itself (the classic protocol, as in Kafka),
    applies it through the same replay path used at start-up. Not task-safe.
    """

    def __init__(
        self,
        config: GroupCoordinatorConfig,
        num_partitions: int,
        metadata: TopicMetadataProvider,
        uuid_factory: Callable[[], uuid.UUID],
    ) -> None:
        self.config = config
        self.num_partitions = num_partitions
        self.metadata = metadata
        self.check_topics = True  # refuse commits to topics ``metadata`` does not know
        self.uuid_factory = uuid_factory
        self.groups: dict[str, ClassicGroup | ConsumerGroup] = {}
        self.timers = Timers()
        self.now_ms = 0
        self.records: list[CoordinatorRecord] = []
        self.completions: list[tuple[int, Any]] = []
        self.pending: dict[int, tuple[int, int]] = {}  # pending id -> (api key, api version)
        self.cancelled: set[int] = set()
        self._next_pending = 0
        self.apply: Callable[[RecordKey, Any], None] = lambda key, value: None

    def partition_for(self, group_id: str) -> int:
        return kafka_abs(java_string_hash(group_id)) % self.num_partitions

    def write(self, key: RecordKey, value: Any | None, *, apply: bool = True) -> None:
        encoded = None if value is None else value.encode()
        self.records.append(
            CoordinatorRecord(self.partition_for(key.group_id), key.encode(), encoded)
        )
        if apply:
            self.apply(key, value)

    def new_uuid_string(self) -> str:
        """A fresh member id in Kafka's ``Uuid.toString`` form, never starting with '-'."""
        while True:
            s = kafka_uuid_string(self.uuid_factory())
            if not s.startswith("-"):
                return s

    def new_pending(self, api_key: int, api_version: int) -> int:
        self._next_pending += 1
        self.pending[self._next_pending] = (api_key, api_version)
        return self._next_pending

    def complete(self, pending_id: int, response: Any) -> None:
        """Answer a parked JoinGroup/SyncGroup; dropped if its connection went away."""
        entry = self.pending.pop(pending_id, None)
        if entry is None:
            return
        api_key, version = entry
        if api_key == JOIN_GROUP_API_KEY and version < 7 and response.protocol_name is None:
            response.protocol_name = (
                ""  # non-nullable before v7 (Kafka's JoinGroupResponse does so)
            )
        if pending_id in self.cancelled:
            self.cancelled.discard(pending_id)
            return
        self.completions.append((pending_id, response))
