"""Record encode/decode (protocol/records, protocol/_varint): round trips, byte compatibility
with kafka-python and aiokafka, and every record batch real clients sent (golden frames)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record import util as kp_util
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from metamorphostreams.protocol import record_batch as rb
from metamorphostreams.protocol._varint import (
    read_varint,
    read_varlong,
    varint_size,
    write_varint,
    write_varlong,
)
from metamorphostreams.protocol.compression import XERIAL_MAGIC
from metamorphostreams.protocol.errors import DecodeError, ErrorCode
from metamorphostreams.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    CompressionType,
    TimestampType,
    peek_magic,
    update_crc,
    validate_batches,
    verify_crc,
)
from metamorphostreams.protocol.records import (
    ControlRecordType,
    Record,
    build_batch,
    build_end_txn_marker,
    decode_batch,
    iter_batches,
    iter_records,
    parse_control_key,
    parse_end_txn_marker,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
CODECS = list(CompressionType)

# --- varints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (63, "7e"), (-64, "7f"), (64, "8001"),
     (300, "d804"), (2**31 - 1, "feffffff0f"), (-(2**31), "ffffffff0f")],
)  # fmt: skip
def test_varint_known_encodings(value: int, encoded: str) -> None:
    out = bytearray()
    write_varint(out, value)
    assert out.hex() == encoded
    assert varint_size(value) == len(out)
    assert read_varint(b"\xaa" + out, 1) == (value, 1 + len(out))


@given(INT32)
def test_varint_matches_kafka_python(value: int) -> None:
    ours = bytearray()
    write_varint(ours, value)
    theirs = bytearray()
    kp_util.encode_varint(value, theirs.append)
    assert ours == theirs
    assert read_varint(bytes(theirs), 0) == (value, len(theirs))


@given(INT64)
def test_varlong_matches_kafka_python(value: int) -> None:
    ours = bytearray()
    write_varlong(ours, value)
    theirs = bytearray()
    kp_util.encode_varint(value, theirs.append)
    assert ours == theirs
    assert read_varlong(ours, 0) == (value, len(ours))


def test_varint_rejects_bad_input() -> None:
    with pytest.raises(DecodeError):
        read_varint(b"\x80\x80", 0)  # truncated
    with pytest.raises(DecodeError):
        read_varint(b"\x80\x80\x80\x80\x80\x01", 0)  # six bytes for an int32
    with pytest.raises(DecodeError):
        read_varint(b"\xff\xff\xff\xff\x1f", 0)  # fits five bytes but not 32 bits
    with pytest.raises(DecodeError):
        read_varlong(b"\x80" * 10 + b"\x01", 0)
    with pytest.raises(ValueError):
        write_varint(bytearray(), 2**31)
    with pytest.raises(ValueError):
        write_varlong(bytearray(), -(2**63) - 1)


# --- round trips ------------------------------------------------------------------------

maybe_bytes = st.none() | st.binary(max_size=200)
headers = st.lists(st.tuples(st.text(max_size=12), maybe_bytes), max_size=4)
timestamps = st.integers(0, 2**45)
record_tuples = st.lists(
    st.tuples(maybe_bytes, maybe_bytes, headers, timestamps), min_size=1, max_size=12
)


@settings(max_examples=150)
@given(
    records=record_tuples,
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(0, 2**60),
    ts_type=st.sampled_from(list(TimestampType)),
)
def test_build_then_iter_round_trip(
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    codec: CompressionType,
    base_offset: int,
    ts_type: TimestampType,
) -> None:
    data = build_batch(records, base_offset=base_offset, compression=codec, timestamp_type=ts_type)
    header = BatchHeader.parse(data)
    assert header.max_timestamp == max(r[3] for r in records)
    assert header.base_timestamp == records[0][3]
    decoded = list(iter_records(data))
    assert len(decoded) == len(records)
    for i, (record, (key, value, hdrs, ts)) in enumerate(zip(decoded, records, strict=True)):
        assert record.offset == base_offset + i
        assert record.key == key and record.value == value and record.headers == hdrs
        expected_ts = header.max_timestamp if ts_type is TimestampType.LOG_APPEND_TIME else ts
        assert record.timestamp == expected_ts


def test_explicit_offsets_with_gaps_survive_like_compacted_batches() -> None:
    kept = [Record(103, 50, b"a", b"1"), Record(107, 40, b"b", None, [("h", None)])]
    data = build_batch(kept, base_offset=100, last_offset_delta=9)
    header = BatchHeader.parse(data)
    assert (header.base_offset, header.last_offset, header.records_count) == (100, 109, 2)
    assert header.base_timestamp == 50 and header.max_timestamp == 50
    assert list(iter_records(data)) == kept
    with pytest.raises(ValueError):
        build_batch([Record(5, 0, None, None), Record(5, 0, None, None)], base_offset=0)
    with pytest.raises(ValueError):
        build_batch(kept, base_offset=100, last_offset_delta=3)


def test_tuple_without_timestamp_takes_base_timestamp() -> None:
    data = build_batch([(b"k", b"v"), (b"k2", b"v2", [("a", b"b")])], base_timestamp=1234)
    assert [r.timestamp for r in iter_records(data)] == [1234, 1234]
    assert [r.offset for r in iter_records(data)] == [0, 1]


def test_empty_batch_follows_kafkas_write_empty_header() -> None:
    data = build_batch(
        [],
        base_offset=40,
        last_offset_delta=5,
        compression=CompressionType.GZIP,
        producer_id=9,
        producer_epoch=2,
        base_sequence=17,
        base_timestamp=777,
    )
    assert len(data) == BATCH_HEADER_SIZE
    header = BatchHeader.parse(data)
    assert header.records_count == 0 and header.compression is CompressionType.NONE
    assert header.last_offset == 45 and header.last_sequence == 22
    assert header.base_timestamp == header.max_timestamp == 777
    assert list(iter_records(data)) == []
    theirs = KpBatch(data)
    assert theirs.validate_crc() and list(theirs) == []


def test_many_batches_in_one_buffer_and_a_partial_tail() -> None:
    first = build_batch([(b"a", b"1", [], 1)], base_offset=0)
    second = build_batch([(b"b", b"2", [], 2)] * 2, base_offset=1, compression=CompressionType.LZ4)
    buf = first + second + second[:30]
    assert [r.offset for r in iter_records(buf)] == [0, 1, 2]
    assert [h.records_count for h, _ in iter_batches(buf)] == [1, 2]


# --- decode errors ----------------------------------------------------------------------


def test_crc_corruption_raises_unless_told_not_to_check() -> None:
    data = bytearray(build_batch([(b"key", b"value", [], 1)]))
    data[data.index(b"value") + 4] ^= 0x03
    with pytest.raises(DecodeError):
        decode_batch(data)
    _, records = decode_batch(data, check_crc=False)
    assert records[0].value == b"valuf"


@pytest.mark.parametrize("codec", CODECS)
def test_records_count_must_match_the_records_present(codec: CompressionType) -> None:
    data = build_batch([(b"k", b"v", [], 1)] * 3, compression=codec)
    for lie in (2, 4):
        bad = bytearray(data)
        struct.pack_into(">i", bad, rb.RECORDS_COUNT_OFFSET, lie)
        update_crc(bad)
        with pytest.raises(DecodeError):
            decode_batch(bad)


def test_malformed_record_bodies_raise() -> None:
    data = bytearray(build_batch([(b"k", b"v", [("h", b"x")], 1)]))
    body = BATCH_HEADER_SIZE
    # Record layout here: length, attributes, ts delta, offset delta, key length, "k",
    # value length, "v", header count, header key length, "h", header value length, "x".
    for index, value in [
        (body, 0x7E),  # record length past the batch end
        (body, 0x02),  # record length shorter than its fields
        (body + 4, 0x7E),  # key length past the record end
        (body + 9, 0x01),  # null header key
        (body + 10, 0xFF),  # header key not UTF-8
    ]:
        bad = bytearray(data)
        bad[index] = value
        update_crc(bad)
        with pytest.raises(DecodeError):
            decode_batch(bad)
    assert decode_batch(data)[1][0].headers == [("h", b"x")]
    gzip_bad = bytearray(build_batch([(b"k", b"v")], compression=CompressionType.GZIP))
    gzip_bad[BATCH_HEADER_SIZE + 12] ^= 0xFF
    update_crc(gzip_bad)
    with pytest.raises(DecodeError):
        decode_batch(gzip_bad)


def test_max_size_bounds_decompression_of_records() -> None:
    data = build_batch([(None, b"\0" * 200_000)], compression=CompressionType.ZSTD)
    assert len(data) < 1000
    with pytest.raises(DecodeError):
        decode_batch(data, max_size=100_000)
    assert decode_batch(data, max_size=300_000)[1][0].value == b"\0" * 200_000


# --- control records --------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_end_txn_marker(commit: bool) -> None:
    data = build_end_txn_marker(
        commit=commit, producer_id=11, producer_epoch=3, coordinator_epoch=8, timestamp=99
    )
    header, records = decode_batch(data)
    assert header.is_control and header.is_transactional
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (11, 3, -1)
    kind = parse_control_key(records[0].key)
    assert kind is (ControlRecordType.COMMIT if commit else ControlRecordType.ABORT)
    assert records[0].key == struct.pack(">hh", 0, int(kind))
    assert parse_end_txn_marker(records[0].value) == 8
    assert list(iter_records(data, include_control=False)) == []
    theirs = AioBatch(data)
    assert theirs.is_control_batch and theirs.validate_crc()
    with pytest.raises(DecodeError):
        parse_control_key(b"\x00")
    with pytest.raises(DecodeError):
        parse_control_key(struct.pack(">hh", 0, 42))


# --- byte compatibility with independent encoders ---------------------------------------


def _their_build(builder_cls: Any, records: list[Any], codec: int) -> bytes:
    builder = builder_cls(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=31,
        producer_epoch=2,
        base_sequence=5,
        batch_size=1 << 22,
    )
    for i, (key, value, hdrs, ts) in enumerate(records):
        builder.append(i, timestamp=ts, key=key, value=value, headers=hdrs)
    return bytes(builder.build())


def _ours(records: list[Any], codec: CompressionType, ple: int) -> bytes:
    return build_batch(
        records,
        compression=codec,
        producer_id=31,
        producer_epoch=2,
        base_sequence=5,
        partition_leader_epoch=ple,
    )


@settings(max_examples=80)
@given(record_tuples)
def test_uncompressed_bytes_identical_to_kafka_python_and_aiokafka(records: list[Any]) -> None:
    # kafka-python stamps partitionLeaderEpoch 0, aiokafka -1 like the Java producer.
    assert _ours(records, CompressionType.NONE, 0) == _their_build(KpBuilder, records, 0)
    assert _ours(records, CompressionType.NONE, -1) == _their_build(AioBuilder, records, 0)


def _same_records(theirs: Any, ours: list[Record]) -> None:
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs]
    assert got == [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in ours]


@settings(max_examples=60)
@given(records=record_tuples, codec=st.sampled_from(CODECS))
def test_aiokafka_reads_ours_and_we_read_theirs(records: list[Any], codec: CompressionType) -> None:
    ours = _ours(records, codec, -1)
    theirs = _their_build(AioBuilder, records, int(codec))
    assert AioBatch(ours).validate_crc()
    _same_records(AioBatch(ours), list(iter_records(ours)))
    assert list(iter_records(theirs)) == list(iter_records(ours))


@settings(max_examples=40)
@given(records=record_tuples, codec=st.sampled_from([CompressionType.NONE, CompressionType.GZIP]))
def test_kafka_python_reads_ours_and_we_read_theirs(
    records: list[Any], codec: CompressionType
) -> None:
    # kafka-python here has no snappy/lz4/zstd library; gzip is in its standard library.
    ours = _ours(records, codec, 0)
    theirs = _their_build(KpBuilder, records, int(codec))
    batch = KpBatch(ours)
    assert batch.validate_crc()
    _same_records(KpBatch(ours), list(iter_records(ours)))
    assert list(iter_records(theirs)) == list(iter_records(ours))


# --- golden frames from real clients ----------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"  # ../shared from the repo


class _Reader:
    """Just enough of the request grammar to reach Produce's records fields."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def fixed(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    def skip(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + max(n, 0)]
        self.pos += max(n, 0)
        return chunk

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.skip(self.uvarint())


