"""FrameSplitter: transactional reads, byte-at-a-time feeding, size limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.frames import FrameSplitter, FrameTooLarge


def framed(payloads: list[bytes]) -> bytes:
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], data: st.DataObject) -> None:
    stream = framed(payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    splitter = FrameSplitter(1 << 20)
    got: list[bytes] = []
    start = 0
    for end in [*cuts, len(stream)]:
        splitter.feed(stream[start:end])
        start = end
        while (frame := splitter.next_frame()) is not None:
            got.append(frame)
    assert got == payloads
    assert splitter.buffered() == 0


def test_byte_at_a_time_is_transactional() -> None:
    stream = framed([b"hello", b"", b"world" * 100])
    splitter = FrameSplitter(1 << 20)
    got = []
    for i in range(len(stream)):
        before = splitter.buffered()
        splitter.feed(stream[i : i + 1])
        frame = splitter.next_frame()
        if frame is None:
            assert splitter.buffered() == before + 1  # nothing consumed on a short read
        else:
            got.append(frame)
    assert got == [b"hello", b"", b"world" * 100]


def test_oversized_and_negative_sizes_raise() -> None:
    splitter = FrameSplitter(100)
    splitter.feed(struct.pack(">i", 101))
    with pytest.raises(FrameTooLarge):
        splitter.next_frame()
    negative = FrameSplitter(100)
    negative.feed(struct.pack(">i", -5))
    with pytest.raises(DecodeError):
        negative.next_frame()


def test_exactly_the_limit_is_accepted() -> None:
    splitter = FrameSplitter(10)
    splitter.feed(framed([b"x" * 10]))
    assert splitter.next_frame() == b"x" * 10
