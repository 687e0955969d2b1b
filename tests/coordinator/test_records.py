"""``__consumer_offsets`` record formats: Kafka's bytes, written out by hand here."""

from __future__ import annotations

import struct
import uuid

from hypothesis import given
from hypothesis import strategies as st

from metamorphostreams.coordinator import (
    CoordinatorRecord,
    GroupCoordinator,
    GroupCoordinatorConfig,
)
from metamorphostreams.coordinator._shard import java_string_hash, kafka_uuid_string
from metamorphostreams.coordinator.records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
    CONSUMER_GROUP_MEMBER_METADATA_KEY,
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_PARTITION_METADATA_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
    GROUP_METADATA_KEY,
    OFFSET_COMMIT_KEY,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataValue,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitValue,
    RecordKey,
    TopicMetadata,
    decode_key,
    decode_value,
)


def s16(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def b32(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def cstr(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    b = s.encode()
    assert len(b) < 127
    return bytes([len(b) + 1]) + b


TID = uuid.UUID("0123456789abcdef0123456789abcdef")


def test_offset_commit_key_and_value_bytes() -> None:
    key = RecordKey(OFFSET_COMMIT_KEY, "grp", "orders", 3)
    assert key.encode() == struct.pack(">h", 1) + s16("grp") + s16("orders") + struct.pack(">i", 3)
    value = OffsetCommitValue(
        offset=42, leader_epoch=7, metadata="md", commit_timestamp=1_700_000_000_000
    )
    assert value.encode() == struct.pack(">hqi", 3, 42, 7) + s16("md") + struct.pack(
        ">q", 1_700_000_000_000
    )
    expiring = OffsetCommitValue(offset=1, metadata="", commit_timestamp=5, expire_timestamp=9)
    assert expiring.encode() == struct.pack(">hq", 1, 1) + s16("") + struct.pack(">qq", 5, 9)
    assert decode_key(key.encode()) == key
    assert decode_value(1, value.encode()) == value
    assert decode_value(1, expiring.encode()) == expiring


def test_offset_commit_value_old_and_flexible_versions_decode() -> None:
    v0 = struct.pack(">hq", 0, 10) + s16("m") + struct.pack(">q", 99)
    assert decode_value(0, v0) == OffsetCommitValue(10, -1, "m", 99)
    v4 = struct.pack(">hqi", 4, 10, 2) + cstr("m") + struct.pack(">q", 99) + b"\x00"
    assert decode_value(1, v4) == OffsetCommitValue(10, 2, "m", 99)


def test_group_metadata_bytes() -> None:
    key = RecordKey(GROUP_METADATA_KEY, "grp")
    assert key.encode() == struct.pack(">h", 2) + s16("grp")
    member = MemberMetadata("m-1", "inst", "cli", "/1.2.3.4", 30_000, 10_000, b"SUB", b"ASG")
    value = GroupMetadataValue("consumer", 5, "range", "m-1", 1234, (member,))
    expected = (
        struct.pack(">h", 3)
        + s16("consumer")
        + struct.pack(">i", 5)
        + s16("range")
        + s16("m-1")
        + struct.pack(">q", 1234)
        + struct.pack(">i", 1)
        + s16("m-1")
        + s16("inst")
        + s16("cli")
        + s16("/1.2.3.4")
        + struct.pack(">ii", 30_000, 10_000)
        + b32(b"SUB")
        + b32(b"ASG")
    )
    assert value.encode() == expected
    assert decode_value(2, expected) == value
    empty = GroupMetadataValue("", 0, None, None, 77)
    assert empty.encode() == struct.pack(">h", 3) + s16("") + struct.pack(">i", 0) + s16(
        None
    ) + s16(None) + struct.pack(">qi", 77, 0)


def test_group_metadata_v0_decodes() -> None:
    v0 = (
        struct.pack(">h", 0)
        + s16("consumer")
        + struct.pack(">i", 1)
        + s16("range")
        + s16("m")
        + struct.pack(">i", 1)
        + s16("m")
        + s16("c")
        + s16("h")
        + struct.pack(">i", 6000)
        + b32(b"S")
        + b32(b"A")
    )
    value = decode_value(2, v0)
    assert value.members[0] == MemberMetadata("m", None, "c", "h", -1, 6000, b"S", b"A")
    assert value.current_state_timestamp == -1


def test_consumer_group_record_bytes() -> None:
    assert RecordKey(CONSUMER_GROUP_METADATA_KEY, "g").encode() == struct.pack(">h", 3) + s16("g")
    assert RecordKey(
        CONSUMER_GROUP_MEMBER_METADATA_KEY, "g", member_id="m"
    ).encode() == struct.pack(">h", 5) + s16("g") + s16("m")
    assert ConsumerGroupMetadataValue(9).encode() == struct.pack(">hi", 0, 9) + b"\x00"
    assert (
        ConsumerGroupTargetAssignmentMetadataValue(4).encode() == struct.pack(">hi", 0, 4) + b"\x00"
    )
    partitions = ConsumerGroupPartitionMetadataValue((TopicMetadata(TID, "orders", 6),))
    assert (
        partitions.encode()
        == struct.pack(">h", 0)
        + b"\x02"
        + TID.bytes
        + cstr("orders")
        + struct.pack(">i", 6)
        + b"\x01\x00\x00"
    )
    member = ConsumerGroupMemberMetadataValue(
        "i", None, "cli", "/h", ("b", "a"), None, 30_000, "uniform"
    )
    assert member.encode() == (
        struct.pack(">h", 0)
        + cstr("i")
        + cstr(None)
        + cstr("cli")
        + cstr("/h")
        + b"\x03"
        + cstr("a")
        + cstr("b")
        + cstr(None)
        + struct.pack(">i", 30_000)
        + cstr("uniform")
        + b"\x00"
    )
    tps = {TID: frozenset({2, 0})}
    topic_partitions = b"\x02" + TID.bytes + b"\x03" + struct.pack(">ii", 0, 2) + b"\x00"
    assert (
        ConsumerGroupTargetAssignmentMemberValue(tps).encode()
        == struct.pack(">h", 0) + topic_partitions + b"\x00"
    )
    current = ConsumerGroupCurrentMemberAssignmentValue(5, 4, 1, tps, {})
    assert (
        current.encode() == struct.pack(">hiib", 0, 5, 4, 1) + topic_partitions + b"\x01" + b"\x00"
    )


def test_tagged_fields_from_newer_kafka_are_skipped() -> None:
    # ConsumerGroupMetadataValue with MetadataHash (tag 0, int64) as Kafka 4.1 writes it.
    data = struct.pack(">hi", 0, 12) + b"\x01\x00\x08" + struct.pack(">q", 123456789)
    assert decode_value(CONSUMER_GROUP_METADATA_KEY, data) == ConsumerGroupMetadataValue(12)


@given(
    st.builds(
        ConsumerGroupCurrentMemberAssignmentValue,
        st.integers(-2, 2**31 - 1),
        st.integers(-2, 2**31 - 1),
        st.sampled_from([0, 1, 2]),
        st.dictionaries(st.uuids(), st.frozensets(st.integers(0, 10_000), min_size=1), max_size=4),
        st.dictionaries(st.uuids(), st.frozensets(st.integers(0, 10_000), min_size=1), max_size=4),
    )
)
def test_current_assignment_round_trip(value: ConsumerGroupCurrentMemberAssignmentValue) -> None:
    assert decode_value(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, value.encode()) == value


@given(
    st.builds(
        ConsumerGroupMemberMetadataValue,
        st.none() | st.text(max_size=20),
        st.none() | st.text(max_size=5),
        st.text(max_size=200),
        st.text(max_size=20),
        st.lists(st.text(min_size=1, max_size=300), unique=True, max_size=5).map(
            lambda x: tuple(sorted(x))
        ),
        st.none() | st.text(max_size=10),
        st.integers(-1, 2**31 - 1),
        st.none() | st.sampled_from(["uniform", "range"]),
    )
)
def test_member_metadata_round_trip(value: ConsumerGroupMemberMetadataValue) -> None:
    assert decode_value(CONSUMER_GROUP_MEMBER_METADATA_KEY, value.encode()) == value


@given(st.text(max_size=40), st.text(max_size=40), st.integers(0, 2**31 - 1), st.integers(3, 8))
def test_key_round_trip(group: str, other: str, partition: int, version: int) -> None:
    if version in (
        CONSUMER_GROUP_METADATA_KEY,
        CONSUMER_GROUP_PARTITION_METADATA_KEY,
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
    ):
        key = RecordKey(version, group)
    elif version in (
        CONSUMER_GROUP_MEMBER_METADATA_KEY,
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
    ):
        key = RecordKey(version, group, member_id=other)
    else:
        key = RecordKey(OFFSET_COMMIT_KEY, group, other, partition)
    assert decode_key(key.encode()) == key


def test_unknown_record_types_are_ignored_on_replay() -> None:
    coord = GroupCoordinator(GroupCoordinatorConfig(), 50)
    share_key = struct.pack(">h", 10) + s16("share-group")
    coord.replay(CoordinatorRecord(0, share_key, b"\x00\x00\x00"))
    assert coord._shard.groups == {}


def test_java_string_hash_and_partition_for() -> None:
    assert java_string_hash("test") == 3556498
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00  # a surrogate pair
    assert java_string_hash("consumer-group-0001") == -84877114
    coord = GroupCoordinator(GroupCoordinatorConfig(), 50)
    assert coord.partition_for("test") == 3556498 % 50
    assert coord.partition_for("polygenelubricants") == 0  # Utils.abs(MIN_VALUE) is 0
    h = java_string_hash("consumer-group-0001")
    assert coord.partition_for("consumer-group-0001") == abs(h) % 50


def test_kafka_uuid_string() -> None:
    assert kafka_uuid_string(uuid.UUID(int=0)) == "AAAAAAAAAAAAAAAAAAAAAA"
    assert kafka_uuid_string(uuid.UUID(int=2**128 - 1)) == "_____________________w"
