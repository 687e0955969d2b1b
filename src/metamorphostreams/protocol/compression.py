"""Record batch compression codecs (gzip, snappy, lz4, zstd) on top of ``cramjam``.

The compressed unit is everything after a batch's 61-byte header. Decoding is bounded by
``max_size`` so a small hostile batch cannot make the broker allocate gigabytes: the output
goes into a buffer that never grows past the limit. No I/O.
"""

from __future__ import annotations

import struct

import cramjam

from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.record_batch import CompressionType, ReadableBuffer

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "XERIAL_BLOCK_SIZE",
    "XERIAL_HEADER",
    "CompressionError",
    "UnknownCodecError",
    "compress",
    "decompress",
]

# Snappy-java's stream framing ("xerial"): 8-byte magic, int32 version, int32 oldest
# compatible version, then int32-length-prefixed raw snappy blocks.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_BLOCK_SIZE = 32 * 1024  # uncompressed bytes per block, snappy-java's default

# Bound for callers that pass no limit: larger than any sane batch (Kafka's default
# max.message.bytes is ~1 MiB, fetch.max.bytes 50 MiB), small enough to survive a bomb.
DEFAULT_MAX_DECOMPRESSED_SIZE = 256 * 1024 * 1024

# First output buffer is a guess so small batches do not pay for a max_size allocation.
_FIRST_GUESS_RATIO = 8
_FIRST_GUESS_MIN = 64 * 1024

_INT32 = struct.Struct(">i")

_STREAM_MODULES = {
    CompressionType.GZIP: cramjam.gzip,
    CompressionType.LZ4: cramjam.lz4,
    CompressionType.ZSTD: cramjam.zstd,
}


class CompressionError(DecodeError):
    """Compressed data is corrupt, or inflates past the allowed size."""


class UnknownCodecError(DecodeError):
    """A codec id outside Kafka's 0-4 (or a codec this build cannot handle)."""


def _codec(codec: int) -> CompressionType:
    try:
        return CompressionType(codec)
    except ValueError:
        raise UnknownCodecError(f"unknown compression codec id {codec}") from None


def compress(codec: CompressionType | int, data: ReadableBuffer, level: int | None = None) -> bytes:
    """Compress ``data`` the way Kafka's own producer does for ``codec``.

    Snappy uses the xerial framing (every client we know reads it); LZ4 writes the standard
    frame format with independent blocks (Kafka's Java reader decodes blocks one by one).
    """
    kind = _codec(codec)
    if kind is CompressionType.NONE:
        return bytes(data)
    if kind is CompressionType.GZIP:
        return bytes(cramjam.gzip.compress(data, level=level))
    if kind is CompressionType.SNAPPY:
        return _xerial_compress(data)
    if kind is CompressionType.LZ4:
        compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        # The streaming compressor takes only bytes, unlike cramjam's one-shot functions.
        compressor.compress(data if isinstance(data, bytes) else bytes(data))
        return bytes(compressor.finish())
    return bytes(cramjam.zstd.compress(data, level=level))


def decompress(
    codec: CompressionType | int,
    data: ReadableBuffer,
    max_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> bytes:
    """Inflate ``data``; raises CompressionError if corrupt or bigger than ``max_size`` bytes,
    UnknownCodecError for a codec id outside 0-4.

    Snappy accepts both plain snappy blocks (librdkafka, kafkajs) and xerial framing
    (kafka-python, aiokafka, the Java client).
    """
    kind = _codec(codec)
    if kind is CompressionType.NONE:
        if len(data) > max_size:
            raise CompressionError(f"{len(data)} bytes exceed the limit of {max_size}")
        return bytes(data)
    if kind is CompressionType.SNAPPY:
        with memoryview(data) as view:
            if view[: len(XERIAL_MAGIC)] == XERIAL_MAGIC:
                return _xerial_decompress(view, max_size)
            return _snappy_block(view, max_size)
    return _bounded(kind, data, max_size)


def _bounded(kind: CompressionType, data: ReadableBuffer, max_size: int) -> bytes:
    """Stream-decode gzip/lz4/zstd into fixed buffers, growing geometrically.

    cramjam's ``decompress_into`` stops with an error when the buffer is full instead of
    allocating more, which is what makes the bound hold. The last buffer has room for one
    byte past ``max_size``, so filling it proves the output is too large.
    """
    module = _STREAM_MODULES[kind]
    name = kind.name.lower()
    limit = max_size + 1
    size = min(limit, max(_FIRST_GUESS_MIN, _FIRST_GUESS_RATIO * len(data)))
    while True:
        out = bytearray(size)
        try:
            written = int(module.decompress_into(data, out))
        except cramjam.DecompressionError as exc:
            if size >= limit:
                raise CompressionError(
                    f"{name} data is corrupt or inflates past {max_size} bytes: {exc}"
                ) from None
            size = min(limit, size * 4)
            continue
        if written < size:
            del out[written:]
            return bytes(out)
        if size >= limit:
            raise CompressionError(f"{name} data inflates past {max_size} bytes")
        size = min(limit, size * 4)


def _snappy_block(block: memoryview, max_size: int) -> bytes:
    """One raw snappy block; its header states the output length, checked before inflating."""
    try:
        length = int(cramjam.snappy.decompress_raw_len(block))
    except cramjam.DecompressionError as exc:
        raise CompressionError(f"corrupt snappy block: {exc}") from None
    if length > max_size:
        raise CompressionError(f"snappy block inflates to {length} bytes, limit is {max_size}")
    out = bytearray(length)
    try:
        written = int(cramjam.snappy.decompress_raw_into(block, out))
    except cramjam.DecompressionError as exc:
        raise CompressionError(f"corrupt snappy block: {exc}") from None
    if written != length:
        raise CompressionError(f"snappy block inflated to {written} bytes, header said {length}")
    return bytes(out)


def _xerial_decompress(view: memoryview, max_size: int) -> bytes:
    if len(view) < len(XERIAL_HEADER):
        raise CompressionError("truncated xerial snappy header")
    parts: list[bytes] = []
    total = 0
    pos = len(XERIAL_HEADER)
    end = len(view)
    while pos < end:
        if end - pos < 4:
            raise CompressionError(f"truncated xerial block length at {pos}")
        (block_len,) = _INT32.unpack_from(view, pos)
        pos += 4
        if block_len < 0 or block_len > end - pos:
            raise CompressionError(f"xerial block of {block_len} bytes at {pos} overruns input")
        part = _snappy_block(view[pos : pos + block_len], max_size - total)
        total += len(part)
        parts.append(part)
        pos += block_len
    return b"".join(parts)


def _xerial_compress(data: ReadableBuffer) -> bytes:
    with memoryview(data) as view:
        out = bytearray(XERIAL_HEADER)
        for start in range(0, len(view), XERIAL_BLOCK_SIZE):
            block = bytes(cramjam.snappy.compress_raw(view[start : start + XERIAL_BLOCK_SIZE]))
            out += _INT32.pack(len(block))
            out += block
    return bytes(out)
