"""Batch header parsing, CRC checks, validation and in-place patching (protocol/record_batch)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from metamorphostreams.protocol import record_batch as rb
from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    CompressionType,
    TimestampType,
    iter_batch_headers,
    peek_magic,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    update_crc,
    validate_batches,
    verify_crc,
)
from metamorphostreams.protocol.records import build_batch, decode_batch

INT32_MAX = 2**31 - 1
int8s = st.integers(-(2**7), 2**7 - 1)
int16s = st.integers(-(2**15), 2**15 - 1)
int32s = st.integers(-(2**31), INT32_MAX)
int64s = st.integers(-(2**63), 2**63 - 1)


def kafka_python_batch(
    count: int = 3, *, producer_id: int = -1, base_sequence: int = -1, transactional: bool = False
) -> bytes:
    """A batch from an independent encoder (kafka-python), not from our builder."""
    builder = KpBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=base_sequence,
        batch_size=1 << 20,
    )
    for i in range(count):
        builder.append(
            i, timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=b"v" * i, headers=[]
        )
    return bytes(builder.build())


def test_field_offsets_match_the_wire_layout() -> None:
    # Write a distinct value at every named offset and check parse() reads it back there.
    buf = bytearray(kafka_python_batch())
    fields = [
        (rb.BASE_OFFSET_OFFSET, ">q", 0x0102030405060708, "base_offset"),
        (rb.PARTITION_LEADER_EPOCH_OFFSET, ">i", 0x11223344, "partition_leader_epoch"),
        (rb.ATTRIBUTES_OFFSET, ">h", 0x0015, "attributes"),
        (rb.LAST_OFFSET_DELTA_OFFSET, ">i", 0x21222324, "last_offset_delta"),
        (rb.BASE_TIMESTAMP_OFFSET, ">q", 0x3132333435363738, "base_timestamp"),
        (rb.MAX_TIMESTAMP_OFFSET, ">q", 0x4142434445464748, "max_timestamp"),
        (rb.PRODUCER_ID_OFFSET, ">q", 0x5152535455565758, "producer_id"),
        (rb.PRODUCER_EPOCH_OFFSET, ">h", 0x6162, "producer_epoch"),
        (rb.BASE_SEQUENCE_OFFSET, ">i", 0x71727374, "base_sequence"),
        (rb.RECORDS_COUNT_OFFSET, ">i", 0x01020304, "records_count"),
    ]
    for offset, fmt, value, _ in fields:
        struct.pack_into(fmt, buf, offset, value)
    header = BatchHeader.parse(buf)
    for _, _, value, name in fields:
        assert getattr(header, name) == value, name
    assert header.magic == rb.MAGIC_V2
    assert struct.unpack_from(">I", buf, rb.CRC_OFFSET)[0] == header.crc
    assert rb.MIN_BATCH_LENGTH == 49


def test_parse_matches_kafka_python_reading_of_the_same_bytes() -> None:
    data = kafka_python_batch(5, producer_id=42, base_sequence=9, transactional=True)
    ours = BatchHeader.parse(data)
    theirs = KpBatch(data)
    assert ours.base_offset == theirs.base_offset
    assert ours.size == len(data) == theirs.size_in_bytes
    assert ours.crc == theirs.crc
    assert ours.attributes == theirs.attributes
    assert ours.last_offset_delta == theirs.last_offset_delta
    assert ours.max_timestamp == theirs.max_timestamp
    assert ours.base_timestamp == theirs.first_timestamp
    assert (ours.producer_id, ours.producer_epoch) == (theirs.producer_id, theirs.producer_epoch)
    assert ours.base_sequence == theirs.base_sequence
    assert ours.is_transactional and theirs.is_transactional
    assert ours.records_count == 5
    assert ours.last_offset == 4 and ours.next_offset == 5
    assert ours.last_sequence == 13
    assert verify_crc(data, 0, ours)


@given(
    base_offset=st.integers(0, 2**62),
    ple=int32s,
    codec=st.sampled_from(list(CompressionType)),
    ts_type=st.sampled_from(list(TimestampType)),
    transactional=st.booleans(),
    control=st.booleans(),
    producer_id=st.integers(-1, 2**63 - 1),
    producer_epoch=int16s,
    base_sequence=st.integers(-1, INT32_MAX),
    timestamp=st.integers(-1, 2**50),
    count=st.integers(1, 5),
)
def test_header_round_trip(
    base_offset: int,
    ple: int,
    codec: CompressionType,
    ts_type: TimestampType,
    transactional: bool,
    control: bool,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    timestamp: int,
    count: int,
) -> None:
    data = build_batch(
        [(b"k", b"v", [], timestamp + i) for i in range(count)],
        base_offset=base_offset,
        compression=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=transactional,
        is_control=control,
        timestamp_type=ts_type,
        partition_leader_epoch=ple,
    )
    header = BatchHeader.parse(data)
    assert header.size == len(data)
    assert header.base_offset == base_offset
    assert header.partition_leader_epoch == ple
    assert header.compression is codec
    assert header.timestamp_type is ts_type
    assert header.is_transactional is transactional
    assert header.is_control is control
    assert not header.has_delete_horizon
    assert header.producer_id == producer_id
    assert header.producer_epoch == producer_epoch
    assert header.base_sequence == base_sequence
    assert header.records_count == count
    assert header.last_offset_delta == count - 1
    assert header.base_timestamp == timestamp
    assert header.max_timestamp == timestamp + count - 1
    assert verify_crc(data, 0, header)


@given(base=st.integers(0, INT32_MAX), delta=st.integers(0, INT32_MAX))
def test_last_sequence_wraps_like_kafka(base: int, delta: int) -> None:
    header = BatchHeader.parse(build_batch([(None, b"x")], base_sequence=base, producer_id=1))
    header = dataclasses.replace(header, last_offset_delta=delta)
    expected = (base + delta) % (INT32_MAX + 1)  # int32 sequences wrap to 0, never negative
    assert header.last_sequence == expected
    assert rb.increment_sequence(base, delta) == expected


def test_last_sequence_cases() -> None:
    def seq(base: int, count: int) -> int:
        data = build_batch([(None, b"x")] * count, base_sequence=base, producer_id=7)
        return BatchHeader.parse(data).last_sequence

    assert seq(0, 1) == 0
    assert seq(10, 5) == 14
    assert seq(INT32_MAX, 1) == INT32_MAX
    assert seq(INT32_MAX, 2) == 0
    assert seq(INT32_MAX - 1, 4) == 1
    assert seq(-1, 3) == -1


def test_parse_rejects_short_input_wrong_magic_and_tiny_length() -> None:
    data = bytearray(kafka_python_batch())
    with pytest.raises(DecodeError):
        BatchHeader.parse(data[: BATCH_HEADER_SIZE - 1])
    with pytest.raises(DecodeError):
        BatchHeader.parse(data, len(data) - 10)
    wrong_magic = bytearray(data)
    wrong_magic[rb.MAGIC_OFFSET] = 1
    with pytest.raises(DecodeError):
        BatchHeader.parse(wrong_magic)
    tiny = bytearray(data)
    struct.pack_into(">i", tiny, rb.BATCH_LENGTH_OFFSET, 48)
    with pytest.raises(DecodeError):
        BatchHeader.parse(tiny)
    # Same bytes at a non-zero position parse the same.
    assert BatchHeader.parse(b"\0" * 7 + bytes(data), 7) == BatchHeader.parse(data)


def test_unknown_codec_id_raises_on_access() -> None:
    data = bytearray(kafka_python_batch())
    struct.pack_into(">h", data, rb.ATTRIBUTES_OFFSET, 6)
    with pytest.raises(DecodeError):
        _ = BatchHeader.parse(data).compression


def test_peek_magic() -> None:
    data = kafka_python_batch()
    assert peek_magic(data) == 2
    assert peek_magic(data[:16]) is None
    assert peek_magic(data[:17]) == 2
    assert peek_magic(b"") is None
    legacy = bytearray(data)
    for magic in (0, 1, -1):
        legacy[16] = magic & 0xFF
        assert peek_magic(legacy) == magic
    assert peek_magic(b"\0" * 3 + data, 3) == 2


@given(st.data())
def test_any_flipped_byte_inside_the_crc_range_is_detected(data: st.DataObject) -> None:
    batch = bytearray(build_batch([(b"key", b"value" * 10, [("h", b"1")], 5)] * 3))
    index = data.draw(st.integers(rb.ATTRIBUTES_OFFSET, len(batch) - 1))
    flip = data.draw(st.integers(1, 255))
    batch[index] ^= flip
    assert not verify_crc(batch, 0, BatchHeader.parse(batch))
    result = validate_batches(batch, 1 << 20, from_client=False)
    assert result.error == ErrorCode.CORRUPT_MESSAGE


@given(st.data())
def test_bytes_outside_the_crc_range_do_not_matter(data: st.DataObject) -> None:
    batch = bytearray(build_batch([(b"key", b"value", [], 5)]))
    index = data.draw(st.integers(0, rb.PARTITION_LEADER_EPOCH_OFFSET + 3))
    if rb.BATCH_LENGTH_OFFSET <= index < rb.PARTITION_LEADER_EPOCH_OFFSET:
        return  # the length field decides where the CRC range ends
    batch[index] ^= data.draw(st.integers(1, 255))
    assert verify_crc(batch, 0, BatchHeader.parse(batch))


def test_verify_crc_on_a_cut_batch_is_false_not_an_exception() -> None:
    batch = build_batch([(b"k", b"v")])
    header = BatchHeader.parse(batch)
    assert verify_crc(batch, 0, header)
    assert not verify_crc(batch[:-1], 0, header)


@given(
    st.lists(st.integers(1, 4), min_size=0, max_size=5),
    st.integers(0, 200),
)
def test_iter_batch_headers_positions_and_partial_tail(counts: list[int], cut: int) -> None:
    batches = [
        build_batch([(b"k", b"v" * n)] * n, base_offset=100 * i) for i, n in enumerate(counts)
    ]
    tail_source = build_batch([(b"tail", b"x" * 100)])
    tail = tail_source[: cut % len(tail_source)]  # never the whole batch
    buf = b"".join(batches) + tail
    seen = list(iter_batch_headers(memoryview(buf)))
    assert [h.base_offset for _, h in seen] == [100 * i for i in range(len(counts))]
    expected_pos = 0
    for (pos, header), batch in zip(seen, batches, strict=True):
        assert pos == expected_pos
        assert header.size == len(batch)
        expected_pos += len(batch)


def test_iter_batch_headers_raises_on_garbage_it_cannot_step_over() -> None:
    good = build_batch([(b"k", b"v")])
    bad_length = bytearray(good)
    struct.pack_into(">i", bad_length, rb.BATCH_LENGTH_OFFSET, 0)
    with pytest.raises(DecodeError):
        list(iter_batch_headers(good + bytes(bad_length)))
    bad_magic = bytearray(good)
    bad_magic[rb.MAGIC_OFFSET] = 1
    it = iter_batch_headers(good + bytes(bad_magic))
    assert next(it)[0] == 0
    with pytest.raises(DecodeError):
        next(it)
    assert list(iter_batch_headers(b"")) == []
    assert list(iter_batch_headers(good[: LOG_OVERHEAD - 1])) == []


# --- validate_batches -------------------------------------------------------------------


def _valid() -> bytes:
    return kafka_python_batch(3, producer_id=5, base_sequence=0)


def test_validate_accepts_real_client_batches() -> None:
    result = validate_batches(_valid(), 1 << 20, require_single_batch=True)
    assert result.ok and result and result.error == ErrorCode.NONE
    assert result.message is None
    two = validate_batches(_valid() + _valid(), 1 << 20)
    assert two.ok and two.batch_count == 2


def test_validate_empty() -> None:
    assert validate_batches(b"", 100).error == ErrorCode.INVALID_RECORD
    assert validate_batches(b"", 100, allow_empty=True).ok


@pytest.mark.parametrize("cut", [1, 5, 20, 60])
def test_validate_partial_or_trailing_bytes_are_corrupt(cut: int) -> None:
    batch = _valid()
    assert validate_batches(batch[:-cut], 1 << 20).error == ErrorCode.CORRUPT_MESSAGE
    assert validate_batches(batch + batch[:cut], 1 << 20).error == ErrorCode.CORRUPT_MESSAGE


def test_validate_size_limit_is_inclusive() -> None:
    batch = _valid()
    assert validate_batches(batch, len(batch)).ok
    too_big = validate_batches(batch, len(batch) - 1)
    assert too_big.error == ErrorCode.MESSAGE_TOO_LARGE and not too_big


def test_validate_magic_and_length() -> None:
    batch = bytearray(_valid())
    batch[rb.MAGIC_OFFSET] = 1
    assert validate_batches(batch, 1 << 20).error == ErrorCode.INVALID_RECORD
    batch = bytearray(_valid())
    struct.pack_into(">i", batch, rb.BATCH_LENGTH_OFFSET, 40)
    assert validate_batches(batch, 1 << 20).error == ErrorCode.CORRUPT_MESSAGE
    struct.pack_into(">i", batch, rb.BATCH_LENGTH_OFFSET, -5)
    assert validate_batches(batch, 1 << 20).error == ErrorCode.CORRUPT_MESSAGE


def _patched(offset: int, fmt: str, value: int) -> bytearray:
    batch = bytearray(_valid())
    struct.pack_into(fmt, batch, offset, value)
    update_crc(batch)
    return batch


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "error"),
    [
        (rb.RECORDS_COUNT_OFFSET, ">i", 4, ErrorCode.INVALID_RECORD),  # count != delta + 1
        (rb.RECORDS_COUNT_OFFSET, ">i", 0, ErrorCode.INVALID_RECORD),
        (rb.RECORDS_COUNT_OFFSET, ">i", -1, ErrorCode.INVALID_RECORD),
        (rb.LAST_OFFSET_DELTA_OFFSET, ">i", -1, ErrorCode.INVALID_RECORD),
        (rb.ATTRIBUTES_OFFSET, ">h", rb.CONTROL_MASK, ErrorCode.INVALID_RECORD),
        (rb.BASE_SEQUENCE_OFFSET, ">i", -1, ErrorCode.INVALID_RECORD),  # pid without sequence
        (rb.ATTRIBUTES_OFFSET, ">h", 5, ErrorCode.CORRUPT_MESSAGE),  # codec id 5 is undefined
    ],
)
def test_validate_client_batch_rules(offset: int, fmt: str, value: int, error: ErrorCode) -> None:
    batch = _patched(offset, fmt, value)
    result = validate_batches(batch, 1 << 20)
    assert result.error == error
    assert result.message


def test_validate_client_rules_can_be_relaxed_for_replication() -> None:
    batch = _patched(rb.ATTRIBUTES_OFFSET, ">h", rb.CONTROL_MASK)
    assert validate_batches(batch, 1 << 20, from_client=False).ok


def test_validate_single_batch_and_zstd_rules() -> None:
    two = _valid() + _valid()
    assert validate_batches(two, 1 << 20, require_single_batch=True).error == (
        ErrorCode.INVALID_RECORD
    )
    zstd = build_batch([(b"k", b"v")], compression=CompressionType.ZSTD)
    assert validate_batches(zstd, 1 << 20).ok
    assert validate_batches(zstd, 1 << 20, allow_zstd=False).error == (
        ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    )


# --- in-place patching ------------------------------------------------------------------


@given(offset=st.integers(0, 2**63 - 1), epoch=int32s)
def test_offset_and_epoch_stamps_keep_the_crc(offset: int, epoch: int) -> None:
    original = _valid()
    buf = bytearray(b"pad" + original)
    set_base_offset(buf, 3, offset)
    set_partition_leader_epoch(memoryview(buf), 3, epoch)
    header = BatchHeader.parse(buf, 3)
    assert header.base_offset == offset and header.partition_leader_epoch == epoch
    assert verify_crc(buf, 3, header)
    assert buf[3 + rb.MAGIC_OFFSET :] == original[rb.MAGIC_OFFSET :]
    assert KpBatch(bytes(buf[3:])).base_offset == offset


@given(timestamp=st.integers(0, 2**62))
def test_set_log_append_time(timestamp: int) -> None:
    original = build_batch([(b"a", b"1", [], 10), (b"b", b"2", [], 30)], base_offset=7)
    buf = bytearray(original)
    set_log_append_time(buf, 0, timestamp)
    header = BatchHeader.parse(buf)
    assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert header.max_timestamp == timestamp
    assert header.base_timestamp == 10  # Kafka leaves baseTimestamp alone
    assert verify_crc(buf, 0, header)
    assert buf[BATCH_HEADER_SIZE:] == original[BATCH_HEADER_SIZE:]
    _, records = decode_batch(buf)
    assert [r.timestamp for r in records] == [timestamp, timestamp]
    # An independent reader agrees about the CRC and the timestamps.
    theirs = KpBatch(bytes(buf))
    assert theirs.validate_crc()
    assert [r.timestamp for r in theirs] == [timestamp, timestamp]


def test_set_log_append_time_is_a_no_op_when_already_set_and_keeps_flags() -> None:
    buf = bytearray(
        build_batch(
            [(b"a", b"1", [], 10)],
            is_transactional=True,
            producer_id=3,
            producer_epoch=0,
            base_sequence=0,
            compression=CompressionType.GZIP,
        )
    )
    set_log_append_time(buf, 0, 99)
    once = bytes(buf)
    set_log_append_time(buf, 0, 99)
    assert bytes(buf) == once
    header = BatchHeader.parse(buf)
    assert header.is_transactional and header.compression is CompressionType.GZIP
    set_log_append_time(buf, 0, 100)
    assert BatchHeader.parse(buf).max_timestamp == 100
    assert verify_crc(buf, 0, BatchHeader.parse(buf))
