"""A tiny raw-socket Kafka client for the bad-input tests.

Frames are built by hand with `struct` where the test is about the bytes themselves
(oversized frames, garbage, unknown API keys, ApiVersions at an unknown version, corrupt
record batches). Well-formed requests whose answer we want to read are encoded and decoded
with kafka-python's JSON-schema codec (`kafka.protocol`), which is independent of ours.

Not thread-safe; one request in flight at a time.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import crc32c

SIZE = struct.Struct(">i")
RECV_TIMEOUT_S = 15.0  # generous: only a hung broker takes this long

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19
API_CREATE_PARTITIONS = 37

# Kafka error codes the tests expect (org.apache.kafka.common.protocol.Errors); kept local so
# the tests do not lean on the codebase under test for their expectations.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
COORDINATOR_RETRIABLE = {14, 15, 16}  # LOAD_IN_PROGRESS, NOT_AVAILABLE, NOT_COORDINATOR

_correlation_ids = itertools.count(1)


def next_correlation_id() -> int:
    return next(_correlation_ids) & 0x7FFFFFFF


# --------------------------------------------------------------------------- primitives


def zigzag_varint(value: int) -> bytes:
    """Kafka's signed varint/varlong (zig-zag, then base-128 little-endian groups)."""
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = encoded & 0x7F
        encoded >>= 7
        if encoded:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unsigned_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def int16_string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, flexible: bool
) -> bytes:
    """Request header v1 (non-flexible) or v2 (flexible: adds an empty tagged-field section).

    The client id stays an int16-length string even in v2, as in Kafka.
    """
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + int16_string(client_id)
    if flexible:
        header += unsigned_varint(0)
    return header


def frame(payload: bytes) -> bytes:
    return SIZE.pack(len(payload)) + payload


# --------------------------------------------------------------------------- record batches


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()
    timestamp_delta: int = 0


BATCH_HEADER_SIZE = 61  # magic-2 batch header, up to and including the record count
CRC_OFFSET = 17  # baseOffset(8) + batchLength(4) + partitionLeaderEpoch(4) + magic(1)
CRC_COVERED_FROM = 21  # the CRC-32C covers attributes .. end of batch


def _encode_record(offset_delta: int, record: Record) -> bytes:
    body = bytearray()
    body.append(0)  # record attributes: unused, always 0
    body += zigzag_varint(record.timestamp_delta)
    body += zigzag_varint(offset_delta)
    for blob in (record.key, record.value):
        if blob is None:
            body += zigzag_varint(-1)
        else:
            body += zigzag_varint(len(blob)) + blob
    body += zigzag_varint(len(record.headers))
    for name, value in record.headers:
        raw_name = name.encode()
        body += zigzag_varint(len(raw_name)) + raw_name
        if value is None:
            body += zigzag_varint(-1)
        else:
            body += zigzag_varint(len(value)) + value
    return zigzag_varint(len(body)) + bytes(body)


