"""``__transaction_state`` bytes, built by hand from Kafka's TransactionLogKey/Value schemas."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metamorphostreams.coordinator.transaction import (
    TransactionConfig,
    TransactionLogValue,
    TransactionMetadata,
    TransactionState,
    decode_key,
    encode_key,
)
from metamorphostreams.protocol.errors import DecodeError


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _compact_str(s: str) -> bytes:
    data = s.encode()
    return _uvarint(len(data) + 1) + data


def test_key_v0_bytes() -> None:
    key = encode_key("my-txn")
    assert key == struct.pack(">hh", 0, 6) + b"my-txn"
    assert decode_key(key) == "my-txn"
    assert decode_key(struct.pack(">hh", 1, 1) + b"x") is None  # not a TransactionLogKey


def test_decode_value_v0_built_by_hand() -> None:
    # ProducerId, ProducerEpoch, TransactionTimeoutMs, TransactionStatus,
    # TransactionPartitions [Topic (int16 string), PartitionIds [int32]],
    # TransactionLastUpdateTimestampMs, TransactionStartTimestampMs
    data = (
        struct.pack(">hqhib", 0, 42, 3, 60000, 1)
        + struct.pack(">i", 2)
        + struct.pack(">h", 1)
        + b"a"
        + struct.pack(">iii", 2, 0, 5)
        + struct.pack(">h", 1)
        + b"b"
        + struct.pack(">ii", 1, 9)
        + struct.pack(">qq", 2000, 1000)
    )
    value = TransactionLogValue.decode(data)
    assert value == TransactionLogValue(
        producer_id=42,
        producer_epoch=3,
        transaction_timeout_ms=60000,
        transaction_status=1,
        transaction_partitions=(("a", (0, 5)), ("b", (9,))),
        transaction_last_update_timestamp_ms=2000,
        transaction_start_timestamp_ms=1000,
    )
    assert value.encode(0) == data
    meta = TransactionMetadata.from_value("t", value)
    assert meta.state is TransactionState.ONGOING
    assert meta.topic_partitions == {("a", 0), ("a", 5), ("b", 9)}
    assert meta.last_producer_epoch == -1


def test_decode_value_v0_empty_null_partitions() -> None:
    data = (
        struct.pack(">hqhib", 0, 7, 0, 1000, 0) + struct.pack(">i", -1) + struct.pack(">qq", 5, -1)
    )
    value = TransactionLogValue.decode(data)
    assert value.transaction_partitions is None
    assert TransactionMetadata.from_value("t", value).state is TransactionState.EMPTY


def test_decode_value_v1_built_by_hand_with_tags() -> None:
    # flexible: compact array/strings, a tagged section per PartitionsSchema and at the end:
    # tag 0 PreviousProducerId, tag 1 NextProducerId, tag 2 ClientTransactionVersion,
    # tag 3 NextProducerEpoch, and an unknown tag 9 that must be skipped
    tagged = (
        _uvarint(5)
        + _uvarint(0)
        + _uvarint(8)
        + struct.pack(">q", 41)
        + _uvarint(1)
        + _uvarint(8)
        + struct.pack(">q", 43)
        + _uvarint(2)
        + _uvarint(2)
        + struct.pack(">h", 2)
        + _uvarint(3)
        + _uvarint(2)
        + struct.pack(">h", 4)
        + _uvarint(9)
        + _uvarint(3)
        + b"xyz"
    )
    data = (
        struct.pack(">hqhib", 1, 42, 3, 60000, 2)
        + _uvarint(2)
        + _compact_str("orders")
        + _uvarint(3)
        + struct.pack(">ii", 0, 1)
        + b"\x00"
        + tagged[:0]
        + struct.pack(">qq", 2000, 1000)
        + tagged
    )
    value = TransactionLogValue.decode(data)
    assert value == TransactionLogValue(
        producer_id=42,
        producer_epoch=3,
        transaction_timeout_ms=60000,
        transaction_status=2,
        transaction_partitions=(("orders", (0, 1)),),
        transaction_last_update_timestamp_ms=2000,
        transaction_start_timestamp_ms=1000,
        previous_producer_id=41,
        next_producer_id=43,
        next_producer_epoch=4,
        client_transaction_version=2,
    )


def test_encode_v1_writes_only_non_default_tags_in_tag_order() -> None:
    value = TransactionLogValue(
        producer_id=42,
        producer_epoch=0,
        transaction_timeout_ms=1000,
        transaction_status=4,
        transaction_partitions=(),
        transaction_last_update_timestamp_ms=9,
        transaction_start_timestamp_ms=8,
        previous_producer_id=42,
        client_transaction_version=1,
    )
    expected = (
        struct.pack(">hqhib", 1, 42, 0, 1000, 4)
        + _uvarint(1)  # empty (not null) partitions: Complete* states
        + struct.pack(">qq", 9, 8)
        + _uvarint(2)
        + _uvarint(0)
        + _uvarint(8)
        + struct.pack(">q", 42)
        + _uvarint(2)
        + _uvarint(2)
        + struct.pack(">h", 1)
    )
    assert value.encode(1) == expected
    assert TransactionLogValue.decode(expected) == value


def test_encode_v1_null_partitions_and_no_tags() -> None:
    value = TransactionLogValue(7, 0, 1000, 0, None, 5, -1)
    assert (
        value.encode()
        == struct.pack(">hqhib", 1, 7, 0, 1000, 0) + b"\x00" + struct.pack(">qq", 5, -1) + b"\x00"
    )


def test_unknown_value_version_and_short_data() -> None:
    with pytest.raises(DecodeError):
        TransactionLogValue.decode(struct.pack(">h", 2) + b"\x00" * 40)
    with pytest.raises(DecodeError):
        TransactionLogValue.decode(struct.pack(">hq", 1, 5))
    with pytest.raises(ValueError):
        TransactionLogValue(1, 0, 1, 0, None, 0, 0).encode(2)


_partitions = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.lists(st.integers(0, 2**31 - 1), max_size=4)),
    max_size=3,
).map(lambda ps: tuple((t, tuple(ids)) for t, ids in ps))


@given(
    version=st.sampled_from([0, 1]),
    pid=st.integers(0, 2**63 - 1),
    epoch=st.integers(0, 2**15 - 1),
    timeout=st.integers(1, 2**31 - 1),
    status=st.integers(0, 7),
    partitions=st.none() | _partitions,
    ts=st.tuples(st.integers(-1, 2**62), st.integers(-1, 2**62)),
    tags=st.tuples(
        st.integers(-1, 2**62),
        st.integers(-1, 2**62),
        st.integers(-1, 2**15 - 1),
        st.integers(0, 2),
    ),
)
def test_round_trip(
    version: int,
    pid: int,
    epoch: int,
    timeout: int,
    status: int,
    partitions: tuple[tuple[str, tuple[int, ...]], ...] | None,
    ts: tuple[int, int],
    tags: tuple[int, int, int, int],
) -> None:
    value = TransactionLogValue(pid, epoch, timeout, status, partitions, ts[0], ts[1])
    if version == 1:
        value = TransactionLogValue(pid, epoch, timeout, status, partitions, ts[0], ts[1], *tags)
    data = value.encode(version)
    assert TransactionLogValue.decode(data) == value
    assert TransactionLogValue.decode(data).encode(version) == data


def test_metadata_value_round_trip_keeps_everything_but_last_epoch() -> None:
    meta = TransactionMetadata(
        "t",
        5,
        3,
        1000,
        TransactionState.PREPARE_ABORT,
        frozenset({("a", 1), ("b", 0)}),
        10,
        20,
        prev_producer_id=4,
        last_producer_epoch=2,
        client_transaction_version=1,
    )
    back = TransactionMetadata.from_value("t", TransactionLogValue.decode(meta.to_value().encode()))
    assert back == TransactionMetadata(
        "t",
        5,
        3,
        1000,
        TransactionState.PREPARE_ABORT,
        frozenset({("a", 1), ("b", 0)}),
        10,
        20,
        prev_producer_id=4,
        client_transaction_version=1,
    )


def test_config_names_and_defaults() -> None:
    c = TransactionConfig()
    assert c.transaction_state_log_num_partitions == 50
    assert c.transaction_max_timeout_ms == 900000
    assert c.transactional_id_expiration_ms == 604800000
    assert c.transaction_abort_timed_out_transaction_cleanup_interval_ms == 10000
    assert c.transaction_remove_expired_transaction_cleanup_interval_ms == 3600000
    assert c.transaction_state_log_replication_factor == 3
    assert c.transaction_state_log_min_isr == 2
    assert c.transaction_state_log_segment_bytes == 104857600
    c = TransactionConfig.from_properties(
        {
            "transaction.state.log.num.partitions": "3",
            "transaction.max.timeout.ms": " 5000 ",
            "transactional.id.expiration.ms": "100",
            "transaction.partition.verification.enable": "false",
            "unrelated.key": "x",
        }
    )
    assert (c.state_log_num_partitions, c.transaction_max_timeout_ms) == (3, 5000)
    assert c.transactional_id_expiration_ms == 100
    assert c.transaction_partition_verification_enable is False
    with pytest.raises(ValueError):
        TransactionConfig.from_properties({"transaction.max.timeout.ms": "0"})