def produce_partitions(frame: bytes, version: int) -> list[tuple[str, int, bytes]]:
    """(topic, partition, records) of a Produce request frame (size prefix removed)."""
    r = _Reader(frame)
    r.fixed(">h"), r.fixed(">h"), r.fixed(">i")
    r.skip(r.fixed(">h"))  # client id keeps its int16 length even in header v2
    flexible = version >= 9
    if flexible:
        r.tags()
    if version >= 3:
        r.skip(r.uvarint() - 1 if flexible else r.fixed(">h"))  # transactional id
    r.fixed(">h"), r.fixed(">i")  # acks, timeout
    out = []
    for _ in range(r.uvarint() - 1 if flexible else r.fixed(">i")):
        topic = r.skip(r.uvarint() - 1 if flexible else r.fixed(">h")).decode()
        for _ in range(r.uvarint() - 1 if flexible else r.fixed(">i")):
            partition = r.fixed(">i")
            out.append((topic, partition, r.skip(r.uvarint() - 1 if flexible else r.fixed(">i"))))
            if flexible:
                r.tags()
        if flexible:
            r.tags()
    if flexible:
        r.tags()
    assert r.pos == len(frame), "produce frame not consumed exactly"
    return out


def _golden_produce() -> list[tuple[dict[str, Any], str, int, bytes]]:
    if not (GOLDEN / "index.json").is_file():
        return []
    entries = json.loads((GOLDEN / "index.json").read_text())
    found = []
    for entry in entries:
        if entry["api_name"] == "Produce":
            frame = (GOLDEN / entry["file"]).read_bytes()
            for topic, partition, records in produce_partitions(frame, entry["api_version"]):
                found.append((entry, topic, partition, records))
    return found