def build_record_batch(
    records: Sequence[Record],
    *,
    base_timestamp: int,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    """An uncompressed magic-2 record batch with a correct CRC-32C."""
    if not records:
        raise ValueError("a record batch holds at least one record")
    encoded = b"".join(_encode_record(i, r) for i, r in enumerate(records))
    max_timestamp = base_timestamp + max(r.timestamp_delta for r in records)
    after_crc = (
        struct.pack(
            ">hiqqqhii",
            attributes,
            len(records) - 1,  # lastOffsetDelta
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
        + encoded
    )
    crc = crc32c.crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # partitionLeaderEpoch + magic + crc + rest
    return struct.pack(">qiibI", base_offset, batch_length, -1, 2, crc) + after_crc


def with_flipped_crc(batch: bytes) -> bytes:
    """The same batch with one bit of its stored CRC flipped: a CRC mismatch, nothing else."""
    corrupt = bytearray(batch)
    corrupt[CRC_OFFSET] ^= 0x01
    return bytes(corrupt)


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int


def batch_headers(data: bytes | memoryview) -> list[BatchHeader]:
    """Headers of the complete batches in a fetched records blob (a trailing partial is ignored)."""
    view = memoryview(data)
    out: list[BatchHeader] = []
    pos = 0
    while pos + BATCH_HEADER_SIZE <= len(view):
        fields = struct.unpack_from(">qiibIhiqqqhii", view, pos)
        header = BatchHeader(*fields)
        end = pos + 12 + header.batch_length
        if end > len(view):
            break
        out.append(header)
        pos = end
    return out


# --------------------------------------------------------------------------- connection


class BrokerClosedConnection(Exception):
    """The broker closed (or reset) the connection."""


class WireConnection:
    """One TCP connection to a broker; blocking, with a receive timeout."""

    def __init__(self, bootstrap: str, timeout: float = RECV_TIMEOUT_S) -> None:
        host, _, port = bootstrap.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        """Send bytes; a reset or broken pipe means the broker already closed on us."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise BrokerClosedConnection(str(exc)) from exc

    def _recv_exact(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            try:
                chunk = self.sock.recv(n - len(chunks))
            except ConnectionResetError as exc:
                raise BrokerClosedConnection(str(exc)) from exc
            if not chunk:
                raise BrokerClosedConnection(
                    f"EOF after {len(chunks)} of {n} bytes" if chunks else "EOF"
                )
            chunks += chunk
        return bytes(chunks)

    def recv_frame(self) -> bytes:
        """One response frame's payload (without its 4-byte size)."""
        (size,) = SIZE.unpack(self._recv_exact(4))
        if size < 0:
            raise AssertionError(f"broker sent a negative frame size {size}")
        return self._recv_exact(size)

    def roundtrip_raw(self, payload: bytes) -> bytes:
        self.send_raw(frame(payload))
        return self.recv_frame()

    def request(self, request: Any, client_id: str = "mms-e2e") -> Any:
        """Send a versioned kafka-python request object; return the decoded response."""
        version = request.API_VERSION
        correlation_id = next_correlation_id()
        request.with_header(correlation_id=correlation_id, client_id=client_id)
        self.send_raw(bytes(request.encode(header=True, framed=True)))
        payload = self.recv_frame()
        response_class = request.header.get_response_class()
        response = response_class.decode(payload, version=version, header=True)
        got = response.header.correlation_id
        if got != correlation_id:
            raise AssertionError(f"correlation id {got} in response, expected {correlation_id}")
        return response

    def closed_by_peer(self, timeout: float = RECV_TIMEOUT_S) -> tuple[bool, str]:
        """Wait for the broker to close the connection.

        Returns (True, how) on EOF/reset; (False, what-happened) if the broker answered
        something instead, or kept the connection open for `timeout` seconds.
        """
        self.sock.settimeout(timeout)
        received = bytearray()
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    if received:
                        return True, f"closed after sending {len(received)} bytes"
                    return True, "EOF"
                received += chunk
                if len(received) > 1 << 20:
                    return False, f"broker kept sending ({len(received)} bytes so far)"
        except ConnectionResetError:
            return True, "connection reset"
        except TimeoutError:
            if received:
                return False, (
                    f"broker answered {len(received)} bytes ({bytes(received[:64])!r}...) "
                    f"and kept the connection open for {timeout:.0f} s"
                )
            return False, f"connection still open and silent after {timeout:.0f} s"
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return True, str(exc)
            raise


# --------------------------------------------------------------------------- requests


def api_versions_v0_payload(correlation_id: int, client_id: str = "mms-e2e") -> bytes:
    return request_header(API_API_VERSIONS, 0, correlation_id, client_id, flexible=False)


def parse_api_versions_v0(payload: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation id, error code, {api key: (min, max)}) from a v0-shaped response."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", payload, 0)
    pos = 10
    versions: dict[int, tuple[int, int]] = {}
    for _ in range(max(count, 0)):
        key, low, high = struct.unpack_from(">hhh", payload, pos)
        versions[key] = (low, high)
        pos += 6
    return correlation_id, error_code, versions


def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """The broker's advertised {api key: (min, max)}, asked on a fresh connection at v0."""
    with WireConnection(bootstrap) as conn:
        correlation_id = next_correlation_id()
        payload = conn.roundtrip_raw(api_versions_v0_payload(correlation_id))
    got_id, error_code, versions = parse_api_versions_v0(payload)
    assert got_id == correlation_id, f"ApiVersions correlation id {got_id} != {correlation_id}"
    assert error_code == NONE, f"ApiVersions v0 answered error {error_code}"
    return versions


def metadata(
    bootstrap: str,
    topics: Iterable[str] | None = None,
    version: int = 1,
    auto_create: bool = False,
) -> Any:
    """A Metadata round trip on a fresh connection (v4+ carries `auto_create`)."""
    from kafka.protocol.metadata import MetadataRequest

    if topics is None:
        request = MetadataRequest[version](topics=None)
    else:
        request = MetadataRequest[version](
            topics=[MetadataRequest.MetadataRequestTopic(name=t) for t in topics]
        )
    if version >= 4:
        request.allow_auto_topic_creation = auto_create
    with WireConnection(bootstrap) as conn:
        return conn.request(request)


def assert_broker_serves(bootstrap: str, broker_id: int = 0) -> None:
    """A brand-new connection still gets answers: ApiVersions v0 and a Metadata round trip."""
    versions = api_versions(bootstrap)
    for key in (API_PRODUCE, API_FETCH, API_METADATA, API_API_VERSIONS):
        assert key in versions, f"ApiVersions no longer lists API key {key}: {versions}"
    response = metadata(bootstrap)
    node_ids = [b.node_id for b in response.brokers]
    assert broker_id in node_ids, f"Metadata lists brokers {node_ids}, expected {broker_id}"


def produce_request(
    topic: str, partition: int, records: bytes, *, acks: int = -1, version: int = 9
) -> Any:
    from kafka.protocol.producer import ProduceRequest

    topic_data = ProduceRequest.TopicProduceData
    partition_data = topic_data.PartitionProduceData
    return ProduceRequest[version](
        transactional_id=None,
        acks=acks,
        timeout_ms=10_000,
        topic_data=[
            topic_data(
                name=topic, partition_data=[partition_data(index=partition, records=records)]
            )
        ],
    )


def produce_partition_response(response: Any) -> Any:
    (topic,) = response.responses
    (partition,) = topic.partition_responses
    return partition


def fetch_request(
    topic: str, partition: int, offset: int, *, version: int = 12, max_bytes: int = 1 << 20
) -> Any:
    from kafka.protocol.consumer import FetchRequest

    fetch_topic = FetchRequest.FetchTopic
    fetch_partition = fetch_topic.FetchPartition
    return FetchRequest[version](
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        topics=[
            fetch_topic(
                topic=topic,
                partitions=[
                    fetch_partition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes
                    )
                ],
            )
        ],
    )


