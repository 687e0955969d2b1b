"""Committed offsets: OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete and retention
(Kafka's OffsetMetadataManager, plus the topic checks KafkaApis makes before calling it).

Offsets change only by replaying OffsetCommit records: a commit writes one record per
partition and applies it; expiry and deletion write tombstones. An OffsetCommit record read
from a transactional batch is *pending* for its producer: invisible to OffsetFetch until the
COMMIT marker of that producer reaches the group's ``__consumer_offsets`` partition (then it
becomes the committed offset, unless a later-written commit is already there) or dropped by
an ABORT marker (Kafka's pendingTransactionalOffsets and replayEndTransactionMarker).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
from metamorphostreams.protocol._generated.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
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
REQUIRE_STABLE_VERSION = 7  # OffsetFetch v7+: require_stable (KIP-447)
NO_PRODUCER_ID = -1  # the producer id of a batch that is not transactional

# How Kafka's coordinator runtime answers a write it could not append
# (CoordinatorOperationExceptionHelper); any other error goes to the client as it is.
_WRITE_ERRORS = {
    ErrorCode.NETWORK_EXCEPTION: ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.INVALID_FETCH_SIZE: ErrorCode.UNKNOWN_SERVER_ERROR,
}


def write_error(error: ErrorCode) -> ErrorCode:
    """The error a client gets when the coordinator's records could not be appended."""
    return _WRITE_ERRORS.get(error, error)


@dataclass(frozen=True)
class OffsetAndMetadata:
    committed_offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None = None
    # Where the record stands in the order of its __consumer_offsets partition (Kafka keeps
    # the record's log offset): a transaction's offset is materialized at its COMMIT marker
    # only over a commit written before it. Not part of the value.
    record_order: int = field(default=0, compare=False)

    @classmethod
    def from_record(cls, value: OffsetCommitValue, record_order: int = 0) -> OffsetAndMetadata:
        expire = None if value.expire_timestamp == -1 else value.expire_timestamp
        return cls(
            value.offset,
            value.leader_epoch,
            value.metadata,
            value.commit_timestamp,
            expire,
            record_order,
        )