GOLDEN_PRODUCE = _golden_produce()
GOLDEN_V2 = [g for g in GOLDEN_PRODUCE if "magic=2" in g[0]["variant"]]
GOLDEN_LEGACY = [g for g in GOLDEN_PRODUCE if "magic=2" not in g[0]["variant"]]
needs_golden = pytest.mark.skipif(not GOLDEN_PRODUCE, reason="golden frames not present")


def _gid(g: tuple[dict[str, Any], str, int, bytes]) -> str:
    return f"{g[0]['file'].split('/', 1)[1]}:{g[2]}"


@needs_golden
def test_golden_frames_were_all_found() -> None:
    assert len(GOLDEN_V2) >= 50 and len(GOLDEN_LEGACY) == 9
    clients = {g[0]["client"] for g in GOLDEN_V2}
    assert clients == {"confluent-kafka", "kafka-python", "aiokafka", "kafkajs"}
    codecs = {BatchHeader.parse(g[3]).compression for g in GOLDEN_V2}
    assert codecs == set(CompressionType)


@needs_golden
@pytest.mark.parametrize("golden", GOLDEN_V2, ids=_gid)
def test_golden_magic2_batches(golden: tuple[dict[str, Any], str, int, bytes]) -> None:
    entry, _, _, data = golden
    variant = entry["variant"]
    result = validate_batches(data, 1 << 20, require_single_batch=True)
    assert result.error == ErrorCode.NONE, result.message
    header, records = decode_batch(data)
    assert verify_crc(data, 0, header)
    assert header.compression.name.lower() == variant.split("codec=")[1].split()[0]
    assert header.has_producer_id == ("idempotent" in variant)
    assert header.is_transactional == ("transactional" in variant)
    assert not header.is_control
    assert len(records) == header.records_count >= 1
    assert [r.offset for r in records] == list(range(len(records)))
    assert all(r.key and r.value for r in records)
    assert header.max_timestamp == max(r.timestamp for r in records)
    if header.compression is CompressionType.SNAPPY:
        xerial = data[BATCH_HEADER_SIZE:].startswith(XERIAL_MAGIC)
        assert xerial == (entry["client"] in {"kafka-python", "aiokafka"})
    # An independent reader sees exactly the same records.
    _same_records(AioBatch(data), records)


@needs_golden
def test_golden_record_contents() -> None:
    by_key = {}
    for entry, _, _, data in GOLDEN_V2:
        if "codec=" in entry["variant"] and "transactional" not in entry["variant"]:
            for record in iter_records(data):
                by_key[(entry["client"], record.key)] = record
    sample = by_key[("kafka-python", b"key-0")]
    assert sample.headers[0] == ("h1", b"v1")
    assert sample.value is not None and sample.value.startswith(b"value ")


@needs_golden
@pytest.mark.parametrize("golden", GOLDEN_LEGACY, ids=_gid)
def test_golden_legacy_message_sets_are_recognised_and_refused(
    golden: tuple[dict[str, Any], str, int, bytes],
) -> None:
    data = golden[3]
    assert peek_magic(data) in (0, 1)
    assert validate_batches(data, 1 << 20).error == ErrorCode.INVALID_RECORD
    with pytest.raises(DecodeError):
        BatchHeader.parse(data + b"\0" * BATCH_HEADER_SIZE)
