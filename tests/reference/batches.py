"""Record batches for the differential tests: compressed ones, and helpers to build them.

Uncompressed batches come from tests/helpers/kafka_wire.py; a compressed batch is that same
batch with its records section (everything after the 61-byte header) compressed the way
Kafka's Java producer writes each codec, the codec in the attributes, and the length and
CRC-32C recomputed. Kafka validates compressed batches on produce, so a batch it accepts
proves the encoding; our codec is not used here.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence

import cramjam
import crc32c
from helpers import kafka_wire as wire

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

HEADER_SIZE = wire.BATCH_HEADER_SIZE
ATTRIBUTES_OFFSET = 21  # baseOffset 8, batchLength 4, partitionLeaderEpoch 4, magic 1, crc 4
LENGTH_OFFSET = 8
XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)  # magic, version, compatible
XERIAL_BLOCK = 32 * 1024  # snappy-java's default uncompressed block size


def compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "snappy":
        # snappy-java's stream framing: header, then int32-length-prefixed raw blocks.
        out = bytearray(XERIAL_HEADER)
        for start in range(0, len(data), XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + XERIAL_BLOCK]))
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    if codec == "lz4":
        # LZ4 frame with independent blocks and no content checksum, as Kafka writes it.
        compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
        compressor.compress(data)
        return bytes(compressor.finish())
    if codec == "zstd":
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown codec {codec!r}")


def build_batch(
    records: Sequence[wire.Record],
    *,
    base_timestamp: int,
    codec: str = "none",
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A magic-2 batch of `records`, compressed with `codec`, with a correct CRC-32C."""
    plain = wire.build_record_batch(
        records,
        base_timestamp=base_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )
    if codec == "none":
        return plain
    header = bytearray(plain[:HEADER_SIZE])
    body = compress(codec, plain[HEADER_SIZE:])
    (attributes,) = struct.unpack_from(">h", header, ATTRIBUTES_OFFSET)
    struct.pack_into(">h", header, ATTRIBUTES_OFFSET, attributes | CODEC_IDS[codec])
    struct.pack_into(">i", header, LENGTH_OFFSET, HEADER_SIZE - 12 + len(body))
    crc = crc32c.crc32c(bytes(header[ATTRIBUTES_OFFSET:]) + body)
    struct.pack_into(">I", header, wire.CRC_OFFSET, crc)
    return bytes(header) + body


def records(n: int, tag: str = "r", size: int = 10) -> list[wire.Record]:
    """`n` keyed records with a header and timestamp deltas 0..n-1; values of ~`size` bytes."""
    return [
        wire.Record(f"k{i}".encode(), f"{tag}-{i}-".encode() + b"x" * size, [("h", b"%d" % i)], i)
        for i in range(n)
    ]


def batch(
    n: int,
    base_timestamp: int,
    tag: str = "r",
    size: int = 10,
    *,
    codec: str = "none",
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """`build_batch` of `records(n, tag, size)`."""
    return build_batch(
        records(n, tag, size),
        base_timestamp=base_timestamp,
        codec=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )


def batch_of_size(size: int, base_timestamp: int) -> bytes:
    """An uncompressed one-record batch exactly `size` bytes long."""
    for value_len in range(max(size - 120, 0), size):
        candidate = wire.build_record_batch(
            [wire.Record(b"k", b"v" * value_len)], base_timestamp=base_timestamp
        )
        if len(candidate) == size:
            return candidate
    raise AssertionError(f"no batch of exactly {size} bytes")