def _java_length(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2  # Java's String.length(): UTF-16 code units


def _unstable_row(partition: int) -> tuple[int, int, int, str, ErrorCode]:
    return (partition, INVALID_OFFSET, NO_LEADER_EPOCH, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)


@dataclass
class _Fetched:
    name: str
    topic_id: uuid.UUID
    partitions: list[tuple[int, int, int, str, ErrorCode]]  # index, offset, epoch, metadata, error


PendingOffsets = dict[tuple[str, int], OffsetAndMetadata]  # (topic, partition) -> offset


class OffsetManager:
    """Committed offsets by group, topic and partition; pending transactional offsets by
    producer id and group, and the producers with an open transaction by group (a group stays
    there until its partition gets the producer's marker, even when tombstones emptied its
    pending offsets, as Kafka keeps it since KAFKA-19164). Not task-safe."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.offsets: dict[str, dict[str, dict[int, OffsetAndMetadata]]] = {}
        self.pending: dict[int, dict[str, PendingOffsets]] = {}
        self.open_transactions: dict[str, set[int]] = {}
        self._record_order = 0

    def clear(self) -> None:
        self.offsets.clear()
        self.pending.clear()
        self.open_transactions.clear()

    # -- replay --------------------------------------------------------------------------

    def apply(
        self, key: RecordKey, value: OffsetCommitValue | None, producer_id: int = NO_PRODUCER_ID
    ) -> None:
        """Replay one OffsetCommit record; ``producer_id`` is that of its batch when the
        batch is transactional."""
        gid, topic, partition = key.group_id, key.topic, key.partition
        self._record_order += 1
        if value is not None:
            if gid not in self.shard.groups:
                # Offsets without membership: Kafka keeps them in a "simple" classic group.
                self.shard.groups[gid] = ClassicGroup(gid)
            offset = OffsetAndMetadata.from_record(value, self._record_order)
            if producer_id == NO_PRODUCER_ID:
                self.offsets.setdefault(gid, {}).setdefault(topic, {})[partition] = offset
            else:
                self.pending.setdefault(producer_id, {}).setdefault(gid, {})[topic, partition] = (
                    offset
                )
                self.open_transactions.setdefault(gid, set()).add(producer_id)
            return
        self._remove(gid, topic, partition)
        # A tombstone also removes what open transactions would commit there.
        for open_producer in self.open_transactions.get(gid, ()):
            self.pending.get(open_producer, {}).get(gid, {}).pop((topic, partition), None)

    def _remove(self, gid: str, topic: str, partition: int) -> None:
        topics = self.offsets.get(gid)
        if topics is None or partition not in topics.get(topic, {}):
            return
        del topics[topic][partition]
        if not topics[topic]:
            del topics[topic]
        if not topics:
            del self.offsets[gid]

    def complete_transaction(self, partition: int, producer_id: int, committed: bool) -> None:
        """The producer's COMMIT or ABORT marker reached ``__consumer_offsets-<partition>``:
        its pending offsets of the groups there become committed offsets (each unless a
        commit written after it is already there) or are dropped."""
        by_group = self.pending.get(producer_id)
        if by_group is None:
            return  # Kafka ignores a marker without pending offsets too
        for gid in [g for g in by_group if self.shard.partition_for(g) == partition]:
            offsets = by_group.pop(gid)
            producers = self.open_transactions.get(gid)
            if producers is not None:
                producers.discard(producer_id)
                if not producers:
                    del self.open_transactions[gid]
            if not committed:
                continue
            for (topic, p), offset in offsets.items():
                existing = self.get(gid, topic, p)
                if existing is None or offset.record_order > existing.record_order:
                    self.offsets.setdefault(gid, {}).setdefault(topic, {})[p] = offset
        if not by_group:
            del self.pending[producer_id]

    def has_pending(self, group_id: str, topic: str, partition: int) -> bool:
        """Whether an open transaction holds an offset for this partition of the group."""
        return any(
            (topic, partition) in self.pending.get(producer, {}).get(group_id, {})
            for producer in self.open_transactions.get(group_id, ())
        )

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

    # -- TxnOffsetCommit -----------------------------------------------------------------

    def txn_commit(
        self, req: TxnOffsetCommitRequest, version: int
    ) -> tuple[TxnOffsetCommitResponse, Callable[[ErrorCode], TxnOffsetCommitResponse] | None]:
        """Write the request's offsets as pending for its producer (the caller appends them
        in a transactional batch of that producer). Returns the response and, when records
        were written, ``revert(append_error)``: undoes them and gives the response to send
        instead, for when the batch could not be appended."""
        Partition = TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition
        cluster = self.shard.metadata()
        out: list[TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic] = []
        valid: list[tuple[str, TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition, Any]] = []
        for t in req.topics or ():
            parts = [Partition(partition_index=p.partition_index) for p in t.partitions or ()]
            out.append(
                TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic(name=t.name, partitions=parts)
            )
            for p, answer in zip(t.partitions or (), parts, strict=True):
                # KafkaApis' checks: the topic and partition must exist.
                if self.shard.check_topics and (
                    t.name not in cluster or not 0 <= p.partition_index < cluster[t.name][1]
                ):
                    answer.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    valid.append((t.name, p, answer))
        response = TxnOffsetCommitResponse(topics=out)
        if not valid:
            return response, None
        try:
            if not req.group_id:
                raise GroupError(ErrorCode.INVALID_GROUP_ID)
            if req.producer_id < 0:
                # Never written: a transactional batch without a producer would replay as
                # committed offsets. (The transaction coordinator refuses such a producer.)
                raise GroupError(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
            self._validate_txn_commit(req)
        except GroupError as e:
            for _, _, answer in valid:
                answer.error_code = e.code
            return response, None
        gid, producer_id = req.group_id, req.producer_id
        group_created = gid not in self.shard.groups
        was_open = producer_id in self.open_transactions.get(gid, ())
        had_entry = gid in self.pending.get(producer_id, {})
        before: dict[tuple[str, int], OffsetAndMetadata | None] = {}
        now = self.shard.now_ms
        for name, p, answer in valid:
            metadata = p.committed_metadata or ""
            if _java_length(metadata) > self.shard.config.offset_metadata_max_bytes:
                answer.error_code = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            tp = (name, p.partition_index)
            if tp not in before:
                before[tp] = self.pending.get(producer_id, {}).get(gid, {}).get(tp)
            value = OffsetCommitValue(p.committed_offset, p.committed_leader_epoch, metadata, now)
            key = RecordKey(OFFSET_COMMIT_KEY, gid, name, p.partition_index)
            self.shard.write(key, value, apply=False)
            self.apply(key, value, producer_id)
        if not before:
            return response, None

        def revert(error: ErrorCode) -> TxnOffsetCommitResponse:
            by_group = self.pending[producer_id]
            entry = by_group[gid]
            for tp, old in before.items():
                if old is None:
                    entry.pop(tp, None)
                else:
                    entry[tp] = old
            if not had_entry:
                del by_group[gid]
                if not by_group:
                    del self.pending[producer_id]
            if not was_open:
                producers = self.open_transactions[gid]
                producers.discard(producer_id)
                if not producers:
                    del self.open_transactions[gid]
            if (
                group_created
                and gid not in self.offsets
                and gid not in self.open_transactions
                and isinstance(self.shard.groups.get(gid), ClassicGroup)
            ):
                del self.shard.groups[gid]
            code = write_error(error)
            for _, _, answer in valid:
                answer.error_code = code
            return response

        return response, revert

    def _validate_txn_commit(self, req: TxnOffsetCommitRequest) -> None:
        """Kafka's validateTransactionalOffsetCommit: the group's state is not enforced, and
        requests without member id and generation (v0-2) are accepted by any group."""
        generation = req.generation_id
        group = self.shard.groups.get(req.group_id)
        if group is None:
            if generation < 0:
                return  # a simple group, made when the commit is replayed
            raise GroupError(ErrorCode.ILLEGAL_GENERATION)
        if isinstance(group, ConsumerGroup):
            if generation < 0 and not group.members:
                return
            member = group.members.get(req.member_id)
            if member is None:
                raise GroupError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {req.member_id} is not a member of group {req.group_id}.",
                )
            if generation != member.member_epoch:
                raise GroupError(ErrorCode.ILLEGAL_GENERATION)  # not STALE_MEMBER_EPOCH, as Kafka
            return
        if group.state is State.DEAD:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if generation < 0 and group.state is State.EMPTY:
            return
        if generation >= 0 or req.member_id or req.group_instance_id is not None:
            group.validate_member(req.member_id, req.group_instance_id)
            if generation != group.generation_id:
                raise GroupError(ErrorCode.ILLEGAL_GENERATION)

    # -- OffsetFetch ---------------------------------------------------------------------

    def fetch(self, req: OffsetFetchRequest, version: int) -> OffsetFetchResponse:
        R = OffsetFetchResponse
        stable = version >= REQUIRE_STABLE_VERSION and req.require_stable
        if version >= BATCHED_FETCH_VERSION:
            groups = []
            for g in req.groups or ():
                wanted = (
                    None
                    if g.topics is None
                    else [(t.name, t.topic_id, t.partition_indexes or []) for t in g.topics]
                )
                error, topics = self._fetch_group(
                    g.group_id, g.member_id, g.member_epoch, wanted, version, stable
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
        error, topics = self._fetch_group(req.group_id, None, -1, wanted, version, stable)
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
        stable: bool = False,
    ) -> tuple[ErrorCode, list[_Fetched]]:
        """``stable`` (require_stable): partitions an open transaction holds an offset for
        answer UNSTABLE_OFFSET_COMMIT, so the client waits for the transaction to end."""
        group = self.shard.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            try:
                group.validate_offset_fetch(member_id, member_epoch)
            except GroupError as e:
                return e.code, []
        stored = self.offsets.get(group_id, {}) if group is not None else {}
        cluster = self.shard.metadata()

        def unstable(topic: str, partition: int) -> bool:
            return stable and self.has_pending(group_id, topic, partition)

        if wanted is None:
            return ErrorCode.NONE, [
                _Fetched(
                    topic,
                    cluster.get(topic, (uuid.UUID(int=0), 0))[0],
                    [
                        _unstable_row(p)
                        if unstable(topic, p)
                        else (p, o.committed_offset, o.leader_epoch, o.metadata, ErrorCode.NONE)
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
                elif unstable(resolved, p):
                    rows.append(_unstable_row(p))
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
                # Also when only an open transaction holds an offset there, as Kafka.
                if self.get(req.group_id, t.name, p.partition_index) is not None or (
                    self.has_pending(req.group_id, t.name, p.partition_index)
                ):
                    self._tombstone(req.group_id, t.name, p.partition_index)
                parts.append(R.OffsetDeleteResponsePartition(partition_index=p.partition_index))
            topics.append(R.OffsetDeleteResponseTopic(name=t.name, partitions=parts))
        return R(topics=topics)

    def is_subscribed(self, group: ClassicGroup | ConsumerGroup, topic: str) -> bool:
        if isinstance(group, ClassicGroup):
            return group.is_subscribed_to_topic(topic)
        return topic in group.subscribed_topics(self.shard.metadata())

    def delete_all(self, group_id: str) -> None:
        """Tombstone the group's committed offsets and those open transactions hold."""
        keys = {(t, p) for t, parts in self.offsets.get(group_id, {}).items() for p in parts}
        for producer in self.open_transactions.get(group_id, ()):
            keys.update(self.pending.get(producer, {}).get(group_id, {}))
        for topic, partition in sorted(keys):
            self._tombstone(group_id, topic, partition)

    def expire(self, group: ClassicGroup | ConsumerGroup) -> bool:
        """Tombstone the group's expired offsets; True when none is left."""
        # A group with an open transaction is kept (KAFKA-19163), and so is an offset an open
        # transaction would replace.
        open_transaction = group.group_id in self.open_transactions
        stored = self.offsets.get(group.group_id)
        if stored is None:
            return not open_transaction
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
                if expired and not self.has_pending(group.group_id, topic, partition):
                    self._tombstone(group.group_id, topic, partition)
                else:
                    all_expired = False
        return all_expired and not open_transaction

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
        """Tombstone the committed and the pending offsets of deleted topics."""
        gone = set(topics)
        keys = {
            (group_id, topic, partition)
            for group_id, stored in self.offsets.items()
            for topic, parts in stored.items()
            if topic in gone
            for partition in parts
        }
        keys.update(
            (group_id, topic, partition)
            for by_group in self.pending.values()
            for group_id, offsets in by_group.items()
            for topic, partition in offsets
            if topic in gone
        )
        for group_id, topic, partition in sorted(keys):
            self._tombstone(group_id, topic, partition)
