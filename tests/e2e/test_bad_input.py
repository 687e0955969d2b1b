"""Bad input gets Kafka's answer, and the broker keeps serving everyone else.

What Kafka does, and what is asserted here (Kafka 4.x, `SocketServer.Processor` and
`RequestContext`, read in the apache/kafka sources):

* A frame whose size prefix exceeds `socket.request.max.bytes` (or is negative) fails in
  `NetworkReceive` as soon as the 4 size bytes are read (InvalidReceiveException): the
  connection is closed, the body is never awaited.
* Unknown API key: `RequestHeader.parse` throws, `processCompletedReceives` catches it and
  closes the connection (no response; there is no way to encode one).
* Known API key at a version outside the broker's range: `parseRequestHeader` throws
  InvalidRequestException ("... which is not enabled") and the connection is closed -
  except ApiVersions, which `ApiKeys.isVersionEnabled` accepts at any version: the broker
  answers UNSUPPORTED_VERSION (35) with a v0 response header and v0 body whose api_keys
  list holds ApiVersions' own supported range (KIP-511), and keeps the connection open.
* A body that does not parse (garbage after a valid header): `RequestContext.parseRequest`
  throws InvalidRequestException, connection closed.
* Per-partition Produce errors come back in the response: CRC mismatch -> CORRUPT_MESSAGE
  (2), batch larger than the topic's max.message.bytes -> MESSAGE_TOO_LARGE (10), acks not
  in {-1, 0, 1} -> INVALID_REQUIRED_ACKS (21), unknown topic (Produce never auto-creates)
  -> UNKNOWN_TOPIC_OR_PARTITION (3); nothing is appended in any of these cases.
* Fetch past the log end -> OFFSET_OUT_OF_RANGE (1). CreateTopics: illegal name ->
  INVALID_TOPIC_EXCEPTION (17), existing name -> TOPIC_ALREADY_EXISTS (36).
  CreatePartitions to a count not above the current one -> INVALID_PARTITIONS (37).

After every bad input, a new connection must still be served and the data stored before it
must read back unchanged.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka.admin import NewPartitions, NewTopic
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import ADMIN_TIMEOUT_S, admin, admin_error, create_topic
from kafka.record import MemoryRecords

SOCKET_REQUEST_MAX_BYTES = 1_048_576
MESSAGE_MAX_BYTES = 10_240  # small, so a too-large batch is still a small request
VICTIM = "victim"  # a topic with known content that no bad input may disturb
BASELINE = [wire.Record(b"k%d" % i, b"baseline-%d" % i, [("h", b"%d" % i)], i) for i in range(5)]

RETRIABLE = {wire.UNKNOWN_TOPIC_OR_PARTITION, 5, 6}  # ..., LEADER_NOT_AVAILABLE, NOT_LEADER

pytestmark = pytest.mark.timeout(60)


@dataclass
class Target:
    broker: BrokerProcess
    base_timestamp: int

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap


@pytest.fixture
def target(broker_factory: BrokerFactory) -> Target:
    broker = broker_factory(
        {
            "socket.request.max.bytes": SOCKET_REQUEST_MAX_BYTES,
            "message.max.bytes": MESSAGE_MAX_BYTES,
            "auto.create.topics.enable": "false",
        }
    )
    create_topic(broker.bootstrap, VICTIM, 1)
    base_timestamp = int(time.time() * 1000) - 60_000
    baseline = wire.build_record_batch(BASELINE, base_timestamp=base_timestamp)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    response = _produce(broker.bootstrap, baseline)
    # A new partition may still be taking leadership (Kafka answers NOT_LEADER_OR_FOLLOWER
    # for a moment); real clients retry those, and so does this setup step.
    while response.error_code in RETRIABLE and time.monotonic() < deadline:
        time.sleep(0.1)
        response = _produce(broker.bootstrap, baseline)
    assert (response.error_code, response.base_offset) == (wire.NONE, 0), response
    target = Target(broker, base_timestamp)
    _assert_healthy(target)
    return target


def _produce(
    bootstrap: str, batch: bytes, *, topic: str = VICTIM, acks: int = -1, version: int = 9
) -> Any:
    with wire.WireConnection(bootstrap) as conn:
        response = conn.request(wire.produce_request(topic, 0, batch, acks=acks, version=version))
    return wire.produce_partition_response(response)


def _stored_records(
    bootstrap: str,
) -> list[tuple[int, int, bytes | None, bytes | None, list[Any]]]:
    with wire.WireConnection(bootstrap) as conn:
        partition = wire.fetch_partition_response(conn.request(wire.fetch_request(VICTIM, 0, 0)))
    assert partition.error_code == wire.NONE, (
        f"Fetch {VICTIM}-0 from 0: error {partition.error_code}"
    )
    records = MemoryRecords(bytes(partition.records or b""))
    out: list[tuple[int, int, bytes | None, bytes | None, list[Any]]] = []
    while records.has_next():
        batch = records.next_batch()
        if batch is None:
            break
        assert batch.validate_crc(), "a stored batch fails its CRC"
        out.extend((r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch)
    return out


def _assert_healthy(target: Target, extra_records: int = 0) -> None:
    """A fresh connection is served, and the victim topic holds exactly what it held."""
    wire.assert_broker_serves(target.bootstrap, target.broker.broker_id)
    assert target.broker.running, "broker process died"
    expected = [
        (i, target.base_timestamp + r.timestamp_delta, r.key, r.value, list(r.headers))
        for i, r in enumerate(BASELINE)
    ]
    stored = _stored_records(target.bootstrap)
    assert stored[: len(BASELINE)] == expected, "stored records changed"
    assert len(stored) == len(BASELINE) + extra_records, f"{len(stored)} records stored"
    assert wire.latest_offset(target.bootstrap, VICTIM, 0) == len(BASELINE) + extra_records


def _assert_closed(conn: wire.WireConnection, what: str) -> None:
    closed, how = conn.closed_by_peer()
    assert closed, f"{what}: expected the broker to close the connection, but {how}"


# ------------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    "size",
    [SOCKET_REQUEST_MAX_BYTES + 1, 100 * SOCKET_REQUEST_MAX_BYTES, 0x7FFFFFFF, -1, -(2**31)],
    ids=["max+1", "100x", "int32-max", "minus-1", "int32-min"],
)
def test_bad_frame_size_closes_connection(target: Target, size: int) -> None:
    with wire.WireConnection(target.bootstrap) as conn:
        # Only the size and a little body: Kafka rejects on the size prefix alone.
        try:
            conn.send_raw(struct.pack(">i", size) + b"\x00\x03\x00\x01" + bytes(60))
        except wire.BrokerClosedConnection:
            pass
        else:
            _assert_closed(conn, f"frame size {size}")
    _assert_healthy(target)


def test_garbage_frame_closes_connection(target: Target) -> None:
    rng = random.Random(20261127)
    body = bytearray(rng.randbytes(512))
    body[0:2] = struct.pack(">h", 0x7A7A)  # keep the random api key out of the real range
    with wire.WireConnection(target.bootstrap) as conn:
        conn.send_raw(wire.frame(bytes(body)))
        _assert_closed(conn, "random bytes")
    _assert_healthy(target)


@pytest.mark.parametrize(
    ("api_key", "version", "flexible"),
    [(wire.API_PRODUCE, 3, False), (wire.API_PRODUCE, 9, True), (wire.API_METADATA, 12, True)],
    ids=["produce-v3", "produce-v9", "metadata-v12"],
)
def test_valid_header_garbage_body_closes_connection(
    target: Target, api_key: int, version: int, flexible: bool
) -> None:
    rng = random.Random(api_key * 100 + version)
    header = wire.request_header(api_key, version, 77, "garbage", flexible)
    # The first body field is a string (Produce: transactional id; Metadata v12: topic
    # array): declare far more bytes than follow, then noise.
    lead = wire.unsigned_varint(1 << 30) if flexible else struct.pack(">h", 30_000)
    with wire.WireConnection(target.bootstrap) as conn:
        conn.send_raw(wire.frame(header + lead + rng.randbytes(200)))
        _assert_closed(conn, f"api {api_key} v{version} with a garbage body")
    _assert_healthy(target)


def test_truncated_header_closes_connection(target: Target) -> None:
    with wire.WireConnection(target.bootstrap) as conn:
        conn.send_raw(wire.frame(b"\x00\x12\x00"))  # 3 bytes: not even api key + version
        _assert_closed(conn, "a 3-byte request")
    _assert_healthy(target)


# ------------------------------------------------------------------ api keys and versions


@pytest.mark.parametrize("api_key", [9999, 32767, -2], ids=["9999", "32767", "minus-2"])
def test_unknown_api_key_closes_connection(target: Target, api_key: int) -> None:
    with wire.WireConnection(target.bootstrap) as conn:
        conn.send_raw(wire.frame(wire.request_header(api_key, 0, 5, "e2e", flexible=False)))
        _assert_closed(conn, f"api key {api_key}")
    _assert_healthy(target)


@pytest.mark.parametrize(
    ("api_key", "version"),
    [(wire.API_METADATA, 99), (wire.API_FETCH, 99), (wire.API_PRODUCE, 999)],
    ids=["metadata-v99", "fetch-v99", "produce-v999"],
)
def test_unsupported_version_of_known_api_closes_connection(
    target: Target, api_key: int, version: int
) -> None:
    with wire.WireConnection(target.bootstrap) as conn:
        conn.send_raw(wire.frame(wire.request_header(api_key, version, 6, "e2e", flexible=True)))
        _assert_closed(conn, f"api key {api_key} at v{version}")
    _assert_healthy(target)


def test_api_versions_at_unknown_version_answers_unsupported_version(target: Target) -> None:
    correlation_id = 424242
    header = wire.request_header(wire.API_API_VERSIONS, 99, correlation_id, "e2e", flexible=True)
    # A v3-shaped body (client software name and version, compact strings, no tags).
    body = b"\x04e2e" + b"\x041.0" + b"\x00"
    with wire.WireConnection(target.bootstrap) as conn:
        payload = conn.roundtrip_raw(header + body)
        got_id, error_code, versions = wire.parse_api_versions_v0(payload)
        assert got_id == correlation_id
        assert error_code == wire.UNSUPPORTED_VERSION, f"error {error_code}, payload {payload!r}"
        assert list(versions) == [wire.API_API_VERSIONS], versions
        low, high = versions[wire.API_API_VERSIONS]
        assert low == 0 and high >= 3, versions
        # A v0 body is exactly error + array: nothing may follow (no throttle, no tags).
        assert len(payload) == 4 + 2 + 4 + 6 * len(versions), payload

        # Kafka keeps the connection: the client retries at a version it now knows.
        retry_id = wire.next_correlation_id()
        again = conn.roundtrip_raw(wire.api_versions_v0_payload(retry_id))
        assert wire.parse_api_versions_v0(again)[:2] == (retry_id, wire.NONE)
    _assert_healthy(target)


# ------------------------------------------------------------------------------- produce


def test_produce_with_flipped_crc_is_corrupt_message(target: Target) -> None:
    batch = wire.build_record_batch(
        [wire.Record(b"bad", b"crc", (), 0)] * 3, base_timestamp=target.base_timestamp
    )
    response = _produce(target.bootstrap, wire.with_flipped_crc(batch))
    assert response.error_code == wire.CORRUPT_MESSAGE, response
    _assert_healthy(target)

    # The same batch with its CRC intact is accepted right after, at the next offset.
    response = _produce(target.bootstrap, batch)
    assert (response.error_code, response.base_offset) == (wire.NONE, len(BASELINE)), response
    _assert_healthy(target, extra_records=3)


def test_produce_larger_than_message_max_bytes_is_message_too_large(target: Target) -> None:
    batch = wire.build_record_batch(
        [wire.Record(None, b"z" * (2 * MESSAGE_MAX_BYTES), (), 0)],
        base_timestamp=target.base_timestamp,
    )
    assert len(batch) < SOCKET_REQUEST_MAX_BYTES
    response = _produce(target.bootstrap, batch)
    assert response.error_code == wire.MESSAGE_TOO_LARGE, response
    _assert_healthy(target)


@pytest.mark.parametrize("acks", [2, -2, 3], ids=["acks-2", "acks-minus-2", "acks-3"])
def test_produce_with_invalid_acks_is_invalid_required_acks(target: Target, acks: int) -> None:
    batch = wire.build_record_batch(
        [wire.Record(None, b"acks", (), 0)], base_timestamp=target.base_timestamp
    )
    response = _produce(target.bootstrap, batch, acks=acks)
    assert response.error_code == wire.INVALID_REQUIRED_ACKS, response
    _assert_healthy(target)


def test_produce_to_unknown_topic_without_auto_create(target: Target) -> None:
    batch = wire.build_record_batch(
        [wire.Record(None, b"lost", (), 0)], base_timestamp=target.base_timestamp
    )
    response = _produce(target.bootstrap, batch, topic="no-such-topic")
    assert response.error_code == wire.UNKNOWN_TOPIC_OR_PARTITION, response

    described = wire.metadata(target.bootstrap, ["no-such-topic"], version=4)
    (topic,) = described.topics
    assert topic.error_code == wire.UNKNOWN_TOPIC_OR_PARTITION, "topic was auto-created anyway"
    _assert_healthy(target)


# --------------------------------------------------------------------------------- fetch


def test_fetch_beyond_log_end_is_offset_out_of_range(target: Target) -> None:
    end = len(BASELINE)
    with wire.WireConnection(target.bootstrap) as conn:
        at_end = wire.fetch_partition_response(conn.request(wire.fetch_request(VICTIM, 0, end)))
        assert at_end.error_code == wire.NONE, "fetching exactly at the log end is legal"
        assert at_end.high_watermark == end
        assert not wire.batch_headers(bytes(at_end.records or b""))

        beyond = wire.fetch_partition_response(
            conn.request(wire.fetch_request(VICTIM, 0, end + 10))
        )
        assert beyond.error_code == wire.OFFSET_OUT_OF_RANGE, beyond
    _assert_healthy(target)


# -------------------------------------------------------------------------------- admin


@pytest.mark.parametrize(
    "name",
    ["has space", "slash/in/name", "..", ".", "x" * 250, "tab\tname", "ümlaut"],
    ids=["space", "slash", "dotdot", "dot", "250-chars", "tab", "non-ascii"],
)
def test_create_topic_with_invalid_name(target: Target, name: str) -> None:
    client = admin(target.bootstrap)  # keep alive until the futures resolve
    futures = client.create_topics(
        [NewTopic(name, num_partitions=1, replication_factor=1)], operation_timeout=ADMIN_TIMEOUT_S
    )
    error = admin_error(futures[name])
    assert error.code() == wire.INVALID_TOPIC_EXCEPTION, f"{error.name()}: {error.str()}"
    _assert_healthy(target)


def test_create_existing_topic_is_topic_already_exists(target: Target) -> None:
    client = admin(target.bootstrap)  # keep alive until the futures resolve
    futures = client.create_topics(
        [NewTopic(VICTIM, num_partitions=4, replication_factor=1)],
        operation_timeout=ADMIN_TIMEOUT_S,
    )
    error = admin_error(futures[VICTIM])
    assert error.code() == wire.TOPIC_ALREADY_EXISTS, f"{error.name()}: {error.str()}"
    metadata = admin(target.bootstrap).list_topics(VICTIM, timeout=ADMIN_TIMEOUT_S)
    assert len(metadata.topics[VICTIM].partitions) == 1, "the existing topic was altered"
    _assert_healthy(target)


@pytest.mark.parametrize("new_count", [2, 3], ids=["decrease", "same"])
def test_create_partitions_not_increasing_is_invalid_partitions(
    target: Target, new_count: int
) -> None:
    create_topic(target.bootstrap, "three", 3)
    client = admin(target.bootstrap)  # keep alive until the futures resolve
    futures = client.create_partitions(
        [NewPartitions("three", new_count)], operation_timeout=ADMIN_TIMEOUT_S
    )
    error = admin_error(futures["three"])
    assert error.code() == wire.INVALID_PARTITIONS, f"{error.name()}: {error.str()}"
    metadata = admin(target.bootstrap).list_topics("three", timeout=ADMIN_TIMEOUT_S)
    assert len(metadata.topics["three"].partitions) == 3
    _assert_healthy(target)


def test_create_partitions_increase_still_works(target: Target) -> None:
    """The control for the test above: growing a topic is accepted."""
    create_topic(target.bootstrap, "grow", 1)
    client = admin(target.bootstrap)  # keep alive until the futures resolve
    futures = client.create_partitions(
        [NewPartitions("grow", 4)], operation_timeout=ADMIN_TIMEOUT_S
    )
    futures["grow"].result(timeout=ADMIN_TIMEOUT_S)
    metadata = admin(target.bootstrap).list_topics("grow", timeout=ADMIN_TIMEOUT_S)
    assert sorted(metadata.topics["grow"].partitions) == [0, 1, 2, 3]
    _assert_healthy(target)


# -------------------------------------------------------------------------- concurrency


def test_bad_client_does_not_disturb_a_concurrent_good_one(target: Target) -> None:
    """A client that sends garbage is dropped while another connection stays open and works."""
    with wire.WireConnection(target.bootstrap) as good:
        first_id = wire.next_correlation_id()
        first = good.roundtrip_raw(wire.api_versions_v0_payload(first_id))
        assert wire.parse_api_versions_v0(first)[:2] == (first_id, wire.NONE)
        with wire.WireConnection(target.bootstrap) as bad:
            bad.send_raw(wire.frame(b"\xff" * 64))
            _assert_closed(bad, "0xff garbage")
        second_id = wire.next_correlation_id()
        second = good.roundtrip_raw(wire.api_versions_v0_payload(second_id))
        assert wire.parse_api_versions_v0(second)[:2] == (second_id, wire.NONE)
    _assert_healthy(target)
