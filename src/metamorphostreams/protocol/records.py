"""Record-level encoding and decoding inside magic-2 batches.

For tools, tests, compaction and transaction markers; the produce and fetch paths never
look inside a batch. After the 61-byte header a batch holds ``recordsCount`` records,
compressed together as one blob when the codec is not NONE. Each record is:

    length varint, attributes int8 (unused, 0), timestampDelta varlong, offsetDelta varint,
    keyLength varint (-1 = null), key, valueLength varint (-1 = null), value,
    headerCount varint, then per header: keyLength varint, key (UTF-8), valueLength varint
    (-1 = null), value

All varints are zigzag (see ``_varint``). ``length`` counts the bytes after itself.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from metamorphostreams.protocol._varint import (
    read_varint,
    read_varlong,
    write_varint,
    write_varlong,
)
from metamorphostreams.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    compress,
    decompress,
)
from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    CONTROL_MASK,
    CRC_OFFSET,
    LOG_OVERHEAD,
    MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    CompressionType,
    ReadableBuffer,
    TimestampType,
    compute_crc,
    iter_batch_headers,
    verify_crc,
)

__all__ = [
    "ControlRecordType",
    "Header",
    "Record",
    "RecordInput",
    "build_batch",
    "build_end_txn_marker",
    "decode_batch",
    "end_txn_marker_of",
    "iter_batches",
    "iter_records",
    "parse_control_key",
    "parse_end_txn_marker",
]

Header = tuple[str, bytes | None]

_UINT32 = struct.Struct(">I")
_HEADER_LAYOUT = struct.Struct(">qiibIhiqqqhii")
_CONTROL_KEY = struct.Struct(">hh")  # version, type
_END_TXN_VALUE = struct.Struct(">hi")  # version, coordinator epoch
_CONTROL_KEY_VERSION = 0
_END_TXN_MARKER_VERSION = 0


@dataclass(slots=True)
class Record:
    """One decoded record with absolute offset and timestamp.

    For LogAppendTime batches ``timestamp`` is the batch's maxTimestamp, as Kafka reports it.
    Header keys are never null. Plain data; not shared between tasks by convention.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


# What build_batch accepts per record: a Record (its offset and timestamp are used as given)
# or a tuple (key, value[, headers[, timestamp]]) placed at the next offset.
RecordInput = (
    Record
    | tuple[bytes | None, bytes | None]
    | tuple[bytes | None, bytes | None, Sequence[Header]]
    | tuple[bytes | None, bytes | None, Sequence[Header], int]
)


class ControlRecordType(enum.IntEnum):
    """Type field of a control record's key (ControlRecordType in Kafka)."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


def iter_batches(
    buf: ReadableBuffer,
    *,
    check_crc: bool = True,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Decode every complete batch in ``buf`` (a trailing partial batch is ignored)."""
    for pos, _ in iter_batch_headers(buf):
        yield decode_batch(buf, pos, check_crc=check_crc, max_size=max_size)


