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

from typing import Any

import pytest
from codec_strategies import (
    CODEC_SETTINGS,
    HEADER_CLASSES,
    REQUESTS,
    RESPONSES,
    examples,
    has,
    messages,
    pair_id,
    pairs,
    restrict,
    schema,
    struct_info,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol._message import Message
from metamorphostreams.protocol._primitives import INLINE_RECORDS_LIMIT, Reader, Writer, part_bytes
from metamorphostreams.protocol.errors import DecodeError

ALL_PAIRS = pairs(HEADER_CLASSES + REQUESTS + RESPONSES)
# What a broker decodes from the network: request headers and request bodies.
INBOUND_PAIRS = pairs([HEADER_CLASSES[0], *REQUESTS])


def test_every_api_has_versions() -> None:
    # APIs whose schema lists no valid version (removed in Kafka 4) have nothing to test.
    empty = {
        cls.__name__
        for cls in REQUESTS + RESPONSES
        if cls.VALID_VERSIONS[0] > cls.VALID_VERSIONS[1]
    }
    assert empty == {
        f"{api}{kind}"
        for api in ("LeaderAndIsr", "StopReplica", "UpdateMetadata", "ControlledShutdown")
        for kind in ("Request", "Response")
    }
    assert len(ALL_PAIRS) > 600


def records_values(msg: Message, version: int) -> list[Any]:
    """The non-null records values of a message, at the fields present in ``version``."""
    found: list[Any] = []
    for f in struct_info(type(msg))[1].fields:
        value = getattr(msg, f.attr)
        if not has(f.versions, version) or value is None:
            continue
        if f.type == "records":
            found.append(value)
        elif f.struct is not None:
            for child in value if f.is_array else [value]:
                found.extend(records_values(child, version))
    return found


def check_roundtrip(cls: type[Message], version: int, msg: Message) -> bytes:
    parts = msg.encode(version)
    data = b"".join(part_bytes(p) for p in parts)
    assert msg.to_bytes(version) == data
    for blob in records_values(msg, version):  # big blobs travel as parts of their own
        if len(blob) > INLINE_RECORDS_LIMIT:
            assert any(p is blob for p in parts)
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
    @settings(CODEC_SETTINGS, max_examples=examples(5))
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
            data[pos] = draw(
                st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]) | st.integers(0, 255)
            )
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize(("cls", "version"), INBOUND_PAIRS, ids=pair_id)
def test_mutated_requests_raise_only_decode_error(cls: type[Message], version: int) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(8))
    @given(mutated(cls, version))
    def run(data: bytes) -> None:
        check_garbage(cls, version, data)

    run()


@pytest.mark.parametrize(("cls", "version"), pairs([HEADER_CLASSES[1], *RESPONSES]), ids=pair_id)
def test_mutated_responses_raise_only_decode_error(cls: type[Message], version: int) -> None:
    # Our clients decode responses from brokers that may be buggy (see the golden Tansu frames).
    @settings(CODEC_SETTINGS, max_examples=examples(4))
    @given(mutated(cls, version))
    def run(data: bytes) -> None:
        check_garbage(cls, version, data)

    run()


def _string_array_paths(cls: type[Message], version: int) -> list[list[Any]]:
    """Schema paths (lists of fields) to the nullable []string fields present in a version."""
    found: list[list[Any]] = []

    def walk(struct: Any, path: list[Any]) -> None:
        for f in struct.fields:
            if not has(f.versions, version):
                continue
            if f.is_array and f.type == "string" and has(f.nullable, version):
                found.append([*path, f])
            elif f.struct is not None:
                walk(f.struct, [*path, f])

    walk(schema(cls).gen.root, [])
    return found


NULL_ELEMENT_CASES = [
    (cls, version, path)
    for cls, version in pairs(REQUESTS + RESPONSES)
    for path in _string_array_paths(cls, version)
]
MARKER = "\u2603 marker"


def _with_marker(cls: type[Message], path: list[Any]) -> Message:
    """A default message whose path leads, through one-element arrays, to [MARKER]."""
    sch = schema(cls)
    root = cls()
    node: Message = root
    for f in path[:-1]:
        child = sch.classes[f.struct.name]()
        setattr(node, f.attr, [child] if f.is_array else child)
        node = child
    setattr(node, path[-1].attr, [MARKER])
    return root


@pytest.mark.parametrize(
    ("cls", "version", "path"),
    NULL_ELEMENT_CASES,
    ids=[f"{c.__name__}-v{v}-{p[-1].name}" for c, v, p in NULL_ELEMENT_CASES],
)
def test_null_element_in_nullable_string_array_is_rejected(
    cls: type[Message], version: int, path: list[Any]
) -> None:
    # Only the array may be null (nullableVersions); its elements never are, in Kafka.
    data = _with_marker(cls, path).to_bytes(version)
    marker, null = Writer(), Writer()
    compact = cls.is_flexible(version)
    marker.string(MARKER, compact, False)
    null.string(None, compact, True)
    assert data.count(marker.getvalue()) == 1
    with pytest.raises(DecodeError):
        cls.decode(data.replace(marker.getvalue(), null.getvalue()), version)
