"""The ``__consumer_offsets`` record formats, byte-compatible with Kafka's.

A record key is ``int16 key version`` followed by the key struct; the key version names the
record type. A value is ``int16 value version`` followed by the value struct; a null value
is a tombstone. Keys are never flexible; the KIP-848 values (``ConsumerGroup*Value``) are
flexible from version 0 (compact strings and arrays, a tagged-field section ending every
struct), and OffsetCommitValue / GroupMetadataValue from version 4.

    key version  record                                   value version written
    0, 1         OffsetCommitKey(group, topic, partition) 3 (1 when an expire timestamp is set)
    2            GroupMetadataKey(group)                  3
    3            ConsumerGroupMetadataKey(groupId)        0
    4            ConsumerGroupPartitionMetadataKey        0
    5            ConsumerGroupMemberMetadataKey           0
    6            ConsumerGroupTargetAssignmentMetadataKey 0
    7            ConsumerGroupTargetAssignmentMemberKey   0
    8            ConsumerGroupCurrentMemberAssignmentKey  0
    16           ConsumerGroupRegularExpressionKey(groupId, regularExpression)  0

ConsumerGroupMemberMetadataValue carries tag 0, ClassicMemberMetadata, for the classic
members of a consumer group (KIP-848's online migration). Other tagged fields written by
newer Kafka versions (MetadataHash, ...) are skipped on read and never written. Plain data,
safe to share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from metamorphostreams.protocol._primitives import Reader, Writer

OFFSET_COMMIT_KEY_V0 = 0
OFFSET_COMMIT_KEY = 1
GROUP_METADATA_KEY = 2
CONSUMER_GROUP_METADATA_KEY = 3
CONSUMER_GROUP_PARTITION_METADATA_KEY = 4
CONSUMER_GROUP_MEMBER_METADATA_KEY = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY = 8
CONSUMER_GROUP_REGULAR_EXPRESSION_KEY = 16

_GROUP_KEYS = {
    GROUP_METADATA_KEY,
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_PARTITION_METADATA_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
}
_MEMBER_KEYS = {
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
}
_REGEX_KEYS = {CONSUMER_GROUP_REGULAR_EXPRESSION_KEY}

Assignment = dict[uuid.UUID, frozenset[int]]


@dataclass
class CoordinatorRecord:
    """One record for ``__consumer_offsets``: the partition it belongs to, its key and value.

    ``value`` None is a tombstone. The server batches these and appends them in order.
    """

    partition: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class RecordKey:
    """A decoded key: ``version`` is the record type; the other fields as the type has them."""

    version: int
    group_id: str
    topic: str = ""
    partition: int = 0
    member_id: str = ""
    regex: str = ""

    def encode(self) -> bytes:
        w = Writer()
        w.int16(self.version)
        w.string(self.group_id, False, False)
        if self.version in (OFFSET_COMMIT_KEY_V0, OFFSET_COMMIT_KEY):
            w.string(self.topic, False, False)
            w.int32(self.partition)
        elif self.version in _MEMBER_KEYS:
            w.string(self.member_id, False, False)
        elif self.version in _REGEX_KEYS:
            w.string(self.regex, False, False)
        elif self.version not in _GROUP_KEYS:
            raise ValueError(f"unknown record key version {self.version}")
        return w.getvalue()


def decode_key(data: bytes | bytearray | memoryview) -> RecordKey | None:
    """Decode a key; None for record types this coordinator does not keep (share, streams)."""
    r = Reader(data)
    version = r.int16()
    known = _GROUP_KEYS | _MEMBER_KEYS | _REGEX_KEYS
    if version not in known and version > OFFSET_COMMIT_KEY:
        return None
    group_id = _str(r)
    if version in (OFFSET_COMMIT_KEY_V0, OFFSET_COMMIT_KEY):
        return RecordKey(version, group_id, topic=_str(r), partition=r.int32())
    if version in _MEMBER_KEYS:
        return RecordKey(version, group_id, member_id=_str(r))
    if version in _REGEX_KEYS:
        return RecordKey(version, group_id, regex=_str(r))
    return RecordKey(version, group_id)


def _str(r: Reader, compact: bool = False) -> str:
    s = r.string(compact, False)
    assert s is not None
    return s


def _nstr(r: Reader, compact: bool = False) -> str | None:
    return r.string(compact, True)


def _bytes(r: Reader, compact: bool = False) -> bytes:
    b = r.bytes(compact, False)
    assert b is not None
    return b


# -- classic records --------------------------------------------------------------------


@dataclass(frozen=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = 0
    expire_timestamp: int = -1  # only in value version 1 (OffsetCommit v2-4 retention time)

    def encode(self) -> bytes:
        version = 1 if self.expire_timestamp != -1 else 3
        w = Writer()
        w.int16(version)
        w.int64(self.offset)
        if version >= 3:
            w.int32(self.leader_epoch)
        w.string(self.metadata, False, False)
        w.int64(self.commit_timestamp)
        if version == 1:
            w.int64(self.expire_timestamp)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> OffsetCommitValue:
        r = Reader(data)
        version = r.int16()
        flexible = version >= 4
        offset = r.int64()
        leader_epoch = r.int32() if version >= 3 else -1
        metadata = _str(r, flexible)
        commit_timestamp = r.int64()
        expire_timestamp = r.int64() if version == 1 else -1
        if flexible:
            r.skip_tagged_fields()
        return cls(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


@dataclass(frozen=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: tuple[MemberMetadata, ...] = ()

    VERSION = 3  # what Kafka 4.x writes: the newest non-flexible version

    def encode(self) -> bytes:
        w = Writer()
        w.int16(self.VERSION)
        w.string(self.protocol_type, False, False)
        w.int32(self.generation)
        w.string(self.protocol, False, True)
        w.string(self.leader, False, True)
        w.int64(self.current_state_timestamp)
        w.array_length(len(self.members), False)
        for m in self.members:
            w.string(m.member_id, False, False)
            w.string(m.group_instance_id, False, True)
            w.string(m.client_id, False, False)
            w.string(m.client_host, False, False)
            w.int32(m.rebalance_timeout)
            w.int32(m.session_timeout)
            w.bytes(m.subscription, False, False)
            w.bytes(m.assignment, False, False)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> GroupMetadataValue:
        r = Reader(data)
        version = r.int16()
        fx = version >= 4
        protocol_type = _str(r, fx)
        generation = r.int32()
        protocol = _nstr(r, fx)
        leader = _nstr(r, fx)
        timestamp = r.int64() if version >= 2 else -1
        members = []
        for _ in range(r.array_length(fx, False)):
            member_id = _str(r, fx)
            instance_id = _nstr(r, fx) if version >= 3 else None
            client_id = _str(r, fx)
            client_host = _str(r, fx)
            rebalance_timeout = r.int32() if version >= 1 else -1
            session_timeout = r.int32()
            subscription = _bytes(r, fx)
            assignment = _bytes(r, fx)
            if fx:
                r.skip_tagged_fields()
            members.append(
                MemberMetadata(
                    member_id,
                    instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout,
                    session_timeout,
                    subscription,
                    assignment,
                )
            )
        if fx:
            r.skip_tagged_fields()
        return cls(protocol_type, generation, protocol, leader, timestamp, tuple(members))


# -- KIP-848 records (flexible, value version 0) -----------------------------------------


def _flex_writer() -> Writer:
    w = Writer()
    w.int16(0)
    return w


def _flex_reader(data: bytes | bytearray | memoryview) -> Reader:
    r = Reader(data)
    r.int16()  # every KIP-848 value is version 0 so far; newer fields arrive tagged
    return r


def _write_topic_partitions(w: Writer, assignment: Assignment) -> None:
    w.array_length(len(assignment), True)
    for topic_id in sorted(assignment, key=str):
        w.uuid(topic_id)
        parts = sorted(assignment[topic_id])
        w.array_length(len(parts), True)
        for p in parts:
            w.int32(p)
        w.uvarint(0)


def _read_topic_partitions(r: Reader) -> Assignment:
    out: Assignment = {}
    for _ in range(r.array_length(True, False)):
        topic_id = r.uuid()
        parts = frozenset(r.int32() for _ in range(r.array_length(True, False)))
        r.skip_tagged_fields()
        if parts:
            out[topic_id] = parts
    return out


def _encode_epoch_value(epoch: int) -> bytes:
    """A flexible value holding one int32 epoch and no tagged fields."""
    w = _flex_writer()
    w.int32(epoch)
    w.uvarint(0)
    return w.getvalue()


def _decode_epoch_value(data: bytes | bytearray | memoryview) -> int:
    r = _flex_reader(data)
    epoch = r.int32()
    r.skip_tagged_fields()
    return epoch


@dataclass(frozen=True)
class ConsumerGroupMetadataValue:
    epoch: int

    def encode(self) -> bytes:
        return _encode_epoch_value(self.epoch)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> ConsumerGroupMetadataValue:
        return cls(_decode_epoch_value(data))


@dataclass(frozen=True)
class TopicMetadata:
    topic_id: uuid.UUID
    topic_name: str
    num_partitions: int


@dataclass(frozen=True)
class ConsumerGroupPartitionMetadataValue:
    topics: tuple[TopicMetadata, ...] = ()

    def encode(self) -> bytes:
        w = _flex_writer()
        w.array_length(len(self.topics), True)
        for t in sorted(self.topics, key=lambda t: t.topic_name):
            w.uuid(t.topic_id)
            w.string(t.topic_name, True, False)
            w.int32(t.num_partitions)
            w.array_length(0, True)  # PartitionMetadata (racks): unused since Kafka 4.0
            w.uvarint(0)
        w.uvarint(0)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> ConsumerGroupPartitionMetadataValue:
        r = _flex_reader(data)
        topics = []
        for _ in range(r.array_length(True, False)):
            topic_id = r.uuid()
            name = _str(r, True)
            num_partitions = r.int32()
            for _ in range(r.array_length(True, False)):
                r.int32()
                for _ in range(r.array_length(True, False)):
                    r.string(True, False)
                r.skip_tagged_fields()
            r.skip_tagged_fields()
            topics.append(TopicMetadata(topic_id, name, num_partitions))
        r.skip_tagged_fields()
        return cls(tuple(topics))


@dataclass(frozen=True)
class ClassicMemberMetadata:
    """What a classic-protocol member of a consumer group joined with (tag 0 of the member's
    metadata): its session timeout and its JoinGroup protocols (name, metadata)."""

    session_timeout_ms: int
    supported_protocols: tuple[tuple[str, bytes], ...]

    def encode(self) -> bytes:
        w = Writer()
        w.int32(self.session_timeout_ms)
        w.array_length(len(self.supported_protocols), True)
        for name, metadata in self.supported_protocols:
            w.string(name, True, False)
            w.bytes(metadata, True, False)
            w.uvarint(0)
        w.uvarint(0)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> ClassicMemberMetadata:
        session_timeout_ms = r.int32()
        protocols = []
        for _ in range(r.array_length(True, False)):
            name = _str(r, True)
            metadata = bytes(_bytes(r, True))
            r.skip_tagged_fields()
            protocols.append((name, metadata))
        r.skip_tagged_fields()
        return cls(session_timeout_ms, tuple(protocols))


CLASSIC_MEMBER_METADATA_TAG = 0


@dataclass(frozen=True)
class ConsumerGroupMemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None
    classic_member_metadata: ClassicMemberMetadata | None = None

    def encode(self) -> bytes:
        w = _flex_writer()
        w.string(self.instance_id, True, True)
        w.string(self.rack_id, True, True)
        w.string(self.client_id, True, False)
        w.string(self.client_host, True, False)
        names = sorted(self.subscribed_topic_names)
        w.array_length(len(names), True)
        for n in names:
            w.string(n, True, False)
        w.string(self.subscribed_topic_regex, True, True)
        w.int32(self.rebalance_timeout_ms)
        w.string(self.server_assignor, True, True)
        if self.classic_member_metadata is None:
            w.uvarint(0)
        else:
            w.tagged_fields([(CLASSIC_MEMBER_METADATA_TAG, self.classic_member_metadata.encode())])
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> ConsumerGroupMemberMetadataValue:
        r = _flex_reader(data)
        instance_id = _nstr(r, True)
        rack_id = _nstr(r, True)
        client_id = _str(r, True)
        client_host = _str(r, True)
        names = tuple(_str(r, True) for _ in range(r.array_length(True, False)))
        regex = _nstr(r, True)
        rebalance_timeout_ms = r.int32()
        server_assignor = _nstr(r, True)
        classic = None
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            if tag == CLASSIC_MEMBER_METADATA_TAG:
                end = r.pos + size
                classic = ClassicMemberMetadata.read(r)
                r.pos = end
            else:
                r.skip(size)
        return cls(
            instance_id,
            rack_id,
            client_id,
            client_host,
            names,
            regex,
            rebalance_timeout_ms,
            server_assignor,
            classic,
        )


@dataclass(frozen=True)
class ConsumerGroupTargetAssignmentMetadataValue:
    assignment_epoch: int

    def encode(self) -> bytes:
        return _encode_epoch_value(self.assignment_epoch)

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview
    ) -> ConsumerGroupTargetAssignmentMetadataValue:
        return cls(_decode_epoch_value(data))


@dataclass(frozen=True)
class ConsumerGroupTargetAssignmentMemberValue:
    topic_partitions: Assignment = field(default_factory=dict)

    def encode(self) -> bytes:
        w = _flex_writer()
        _write_topic_partitions(w, self.topic_partitions)
        w.uvarint(0)
        return w.getvalue()

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview
    ) -> ConsumerGroupTargetAssignmentMemberValue:
        r = _flex_reader(data)
        tps = _read_topic_partitions(r)
        r.skip_tagged_fields()
        return cls(tps)


@dataclass(frozen=True)
class ConsumerGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned_partitions: Assignment = field(default_factory=dict)
    partitions_pending_revocation: Assignment = field(default_factory=dict)

    def encode(self) -> bytes:
        w = _flex_writer()
        w.int32(self.member_epoch)
        w.int32(self.previous_member_epoch)
        w.int8(self.state)
        _write_topic_partitions(w, self.assigned_partitions)
        _write_topic_partitions(w, self.partitions_pending_revocation)
        w.uvarint(0)
        return w.getvalue()

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview
    ) -> ConsumerGroupCurrentMemberAssignmentValue:
        r = _flex_reader(data)
        epoch = r.int32()
        previous = r.int32()
        state = r.int8()
        assigned = _read_topic_partitions(r)
        pending = _read_topic_partitions(r)
        r.skip_tagged_fields()
        return cls(epoch, previous, state, assigned, pending)


@dataclass(frozen=True)
class ConsumerGroupRegularExpressionValue:
    """A resolved subscription regex: the matching topics, the metadata version they were
    resolved against and when (ms)."""

    topics: tuple[str, ...]
    version: int
    timestamp: int

    def encode(self) -> bytes:
        w = _flex_writer()
        w.array_length(len(self.topics), True)
        for t in sorted(self.topics):
            w.string(t, True, False)
        w.int64(self.version)
        w.int64(self.timestamp)
        w.uvarint(0)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> ConsumerGroupRegularExpressionValue:
        r = _flex_reader(data)
        topics = tuple(_str(r, True) for _ in range(r.array_length(True, False)))
        version = r.int64()
        timestamp = r.int64()
        r.skip_tagged_fields()
        return cls(topics, version, timestamp)


_VALUE_CLASSES: dict[int, Any] = {
    OFFSET_COMMIT_KEY_V0: OffsetCommitValue,
    OFFSET_COMMIT_KEY: OffsetCommitValue,
    GROUP_METADATA_KEY: GroupMetadataValue,
    CONSUMER_GROUP_METADATA_KEY: ConsumerGroupMetadataValue,
    CONSUMER_GROUP_PARTITION_METADATA_KEY: ConsumerGroupPartitionMetadataValue,
    CONSUMER_GROUP_MEMBER_METADATA_KEY: ConsumerGroupMemberMetadataValue,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY: ConsumerGroupTargetAssignmentMetadataValue,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY: ConsumerGroupTargetAssignmentMemberValue,
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY: ConsumerGroupCurrentMemberAssignmentValue,
    CONSUMER_GROUP_REGULAR_EXPRESSION_KEY: ConsumerGroupRegularExpressionValue,
}


def decode_value(key_version: int, data: bytes | bytearray | memoryview | None) -> Any | None:
    """Decode the value of a record whose key has ``key_version``; None stays a tombstone."""
    if data is None:
        return None
    return _VALUE_CLASSES[key_version].decode(data)