def iter_records(
    buf: ReadableBuffer,
    *,
    include_control: bool = True,
    check_crc: bool = True,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> Iterator[Record]:
    """Yield the records of every complete batch in ``buf``; control batches' records are
    included unless ``include_control`` is False (use ``iter_batches`` to tell them apart)."""
    for header, records in iter_batches(buf, check_crc=check_crc, max_size=max_size):
        if include_control or not header.is_control:
            yield from records


def decode_batch(
    buf: ReadableBuffer,
    pos: int = 0,
    *,
    check_crc: bool = True,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at ``pos``. Raises DecodeError on a bad CRC, a short batch, a record
    count that disagrees with the records present, or malformed records."""
    header = BatchHeader.parse(buf, pos)
    end = pos + header.size
    if end > len(buf):
        raise DecodeError(f"record batch at {pos} needs {header.size} bytes")
    if check_crc and not verify_crc(buf, pos, header):
        raise DecodeError(f"record batch at {pos} fails its CRC check")
    with memoryview(buf) as view:
        body: ReadableBuffer = view[pos + BATCH_HEADER_SIZE : end]
        if header.compression is not CompressionType.NONE:
            body = decompress(header.compression, body, max_size)
        records = _decode_records(header, body)
    return header, records


def _decode_records(header: BatchHeader, body: ReadableBuffer) -> list[Record]:
    log_append = header.timestamp_type is TimestampType.LOG_APPEND_TIME
    records: list[Record] = []
    pos = 0
    end = len(body)
    for _ in range(header.records_count):
        length, pos = read_varint(body, pos)
        record_end = pos + length
        if length < 0 or record_end > end:
            raise DecodeError(f"record length {length} at {pos} overruns the batch")
        pos += 1  # attributes: unused in magic 2
        ts_delta, pos = read_varlong(body, pos)
        offset_delta, pos = read_varint(body, pos)
        key, pos = _read_bytes(body, pos, record_end)
        value, pos = _read_bytes(body, pos, record_end)
        count, pos = read_varint(body, pos)
        if count < 0:
            raise DecodeError(f"negative header count {count}")
        headers: list[Header] = []
        for _ in range(count):
            raw_key, pos = _read_bytes(body, pos, record_end)
            if raw_key is None:
                raise DecodeError("null header key")
            try:
                header_key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("header key is not UTF-8") from None
            header_value, pos = _read_bytes(body, pos, record_end)
            headers.append((header_key, header_value))
        if pos != record_end:
            used = length + pos - record_end
            raise DecodeError(f"record declared {length} bytes but used {used}")
        timestamp = header.max_timestamp if log_append else header.base_timestamp + ts_delta
        records.append(Record(header.base_offset + offset_delta, timestamp, key, value, headers))
    if pos != end:
        raise DecodeError(f"{end - pos} bytes left after {header.records_count} records")
    return records


def _read_bytes(buf: ReadableBuffer, pos: int, limit: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > limit:
        raise DecodeError(f"field of {length} bytes at {pos} overruns its record")
    return bytes(buf[pos : pos + length]), pos + length


def _write_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(data))
        out += data


def _normalise(
    records: Sequence[RecordInput], base_offset: int
) -> list[tuple[int, int | None, bytes | None, bytes | None, Sequence[Header]]]:
    """(offset, timestamp or None, key, value, headers) with offsets checked increasing."""
    rows: list[tuple[int, int | None, bytes | None, bytes | None, Sequence[Header]]] = []
    next_offset = base_offset
    for item in records:
        offset: int
        ts: int | None
        headers: Sequence[Header]
        if isinstance(item, Record):
            offset, ts, key, value, headers = (
                item.offset,
                item.timestamp,
                item.key,
                item.value,
                item.headers,
            )
            if offset < next_offset:
                raise ValueError(f"record offset {offset} is not above {next_offset - 1}")
        else:
            offset, key, value = next_offset, item[0], item[1]
            headers = item[2] if len(item) > 2 else ()
            ts = item[3] if len(item) > 3 else None
        rows.append((offset, ts, key, value, headers))
        next_offset = offset + 1
    return rows


def build_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    compression: CompressionType = CompressionType.NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    timestamp_type: int = TimestampType.CREATE_TIME,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    base_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    compression_level: int | None = None,
) -> bytes:
    """Encode one batch as Kafka's Java producer (MemoryRecordsBuilder) would.

    baseTimestamp is the first record's timestamp unless given (a tuple without a timestamp
    takes baseTimestamp, or -1); maxTimestamp is the largest record timestamp. An empty
    ``records`` gives a header-only batch as Kafka's writeEmptyHeader does: count 0,
    uncompressed, both timestamps = ``base_timestamp`` (or -1), lastOffsetDelta as given
    (default 0).
    """
    rows = _normalise(records, base_offset)
    common = {
        "base_offset": base_offset,
        "partition_leader_epoch": partition_leader_epoch,
        "producer_id": producer_id,
        "producer_epoch": producer_epoch,
        "base_sequence": base_sequence,
    }
    if not rows:
        ts = NO_TIMESTAMP if base_timestamp is None else base_timestamp
        attributes = _attributes(CompressionType.NONE, timestamp_type, is_transactional, is_control)
        return _finish(
            bytearray(BATCH_HEADER_SIZE),
            attributes=attributes,
            last_offset_delta=last_offset_delta or 0,
            base_timestamp=ts,
            max_timestamp=ts,
            count=0,
            **common,
        )
    first_ts = rows[0][1] if base_timestamp is None else base_timestamp
    base_ts = NO_TIMESTAMP if first_ts is None else first_ts
    body = bytearray()
    max_timestamp = NO_TIMESTAMP
    record = bytearray()
    for offset, record_ts, key, value, headers in rows:
        timestamp = base_ts if record_ts is None else record_ts
        max_timestamp = max(max_timestamp, timestamp)
        record.clear()
        record.append(0)  # attributes
        write_varlong(record, timestamp - base_ts)
        write_varint(record, offset - base_offset)
        _write_bytes(record, key)
        _write_bytes(record, value)
        write_varint(record, len(headers))
        for header_key, header_value in headers:
            _write_bytes(record, header_key.encode("utf-8"))
            _write_bytes(record, header_value)
        write_varint(body, len(record))
        body += record
    last_delta = rows[-1][0] - base_offset
    if last_offset_delta is not None:
        if last_offset_delta < last_delta:
            raise ValueError(f"last_offset_delta {last_offset_delta} is below {last_delta}")
        last_delta = last_offset_delta
    payload = (
        bytes(body)
        if compression == CompressionType.NONE
        else compress(compression, body, compression_level)
    )
    buf = bytearray(BATCH_HEADER_SIZE)
    buf += payload
    attributes = _attributes(compression, timestamp_type, is_transactional, is_control)
    return _finish(
        buf,
        attributes=attributes,
        last_offset_delta=last_delta,
        base_timestamp=base_ts,
        max_timestamp=max_timestamp,
        count=len(rows),
        **common,
    )


def _attributes(
    compression: CompressionType, timestamp_type: int, is_transactional: bool, is_control: bool
) -> int:
    attributes = int(compression)
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_MASK
    if is_transactional:
        attributes |= TRANSACTIONAL_MASK
    if is_control:
        attributes |= CONTROL_MASK
    return attributes


def _finish(
    buf: bytearray,
    *,
    attributes: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    count: int,
    base_offset: int,
    partition_leader_epoch: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
) -> bytes:
    _HEADER_LAYOUT.pack_into(
        buf,
        0,
        base_offset,
        len(buf) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC_V2,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    _UINT32.pack_into(buf, CRC_OFFSET, compute_crc(buf, 0))
    return bytes(buf)


def parse_control_key(key: bytes | None) -> ControlRecordType:
    """The type of a control record from its key (int16 version, int16 type)."""
    if key is None or len(key) < _CONTROL_KEY.size:
        raise DecodeError("control record key is missing or short")
    _version, kind = _CONTROL_KEY.unpack_from(key)
    try:
        return ControlRecordType(kind)
    except ValueError:
        raise DecodeError(f"unknown control record type {kind}") from None


def parse_end_txn_marker(value: bytes | None) -> int:
    """The coordinator epoch carried by an ABORT/COMMIT marker's value."""
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise DecodeError("end transaction marker value is missing or short")
    _version, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    return int(coordinator_epoch)


def build_end_txn_marker(
    *,
    commit: bool,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A one-record transactional control batch holding a COMMIT or ABORT marker."""
    kind = ControlRecordType.COMMIT if commit else ControlRecordType.ABORT
    key = _CONTROL_KEY.pack(_CONTROL_KEY_VERSION, kind)
    value = _END_TXN_VALUE.pack(_END_TXN_MARKER_VERSION, coordinator_epoch)
    return build_batch(
        [Record(base_offset, timestamp, key, value, [])],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def end_txn_marker_of(buf: ReadableBuffer, pos: int = 0) -> tuple[bool, int] | None:
    """``(commit, coordinator epoch)`` of the control batch at ``pos`` when its first record
    is a COMMIT or ABORT marker; None for an empty batch (its transaction was cleaned away)
    or another control type. Raises DecodeError for an undecodable batch."""
    _, records = decode_batch(buf, pos)
    if not records:
        return None
    kind = parse_control_key(records[0].key)
    if kind not in (ControlRecordType.COMMIT, ControlRecordType.ABORT):
        return None
    return kind == ControlRecordType.COMMIT, parse_end_txn_marker(records[0].value)
