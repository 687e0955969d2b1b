"""The ``__transaction_state`` record formats, byte-compatible with Kafka's.

Key: ``int16 version (0)`` + TransactionLogKey v0 (``string TransactionalId``, int16 length).
Value: ``int16 version`` + TransactionLogValue; a null value is a tombstone (an expired
transactional id). Version 0 is not flexible; version 1 (written once the cluster's
``transaction.version`` is at least 1, as Kafka 4.x does) uses compact strings and arrays
and ends the value and every PartitionsSchema with a tagged-field section:

    ProducerId                         int64
    PreviousProducerId                 int64  tag 0 (v1+), default -1
    NextProducerId                     int64  tag 1 (v1+), default -1
    ProducerEpoch                      int16
    NextProducerEpoch                  int16  tag 3 (v1+), default -1
    TransactionTimeoutMs               int32
    TransactionStatus                  int8   (TransactionState id)
    TransactionPartitions              nullable []PartitionsSchema{Topic, []int32 PartitionIds}
    TransactionLastUpdateTimestampMs   int64
    TransactionStartTimestampMs        int64
    ClientTransactionVersion           int16  tag 2 (v1+), default 0

Tagged fields are written only when they differ from their default, as Kafka's generated
code does; unknown tags are skipped on read. Plain data, safe to share.
"""

from __future__ import annotations

from dataclasses import dataclass

from metamorphostreams.protocol._primitives import Reader, Writer
from metamorphostreams.protocol.errors import DecodeError

from ..records import CoordinatorRecord

TRANSACTION_LOG_KEY_VERSION = 0  # also Kafka's coordinator record type id for this topic
VALUE_VERSION_V0 = 0
VALUE_VERSION_V1 = 1  # the first flexible version
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1

_TAG_PREVIOUS_PRODUCER_ID = 0
_TAG_NEXT_PRODUCER_ID = 1
_TAG_CLIENT_TRANSACTION_VERSION = 2
_TAG_NEXT_PRODUCER_EPOCH = 3

Partitions = tuple[tuple[str, tuple[int, ...]], ...]
"""TransactionPartitions: (topic, partition ids) in the order they are written."""

__all__ = [
    "CoordinatorRecord",
    "TransactionLogValue",
    "decode_key",
    "encode_key",
]


def encode_key(transactional_id: str) -> bytes:
    w = Writer()
    w.int16(TRANSACTION_LOG_KEY_VERSION)
    w.string(transactional_id, False, False)
    return w.getvalue()


def decode_key(data: bytes | bytearray | memoryview) -> str | None:
    """The transactional id of a key; None for a key version this coordinator does not know."""
    r = Reader(data)
    if r.int16() != TRANSACTION_LOG_KEY_VERSION:
        return None
    tid = r.string(False, False)
    assert tid is not None
    return tid


@dataclass(frozen=True)
class TransactionLogValue:
    """One TransactionLogValue, any version; ``encode`` picks the version to write."""

    producer_id: int
    producer_epoch: int
    transaction_timeout_ms: int
    transaction_status: int
    transaction_partitions: Partitions | None
    transaction_last_update_timestamp_ms: int
    transaction_start_timestamp_ms: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    next_producer_epoch: int = NO_PRODUCER_EPOCH
    client_transaction_version: int = 0

    def encode(self, version: int = VALUE_VERSION_V1) -> bytes:
        if version not in (VALUE_VERSION_V0, VALUE_VERSION_V1):
            raise ValueError(f"unknown TransactionLogValue version {version}")
        fx = version >= VALUE_VERSION_V1
        w = Writer()
        w.int16(version)
        w.int64(self.producer_id)
        w.int16(self.producer_epoch)
        w.int32(self.transaction_timeout_ms)
        w.int8(self.transaction_status)
        if self.transaction_partitions is None:
            w.null_array(fx, True)
        else:
            w.array_length(len(self.transaction_partitions), fx)
            for topic, ids in self.transaction_partitions:
                w.string(topic, fx, False)
                w.array_length(len(ids), fx)
                for p in ids:
                    w.int32(p)
                if fx:
                    w.uvarint(0)
        w.int64(self.transaction_last_update_timestamp_ms)
        w.int64(self.transaction_start_timestamp_ms)
        if fx:
            w.tagged_fields(self._tagged())
        return w.getvalue()

    def _tagged(self) -> list[tuple[int, bytes]]:
        tagged: list[tuple[int, bytes]] = []
        if self.previous_producer_id != NO_PRODUCER_ID:
            tagged.append((_TAG_PREVIOUS_PRODUCER_ID, _int64(self.previous_producer_id)))
        if self.next_producer_id != NO_PRODUCER_ID:
            tagged.append((_TAG_NEXT_PRODUCER_ID, _int64(self.next_producer_id)))
        if self.client_transaction_version != 0:
            tagged.append(
                (_TAG_CLIENT_TRANSACTION_VERSION, _int16(self.client_transaction_version))
            )
        if self.next_producer_epoch != NO_PRODUCER_EPOCH:
            tagged.append((_TAG_NEXT_PRODUCER_EPOCH, _int16(self.next_producer_epoch)))
        return tagged

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> TransactionLogValue:
        """Decode versions 0 and 1; raises DecodeError for other versions or short data."""
        r = Reader(data)
        version = r.int16()
        if version not in (VALUE_VERSION_V0, VALUE_VERSION_V1):
            raise DecodeError(f"unknown TransactionLogValue version {version}")
        fx = version >= VALUE_VERSION_V1
        producer_id = r.int64()
        producer_epoch = r.int16()
        timeout = r.int32()
        status = r.int8()
        partitions: Partitions | None = None
        n = r.array_length(fx, True)
        if n >= 0:
            topics = []
            for _ in range(n):
                topic = r.string(fx, False)
                assert topic is not None
                ids = tuple(r.int32() for _ in range(r.array_length(fx, False)))
                if fx:
                    r.skip_tagged_fields()
                topics.append((topic, ids))
            partitions = tuple(topics)
        last_update = r.int64()
        start = r.int64()
        tags: dict[int, int] = {}
        if fx:
            for _ in range(r.uvarint()):
                tag = r.uvarint()
                size = r.uvarint()
                if tag in (_TAG_PREVIOUS_PRODUCER_ID, _TAG_NEXT_PRODUCER_ID) and size == 8:
                    tags[tag] = r.int64()
                elif (
                    tag in (_TAG_CLIENT_TRANSACTION_VERSION, _TAG_NEXT_PRODUCER_EPOCH) and size == 2
                ):
                    tags[tag] = r.int16()
                else:
                    r.skip(size)
        return cls(
            producer_id,
            producer_epoch,
            timeout,
            status,
            partitions,
            last_update,
            start,
            previous_producer_id=tags.get(_TAG_PREVIOUS_PRODUCER_ID, NO_PRODUCER_ID),
            next_producer_id=tags.get(_TAG_NEXT_PRODUCER_ID, NO_PRODUCER_ID),
            next_producer_epoch=tags.get(_TAG_NEXT_PRODUCER_EPOCH, NO_PRODUCER_EPOCH),
            client_transaction_version=tags.get(_TAG_CLIENT_TRANSACTION_VERSION, 0),
        )


def _int64(v: int) -> bytes:
    w = Writer()
    w.int64(v)
    return w.getvalue()


def _int16(v: int) -> bytes:
    w = Writer()
    w.int16(v)
    return w.getvalue()
