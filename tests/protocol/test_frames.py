"""FrameReader: any chunking yields the same frames, large frames are read in place, size
limits close the stream."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.frames import (
    OWN_BUFFER_FIRST,
    READ_SIZE,
    FrameReader,
    FrameTooLarge,
)


def framed(payloads: list[bytes]) -> bytes:
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


def pattern(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def read_through_socket(reader: FrameReader, stream: bytes, cuts: list[int]) -> list[bytearray]:
    """Deliver ``stream`` as a transport would: each read fills at most what get_buffer()
    offers, and the reads end at ``cuts``."""
    got: list[bytearray] = []
    pos = 0
    for end in [*cuts, len(stream)]:
        while pos < end:
            target = reader.get_buffer()
            assert len(target) > 0
            n = min(len(target), end - pos)
            target[:n] = stream[pos : pos + n]
            got += reader.buffer_updated(n)
            pos += n
    return got


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.integers(READ_SIZE // 2 - 8, 3 * READ_SIZE)),
        max_size=8,
    ),
    st.data(),
)
def test_any_chunking_yields_the_same_frames(specs: list[bytes | int], data: st.DataObject) -> None:
    payloads = [s if isinstance(s, bytes) else pattern(s) for s in specs]
    stream = framed(payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader(1 << 20)
    got = read_through_socket(reader, stream, cuts)
    assert got == payloads
    assert all(type(frame) is bytearray for frame in got)
    assert reader.buffered() == 0


def test_byte_at_a_time() -> None:
    payloads = [b"hello", b"", b"world" * 100, b"x" * (READ_SIZE + 10)]
    stream = framed(payloads)
    reader = FrameReader(1 << 20)
    got = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
        assert reader.buffered() == i + 1 - sum(len(f) + 4 for f in got)
    assert got == payloads


def test_a_large_frame_is_read_into_its_own_buffer() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    stream = framed([payload])
    reader = FrameReader(1 << 20)
    assert reader.feed(stream[:100]) == []
    target = reader.get_buffer()
    # The rest of the frame, and no more, is offered in one piece: the socket reads it in.
    assert len(target) == len(payload) - 96
    target[:] = stream[100:]
    (frame,) = reader.buffer_updated(len(target))
    assert frame == payload
    assert len(reader.get_buffer()) == READ_SIZE  # back to the shared buffer


def test_frames_are_independent_copies() -> None:
    reader = FrameReader(1 << 20)
    first, second = reader.feed(framed([b"aaaa", b"bbbb"]))
    first[:] = b"zzzz"
    assert second == b"bbbb"
    (third,) = reader.feed(framed([b"cccc"]))
    assert (first, second, third) == (b"zzzz", b"bbbb", b"cccc")


def test_oversized_and_negative_sizes_raise() -> None:
    with pytest.raises(FrameTooLarge):
        FrameReader(100).feed(struct.pack(">i", 101))
    with pytest.raises(DecodeError):
        FrameReader(100).feed(struct.pack(">i", -5))


def test_exactly_the_limit_is_accepted() -> None:
    assert FrameReader(10).feed(framed([b"x" * 10])) == [b"x" * 10]


def test_a_huge_announced_frame_holds_only_what_arrived() -> None:
    """The buffer of a 5 MiB frame starts at OWN_BUFFER_FIRST and at most doubles what has
    arrived; delivered in uneven reads, the frame comes out whole."""
    payload = random.Random(5).randbytes(5 << 20)
    stream = framed([payload])
    reader = FrameReader(100 << 20)
    assert reader.feed(stream[:1000]) == []
    assert 996 + len(reader.get_buffer()) == OWN_BUFFER_FIRST
    rng = random.Random(7)
    pos = 1000
    got: list[bytearray] = []
    while pos < len(stream):
        target = reader.get_buffer()
        held = reader.buffered() - 4 + len(target)  # the frame buffer's whole size
        assert held <= max(OWN_BUFFER_FIRST, 2 * (pos - 4))
        n = min(len(target), rng.randint(1, 300_000), len(stream) - pos)
        target[:n] = stream[pos : pos + n]
        target.release()
        got += reader.buffer_updated(n)
        pos += n
    assert got == [payload]
