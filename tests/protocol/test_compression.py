"""Compression codecs (protocol/compression): round trips, framings, bombs, independent codecs."""

from __future__ import annotations

import gzip
import struct

import cramjam
import pytest
from aiokafka import codec as aiokafka_codec
from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol.compression import (
    XERIAL_BLOCK_SIZE,
    XERIAL_HEADER,
    CompressionError,
    UnknownCodecError,
    compress,
    decompress,
)
from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.record_batch import CompressionType

CODECS = list(CompressionType)
COMPRESSED = [c for c in CODECS if c is not CompressionType.NONE]
# Text-like data compresses; random data does not; both shapes matter for framing.
payloads = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=40), st.integers(1, 3000)),
)


@settings(max_examples=60)
@given(codec=st.sampled_from(CODECS), data=payloads)
def test_round_trip(codec: CompressionType, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    assert decompress(int(codec), bytearray(packed)) == data
    assert decompress(codec, memoryview(b"xx" + packed)[2:]) == data


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_compress_accepts_any_buffer(codec: CompressionType, kind: type) -> None:
    data = b"hello kafka " * 500
    assert decompress(codec, compress(codec, kind(data))) == data


def test_large_payload_crosses_xerial_and_lz4_block_boundaries() -> None:
    data = bytes(range(256)) * 1200 + b"z" * 200_000  # ~500 KiB
    for codec in COMPRESSED:
        assert decompress(codec, compress(codec, data)) == data


# --- snappy framings --------------------------------------------------------------------


def _xerial_blocks(packed: bytes) -> list[int]:
    """Compressed sizes of the blocks in a xerial stream, parsed independently of our code."""
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    sizes, pos = [], 16
    while pos < len(packed):
        (size,) = struct.unpack_from(">i", packed, pos)
        sizes.append(size)
        pos += 4 + size
    assert pos == len(packed)
    return sizes


def test_snappy_writes_xerial_framing_in_32k_blocks() -> None:
    data = bytes(range(256)) * 300  # 76800 bytes -> 3 blocks of at most 32 KiB input
    packed = compress(CompressionType.SNAPPY, data)
    assert packed.startswith(XERIAL_HEADER)
    assert len(_xerial_blocks(packed)) == -(-len(data) // XERIAL_BLOCK_SIZE) == 3
    assert compress(CompressionType.SNAPPY, b"") == XERIAL_HEADER
    assert decompress(CompressionType.SNAPPY, XERIAL_HEADER) == b""


@given(payloads)
def test_snappy_raw_blocks_from_librdkafka_style_encoders(data: bytes) -> None:
    raw = bytes(cramjam.snappy.compress_raw(data))
    assert not raw.startswith(b"\x82SNAPPY")
    assert decompress(CompressionType.SNAPPY, raw) == data


@given(payloads.filter(bool))
def test_snappy_xerial_interop_with_aiokafka(data: bytes) -> None:
    # aiokafka writes its own xerial framing (the one kafka-python and the Java client use).
    # It takes a header-only stream for raw snappy, so empty input is left out; batches with
    # records never compress to nothing.
    theirs = aiokafka_codec.snappy_encode(data, xerial_compatible=True, xerial_blocksize=1024)
    assert decompress(CompressionType.SNAPPY, theirs) == data
    assert aiokafka_codec.snappy_decode(compress(CompressionType.SNAPPY, data)) == data


def test_snappy_corrupt_inputs() -> None:
    packed = compress(CompressionType.SNAPPY, b"abc" * 20_000)
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, packed[:10])  # header cut
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, packed[:18])  # block length cut
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, packed[:-3])  # block cut
    lying = bytearray(packed)
    struct.pack_into(">i", lying, 16, -2)
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, lying)
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, b"\xff\xff\xff\xff\x0f garbage")


# --- other codecs against independent implementations -----------------------------------


@given(payloads)
def test_gzip_interop_with_the_standard_library(data: bytes) -> None:
    assert gzip.decompress(compress(CompressionType.GZIP, data)) == data
    assert decompress(CompressionType.GZIP, gzip.compress(data)) == data


@given(payloads)
def test_lz4_and_zstd_interop_with_aiokafka(data: bytes) -> None:
    assert aiokafka_codec.lz4_decode(compress(CompressionType.LZ4, data)) == data
    assert decompress(CompressionType.LZ4, aiokafka_codec.lz4_encode(data)) == data
    assert aiokafka_codec.zstd_decode(compress(CompressionType.ZSTD, data)) == data
    assert decompress(CompressionType.ZSTD, aiokafka_codec.zstd_encode(data)) == data


def test_lz4_frames_have_independent_blocks_and_no_linked_history() -> None:
    packed = compress(CompressionType.LZ4, b"x" * 300_000)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flags = packed[4]
    assert flags >> 6 == 1  # frame version 01
    assert flags & 0x20  # block independence: Kafka's Java reader decodes blocks one by one
    assert not flags & 0x08  # no content size field


def test_lz4_reads_frames_with_linked_blocks_and_checksums() -> None:
    data = b"linked " * 50_000
    linked = cramjam.lz4.Compressor(content_checksum=True, block_linked=True)
    linked.compress(data)
    assert decompress(CompressionType.LZ4, bytes(linked.finish())) == data


# --- errors and bombs -------------------------------------------------------------------


@pytest.mark.parametrize("codec_id", [5, 6, 7, -1])
def test_unknown_codec(codec_id: int) -> None:
    with pytest.raises(UnknownCodecError):
        decompress(codec_id, b"abc")
    with pytest.raises(UnknownCodecError):
        compress(codec_id, b"abc")
    assert issubclass(UnknownCodecError, DecodeError)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_corrupt_and_truncated_input_raise_decode_errors(codec: CompressionType) -> None:
    packed = compress(codec, bytes(range(256)) * 64)
    for bad in (packed[: len(packed) // 2], b"\x00" * 40, b""):
        with pytest.raises(CompressionError):
            decompress(codec, bad)
    assert issubclass(CompressionError, DecodeError)


@pytest.mark.parametrize("codec", CODECS)
def test_max_size_is_enforced_exactly(codec: CompressionType) -> None:
    data = bytes(range(256)) * 40 + b"\0" * 100_000
    packed = compress(codec, data)
    assert decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(CompressionError):
        decompress(codec, packed, max_size=len(data) - 1)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_decompression_bomb_is_refused(codec: CompressionType) -> None:
    bomb = compress(codec, b"\0" * (64 << 20))  # 64 MiB of zeros, tiny when compressed
    assert len(bomb) < (64 << 20) // 20  # snappy tops out near 21:1
    with pytest.raises(CompressionError):
        decompress(codec, bomb, max_size=1 << 20)


def test_xerial_bomb_is_refused_across_blocks() -> None:
    # Each block is within the limit; together they are not.
    packed = compress(CompressionType.SNAPPY, b"\0" * (10 * XERIAL_BLOCK_SIZE))
    with pytest.raises(CompressionError):
        decompress(CompressionType.SNAPPY, packed, max_size=5 * XERIAL_BLOCK_SIZE)
    assert len(decompress(CompressionType.SNAPPY, packed, max_size=10 * XERIAL_BLOCK_SIZE)) == (
        10 * XERIAL_BLOCK_SIZE
    )