def fetch_partition_response(response: Any) -> Any:
    assert response.error_code == NONE, f"Fetch top-level error {response.error_code}"
    (topic,) = response.responses
    (partition,) = topic.partitions
    return partition


def list_offset(bootstrap: str, topic: str, partition: int, timestamp: int) -> tuple[int, int]:
    """(error code, offset) from ListOffsets v1 (-1 latest, -2 earliest, or a timestamp)."""
    from kafka.protocol.consumer import ListOffsetsRequest

    lo_topic = ListOffsetsRequest.ListOffsetsTopic
    lo_partition = lo_topic.ListOffsetsPartition
    request = ListOffsetsRequest[1](
        replica_id=-1,
        topics=[
            lo_topic(
                name=topic,
                partitions=[lo_partition(partition_index=partition, timestamp=timestamp)],
            )
        ],
    )
    with WireConnection(bootstrap) as conn:
        response = conn.request(request)
    (topic_response,) = response.topics
    (partition_response,) = topic_response.partitions
    return partition_response.error_code, partition_response.offset


def latest_offset(bootstrap: str, topic: str, partition: int) -> int:
    error_code, offset = list_offset(bootstrap, topic, partition, -1)
    assert error_code == NONE, f"ListOffsets(latest) of {topic}-{partition}: error {error_code}"
    return int(offset)


def init_producer_id(bootstrap: str, version: int = 0) -> tuple[int, int]:
    """(producer id, epoch) for a non-transactional idempotent producer."""
    from kafka.protocol.producer import InitProducerIdRequest

    deadline = time.monotonic() + RECV_TIMEOUT_S
    while True:
        request = InitProducerIdRequest[version](
            transactional_id=None, transaction_timeout_ms=60_000
        )
        with WireConnection(bootstrap) as conn:
            response = conn.request(request)
        # Retriable while the coordinator starts up (Kafka: COORDINATOR_LOAD_IN_PROGRESS).
        if response.error_code not in COORDINATOR_RETRIABLE or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.error_code == NONE, f"InitProducerId v{version}: error {response.error_code}"
    return int(response.producer_id), int(response.producer_epoch)


def produce(
    bootstrap: str, topic: str, partition: int, batch: bytes, *, acks: int = -1, version: int = 9
) -> Any:
    """One Produce round trip on a fresh connection; the single partition's response."""
    request = produce_request(topic, partition, batch, acks=acks, version=version)
    with WireConnection(bootstrap) as conn:
        response = conn.request(request)
    return produce_partition_response(response)
