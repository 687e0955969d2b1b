"""Hypothesis round trips, truncation and garbage for every generated class and version.

For each (class, version) in VALID_VERSIONS, requests, responses and both headers:
- decode(encode(m)) equals m restricted to the version's fields, the decoder consumes exactly
  the encoding, and encode(decode(bytes)) gives the same bytes back;
- every strict prefix of an encoding raises DecodeError. Decoding is deterministic and reads
  the prefix exactly as it reads the whole encoding, which it consumes to the last byte (checked
  above), so some read must run past the end of any prefix: no prefix can decode, even with
  trailing bytes tolerated. Empty encodings (bodies with no field in that version) have none;
- random and mutated bytes never make ``decode`` raise anything but DecodeError.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec_strategies import (
    CODEC_SETTINGS,
    examples,
    HEADER_CLASSES,
    REQUESTS,
    RESPONSES,
    messages,
    pair_id,
    pairs,
    restrict,
)
from metamorphostreams.protocol._message import Message
from metamorphostreams.protocol._primitives import INLINE_RECORDS_LIMIT, Reader, part_bytes
from metamorphostreams.protocol.errors import DecodeError

ALL_PAIRS = pairs(HEADER_CLASSES + REQUESTS + RESPONSES)
# What a broker decodes from the network: request headers and request bodies.
INBOUND_PAIRS = pairs([HEADER_CLASSES[0], *REQUESTS])


def test_every_api_has_versions() -> None:
    # APIs whose schema lists no valid version (removed in Kafka 4) have nothing to test.
    empty = {cls.__name__ for cls in REQUESTS + RESPONSES if cls.VALID_VERSIONS[0] > cls.VALID_VERSIONS[1]}
    assert empty == {
        f"{api}{kind}"
        for api in ("LeaderAndIsr", "StopReplica", "UpdateMetadata", "ControlledShutdown")
        for kind in ("Request", "Response")
    }
    assert len(ALL_PAIRS) > 600


def check_roundtrip(cls: type[Message], version: int, msg: Message) -> bytes:
    parts = msg.encode(version)
    data = b"".join(part_bytes(p) for p in parts)
    assert msg.to_bytes(version) == data
    for p in parts:  # big record blobs travel as parts of their own, never joined
        if not isinstance(p, bytes):
            assert len(p) > INLINE_RECORDS_LIMIT
    expected = restrict(msg, version)
    assert expected.to_bytes(version) == data, "a field absent from this version was encoded"

    r = Reader(data)
    decoded = cls.read(r, version)
    assert r.pos == len(data), f"decoder consumed {r.pos} of {len(data)} bytes"
    assert decoded == expected
    assert decoded.to_bytes(version) == data
    assert cls.decode(data + b"\x00\x07\xff", version) == expected  # trailing bytes ignored
    return data


@pytest.mark.parametrize(("cls", "version"), ALL_PAIRS, ids=pair_id)
def test_roundtrip(cls: type[Message], version: int) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(6))
    @given(messages(cls, version, noise=True))
    def run(msg: Message) -> None:
        check_roundtrip(cls, version, msg)

    run()


def test_roundtrip_default_messages() -> None:
    # Constructor defaults must encode in every version (the schema defaults are valid values).
    for cls, version in ALL_PAIRS:
        check_roundtrip(cls, version, cls())


@pytest.mark.parametrize(("cls", "version"), ALL_PAIRS, ids=pair_id)
def test_every_strict_prefix_raises(cls: type[Message], version: int) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(3))
    @given(messages(cls, version))
    def run(msg: Message) -> None:
        data = memoryview(msg.to_bytes(version))
        for end in range(len(data)):
            with pytest.raises(DecodeError):
                cls.decode(data[:end], version)

    run()


def check_garbage(cls: type[Message], version: int, data: bytes) -> None:
    """Garbage either raises DecodeError or decodes to a message that encodes canonically."""
    try:
        msg = cls.decode(data, version)
    except DecodeError:
        return
    # Whatever decodes must encode, and its encoding must be a fixed point.
    canonical = msg.to_bytes(version)
    assert cls.decode(canonical, version).to_bytes(version) == canonical


@pytest.mark.parametrize(("cls", "version"), INBOUND_PAIRS, ids=pair_id)
def test_garbage_raises_only_decode_error(cls: type[Message], version: int) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(15))
    @given(st.binary(max_size=48))
    def run(data: bytes) -> None:
        check_garbage(cls, version, data)

    run()


@st.composite
def mutated(draw: st.DrawFn, cls: type[Message], version: int) -> bytes:
    """A valid encoding with a few bytes overwritten, inserted or cut."""
    data = bytearray(draw(messages(cls, version)).to_bytes(version))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "cut"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert" or not data:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif op == "set":
            pos = min(pos, len(data) - 1)
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]) | st.integers(0, 255))
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize(("cls", "version"), INBOUND_PAIRS, ids=pair_id)
def test_mutated_requests_raise_only_decode_error(cls: type[Message], version: int) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(10))
    @given(mutated(cls, version))
    def run(data: bytes) -> None:
        check_garbage(cls, version, data)

    run()


@pytest.mark.parametrize(
    ("cls", "version"), pairs([HEADER_CLASSES[1], *RESPONSES]), ids=pair_id
)
def test_mutated_responses_raise_only_decode_error(cls: type[Message], version: int) -> None:
    # Our clients decode responses from brokers that may be buggy (see the golden Tansu frames).
    @settings(CODEC_SETTINGS, max_examples=examples(5))
    @given(mutated(cls, version))
    def run(data: bytes) -> None:
        check_garbage(cls, version, data)

    run()
