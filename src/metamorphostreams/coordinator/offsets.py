"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention (Kafka's
OffsetMetadataManager, plus the topic checks KafkaApis makes before calling it).

Offsets change only by replaying OffsetCommit records: a commit writes one record per
partition and applies it; expiry and deletion write tombstones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from metamorphostreams.protocol._generated.offset_commit import (
    OffsetCommitRequest,
    OffsetCommitResponse,
)
from metamorphostreams.protocol._generated.offset_delete import (
    OffsetDeleteRequest,
    OffsetDeleteResponse,
)
from metamorphostreams.protocol._generated.offset_fetch import (
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from metamorphostreams.protocol.errors import ErrorCode

from ._shard import GroupError, Shard
from .classic_group import ClassicGroup
from .classic_group import ClassicGroupState as State
from .consumer_group import ConsumerGroup
from .records import OFFSET_COMMIT_KEY, OffsetCommitValue, RecordKey

INVALID_OFFSET = -1
NO_LEADER_EPOCH = -1
DEFAULT_RETENTION_TIME = -1  # OffsetCommit v2-4: -1 means the broker's offsets.retention.minutes
TOPIC_ID_VERSION = 10  # OffsetCommit and OffsetFetch v10 name topics by id
GROUP_ID_NOT_FOUND_VERSION = 9  # OffsetCommit to an unknown group: GROUP_ID_NOT_FOUND from v9
BATCHED_FETCH_VERSION = 8  # OffsetFetch v8+: several groups per request
TOP_LEVEL_ERROR_VERSION = 2  # OffsetFetch v2+: a group-level error code


@dataclass(frozen=True)
class OffsetAndMetadata:
    committed_offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None = None

    @classmethod
    def from_record(cls, value: OffsetCommitValue) -> OffsetAndMetadata:
        expire = None if value.expire_timestamp == -1 else value.expire_timestamp
        return cls(value.offset, value.leader_epoch, value.metadata, value.commit_timestamp, expire)


def _java_length(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2  # Java's String.length(): UTF-16 code units


@dataclass
class _Fetched:
    name: str
    topic_id: uuid.UUID
    partitions: list[tuple[int, int, int, str, ErrorCode]]  # index, offset, epoch, metadata, error


class OffsetManager:
    """Offsets by group, topic and partition. Not task-safe."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.offsets: dict[str, dict[str, dict[int, OffsetAndMetadata]]] = {}

    # -- replay --------------------------------------------------------------------------

    def apply(self, key: RecordKey, value: OffsetCommitValue | None) -> None:
        gid, topic, partition = key.group_id, key.topic, key.partition
        if value is not None:
            if gid not in self.shard.groups:
                # Offsets without membership: Kafka keeps them in a "simple" classic group.
                self.shard.groups[gid] = ClassicGroup(gid)
            self.offsets.setdefault(gid, {}).setdefault(topic, {})[partition] = (
                OffsetAndMetadata.from_record(value)
            )
            return
        topics = self.offsets.get(gid)
        if topics is None or partition not in topics.get(topic, {}):
            return
        del topics[topic][partition]
        if not topics[topic]:
            del topics[topic]
        if not topics:
            del self.offsets[gid]

    def _tombstone(self, group_id: str, topic: str, partition: int) -> None:
        self.shard.write(RecordKey(OFFSET_COMMIT_KEY, group_id, topic, partition), None)

    def get(self, group_id: str, topic: str, partition: int) -> OffsetAndMetadata | None:
        return self.offsets.get(group_id, {}).get(topic, {}).get(partition)

    # -- OffsetCommit --------------------------------------------------------------------

    def commit(
        self, req: OffsetCommitRequest, version: int, heartbeat: Any
    ) -> OffsetCommitResponse:
        """``heartbeat(group, member_id)`` keeps a classic member's session alive."""
        Partition = OffsetCommitResponse.OffsetCommitResponsePartition
        cluster = self.shard.metadata()
        names = {tid: name for name, (tid, _) in cluster.items()}
        out: list[OffsetCommitResponse.OffsetCommitResponseTopic] = []
        valid: list[tuple[str, OffsetCommitRequest.OffsetCommitRequestPartition, Any]] = []
        for t in req.topics or ():
            parts = [Partition(partition_index=p.partition_index) for p in t.partitions or ()]
            out.append(
                OffsetCommitResponse.OffsetCommitResponseTopic(
                    name=t.name, topic_id=t.topic_id, partitions=parts
                )
            )
            name = names.get(t.topic_id) if version >= TOPIC_ID_VERSION else t.name
            for p, answer in zip(t.partitions or (), parts, strict=True):
                # KafkaApis' checks: the topic and partition must exist.
                if name is None:
                    answer.error_code = ErrorCode.UNKNOWN_TOPIC_ID
                elif self.shard.check_topics and (
                    name not in cluster or not 0 <= p.partition_index < cluster[name][1]
                ):
                    answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    valid.append((name, p, answer))
        if not valid:
            return OffsetCommitResponse(topics=out)
        try:
            group = self._validate_commit(req, version)
        except GroupError as e:
            for _, _, answer in valid:
                answer.error_code = e.code
            return OffsetCommitResponse(topics=out)
        if isinstance(group, ClassicGroup) and group.state in (
            State.STABLE,
            State.PREPARING_REBALANCE,
        ):
            heartbeat(group, req.member_id)
        now = self.shard.now_ms
        retention = req.retention_time_ms if version <= 4 else DEFAULT_RETENTION_TIME
        expire = -1 if retention == DEFAULT_RETENTION_TIME else now + retention
        for name, p, answer in valid:
            metadata = p.committed_metadata or ""
            if _java_length(metadata) > self.shard.config.offset_metadata_max_bytes:
                answer.error_code = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            value = OffsetCommitValue(
                p.committed_offset, p.committed_leader_epoch, metadata, now, expire
            )
            key = RecordKey(OFFSET_COMMIT_KEY, req.group_id, name, p.partition_index)
            self.shard.write(key, value)
        return OffsetCommitResponse(topics=out)

    def _validate_commit(
        self, req: OffsetCommitRequest, version: int
    ) -> ClassicGroup | ConsumerGroup | None:
        generation = req.generation_id_or_member_epoch
        group = self.shard.groups.get(req.group_id)
        if group is None:
            if generation < 0:
                return None  # a simple group, made when the commit is replayed
            if version >= GROUP_ID_NOT_FOUND_VERSION:
                raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {req.group_id} not found.")
            raise GroupError(ErrorCode.ILLEGAL_GENERATION)
        if isinstance(group, ConsumerGroup):
            group.validate_offset_commit(req.member_id, generation, version)
            return group
        if group.state is State.DEAD:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if generation < 0 and group.state is State.EMPTY:
            return group
        if generation >= 0 or req.member_id or req.group_instance_id is not None:
            group.validate_member(req.member_id, req.group_instance_id)
            if generation != group.generation_id:
                raise GroupError(ErrorCode.ILLEGAL_GENERATION)
        elif group.state is not State.EMPTY:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID)  # no generation: only for empty groups
        if group.state is State.COMPLETING_REBALANCE:
            raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS)
        return group

    # -- OffsetFetch ---------------------------------------------------------------------

    def fetch(self, req: OffsetFetchRequest, version: int) -> OffsetFetchResponse:
        R = OffsetFetchResponse
        if version >= BATCHED_FETCH_VERSION:
            groups = []
            for g in req.groups or ():
                wanted = (
                    None
                    if g.topics is None
                    else [(t.name, t.topic_id, t.partition_indexes or []) for t in g.topics]
                )
                error, topics = self._fetch_group(
                    g.group_id, g.member_id, g.member_epoch, wanted, version
                )
                groups.append(
                    R.OffsetFetchResponseGroup(
                        group_id=g.group_id,
                        error_code=error,
                        topics=[
                            R.OffsetFetchResponseTopics(
                                name=t.name,
                                topic_id=t.topic_id,
                                partitions=[
                                    R.OffsetFetchResponsePartitions(
                                        partition_index=i,
                                        committed_offset=o,
                                        committed_leader_epoch=e,
                                        metadata=m,
                                        error_code=c,
                                    )
                                    for i, o, e, m, c in t.partitions
                                ],
                            )
                            for t in topics
                        ],
                    )
                )
            return R(groups=groups)
        wanted = (
            None
            if req.topics is None
            else [(t.name, uuid.UUID(int=0), t.partition_indexes or []) for t in req.topics]
        )
        error, topics = self._fetch_group(req.group_id, None, -1, wanted, version)
        old_style = version < TOP_LEVEL_ERROR_VERSION and error != ErrorCode.NONE
        if old_style:
            # v1 has no group-level error: it goes on every partition.
            topics = [
                _Fetched(n, tid, [(p, INVALID_OFFSET, NO_LEADER_EPOCH, "", error) for p in parts])
                for n, tid, parts in wanted or []
            ]
        return R(
            error_code=error,
            topics=[
                R.OffsetFetchResponseTopic(
                    name=t.name,
                    partitions=[
                        R.OffsetFetchResponsePartition(
                            partition_index=i,
                            committed_offset=o,
                            committed_leader_epoch=e,
                            metadata=m,
                            error_code=c,
                        )
                        for i, o, e, m, c in t.partitions
                    ],
                )
                for t in topics
            ],
        )

    def _fetch_group(
        self,
        group_id: str,
        member_id: str | None,
        member_epoch: int,
        wanted: list[tuple[str, uuid.UUID, list[int]]] | None,
        version: int,
    ) -> tuple[ErrorCode, list[_Fetched]]:
        group = self.shard.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            try:
                group.validate_offset_fetch(member_id, member_epoch)
            except GroupError as e:
                return e.code, []
        stored = self.offsets.get(group_id, {}) if group is not None else {}
        cluster = self.shard.metadata()
        if wanted is None:
            return ErrorCode.NONE, [
                _Fetched(
                    topic,
                    cluster.get(topic, (uuid.UUID(int=0), 0))[0],
                    [
                        (p, o.committed_offset, o.leader_epoch, o.metadata, ErrorCode.NONE)
                        for p, o in sorted(parts.items())
                    ],
                )
                for topic, parts in stored.items()
            ]
        names = {tid: name for name, (tid, _) in cluster.items()}
        out = []
        for name, topic_id, partitions in wanted:
            resolved = names.get(topic_id) if version >= TOPIC_ID_VERSION else name
            rows = []
            for p in partitions:
                o = stored.get(resolved or "", {}).get(p)
                if resolved is None:
                    rows.append(
                        (p, INVALID_OFFSET, NO_LEADER_EPOCH, "", ErrorCode.UNKNOWN_TOPIC_ID)
                    )
                elif o is None:
                    rows.append((p, INVALID_OFFSET, NO_LEADER_EPOCH, "", ErrorCode.NONE))
                else:
                    rows.append((p, o.committed_offset, o.leader_epoch, o.metadata, ErrorCode.NONE))
            out.append(_Fetched(name, topic_id, rows))
        return ErrorCode.NONE, out

    # -- OffsetDelete, DeleteGroups, expiry ----------------------------------------------

    def delete(self, req: OffsetDeleteRequest) -> OffsetDeleteResponse:
        R = OffsetDeleteResponse
        group = self.shard.groups.get(req.group_id)
        if group is None or (isinstance(group, ClassicGroup) and group.state is State.DEAD):
            return R(error_code=ErrorCode.GROUP_ID_NOT_FOUND)
        if (
            isinstance(group, ClassicGroup)
            and group.state in (State.STABLE, State.PREPARING_REBALANCE, State.COMPLETING_REBALANCE)
            and not group.uses_consumer_protocol()
        ):
            return R(error_code=ErrorCode.NON_EMPTY_GROUP)
        topics = []
        for t in req.topics or ():
            subscribed = self.is_subscribed(group, t.name)
            parts = []
            for p in t.partitions or ():
                if subscribed:
                    parts.append(
                        R.OffsetDeleteResponsePartition(
                            partition_index=p.partition_index,
                            error_code=ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC,
                        )
                    )
                    continue
                if self.get(req.group_id, t.name, p.partition_index) is not None:
                    self._tombstone(req.group_id, t.name, p.partition_index)
                parts.append(R.OffsetDeleteResponsePartition(partition_index=p.partition_index))
            topics.append(R.OffsetDeleteResponseTopic(name=t.name, partitions=parts))
        return R(topics=topics)

    def is_subscribed(self, group: ClassicGroup | ConsumerGroup, topic: str) -> bool:
        if isinstance(group, ClassicGroup):
            return group.is_subscribed_to_topic(topic)
        return topic in group.subscribed_topics(self.shard.metadata())

    def delete_all(self, group_id: str) -> None:
        for topic, parts in list(self.offsets.get(group_id, {}).items()):
            for partition in list(parts):
                self._tombstone(group_id, topic, partition)

    def expire(self, group: ClassicGroup | ConsumerGroup) -> bool:
        """Tombstone the group's expired offsets; True when none is left."""
        stored = self.offsets.get(group.group_id)
        if stored is None:
            return True
        base = self._expiry_base(group)
        if base is None:
            return False
        now, retention = self.shard.now_ms, self.shard.config.offsets_retention_ms
        all_expired = True
        for topic, parts in list(stored.items()):
            if self.is_subscribed(group, topic):
                all_expired = False
                continue
            for partition, o in list(parts.items()):
                if o.expire_timestamp_ms is not None:
                    expired = now >= o.expire_timestamp_ms  # an explicit v2-4 retention time
                else:
                    expired = now - base(o) >= retention
                if expired:
                    self._tombstone(group.group_id, topic, partition)
                else:
                    all_expired = False
        return all_expired

    @staticmethod
    def _expiry_base(group: ClassicGroup | ConsumerGroup) -> Any:
        """From when an offset's retention runs (Kafka's OffsetExpirationCondition), or None."""
        if isinstance(group, ConsumerGroup) or group.protocol_type is None:
            return lambda o: o.commit_timestamp_ms
        if group.state is State.EMPTY:
            since = group.current_state_timestamp
            return lambda o: o.commit_timestamp_ms if since is None else since
        if (
            group.uses_consumer_protocol()
            and group.subscribed_topics is not None
            and group.state is State.STABLE
        ):
            return lambda o: o.commit_timestamp_ms
        return None

    def delete_topics(self, topics: Iterable[str]) -> None:
        gone = set(topics)
        for group_id, stored in list(self.offsets.items()):
            for topic in [t for t in stored if t in gone]:
                for partition in list(stored[topic]):
                    self._tombstone(group_id, topic, partition)
