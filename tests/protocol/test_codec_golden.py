"""Golden frames captured from real clients (``../shared/golden``) through our codec.

Every ``.req`` decodes: the request header at v2 when the body version is flexible, else v1,
then the body at the header's version, consuming the frame to its last byte, and our encoding
of what we decoded is the original frame byte for byte. Exceptions, all asserted:
- kcat-legacy's Produce v1 and ListOffsets v0 are below Kafka 4's served range (KIP-896): only
  their headers decode, and the versions are asserted to be outside our VALID_VERSIONS;
- librdkafka 2.16's all-topics Metadata v12 (``confluent-kafka/0003``) carries 3 trailing bytes
  (librdkafka #5049): it decodes, trailing bytes ignored, and re-encodes to the frame minus them.

The ``.resp`` files are Tansu's answers, not Apache Kafka's: decoding them is a codec test only.
They decode with the response header at v1 when the body version is flexible (v0 otherwise and
always for ApiVersions), to the last byte. Re-encoding gives the original bytes except where
Tansu writes default-valued tagged fields, which we (like Kafka) omit; those frames are listed
in ``TANSU_DEFAULT_TAGS``. Tansu's truncated OffsetFetch v3 answer must raise DecodeError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from codec_strategies import GOLDEN_DIR

from metamorphostreams.protocol._generated import REQUEST_CLASSES, RESPONSE_CLASSES
from metamorphostreams.protocol._generated.headers import RequestHeader, ResponseHeader
from metamorphostreams.protocol._message import Message
from metamorphostreams.protocol._primitives import Reader
from metamorphostreams.protocol.errors import DecodeError

INDEX_PATH = GOLDEN_DIR / "index.json"
if not INDEX_PATH.exists():
    pytest.skip(f"golden frames not found at {GOLDEN_DIR}", allow_module_level=True)
INDEX: list[dict[str, Any]] = json.loads(INDEX_PATH.read_text())

API_VERSIONS_KEY = 18  # its response header is always v0 (KIP-511)
# (api_key, api_version) sent by kcat-legacy that Kafka 4 no longer serves.
BELOW_SERVED_RANGE = {(0, 1), (2, 0)}
TRAILING_BYTES = {"frames/confluent-kafka/0003_Metadata_v12.req": b"\x01\x00\x00"}
TRUNCATED_RESPONSES = {"frames/aiokafka/0038_OffsetFetch_v3.resp"}
# Tansu writes tagged fields that hold their default value: ApiVersions v3+ tags 0-3,
# Fetch v16's NodeEndpoints (tag 0, empty), CreateTopics v7's TopicConfigErrorCode (tag 0, 0).
TANSU_DEFAULT_TAGS = {
    "frames/confluent-kafka/0001_ApiVersions_v3.resp",
    "frames/kafka-python/0001_ApiVersions_v4.resp",
    "frames/kcat/0001_ApiVersions_v3.resp",
    "frames/confluent-kafka/0026_Fetch_v16.resp",
    "frames/confluent-kafka/0027_Fetch_v16.resp",
    "frames/confluent-kafka/0028_Fetch_v16.resp",
    "frames/kafka-python/0005_CreateTopics_v7.resp",
}


def served(cls: type[Message], version: int) -> bool:
    lo, hi = cls.VALID_VERSIONS
    return lo <= version <= hi


def request_header_version(cls: type[Message], version: int) -> int:
    return 2 if cls.is_flexible(version) else 1


def response_header_version(api_key: int, cls: type[Message], version: int) -> int:
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if cls.is_flexible(version) else 0


def test_index_is_complete() -> None:
    assert len(INDEX) == 204
    assert sum(1 for e in INDEX if e.get("response_file")) == 197
    below = [e for e in INDEX if (e["api_key"], e["api_version"]) in BELOW_SERVED_RANGE]
    assert {e["client"] for e in below} == {"kcat-legacy"}
    assert len(below) == 11


@pytest.mark.parametrize("entry", INDEX, ids=lambda e: e["file"].removeprefix("frames/"))
def test_golden_request_decodes(entry: dict[str, Any]) -> None:
    api_key, version = entry["api_key"], entry["api_version"]
    cls = REQUEST_CLASSES[api_key]
    data = (GOLDEN_DIR / entry["file"]).read_bytes()
    header_version = request_header_version(cls, version)
    assert header_version == entry["request_header_version_guess"]

    r = Reader(data)
    header = RequestHeader.read(r, header_version)
    assert header.request_api_key == api_key
    assert header.request_api_version == version
    assert header.correlation_id == entry["correlation_id"]
    assert header.client_id == entry["client_id"]
    body_start = r.pos

    if (api_key, version) in BELOW_SERVED_RANGE:
        assert not served(cls, version), f"{cls.__name__} v{version} is served after all"
        return
    assert served(cls, version)
    body = cls.read(r, version)
    trailing = TRAILING_BYTES.get(entry["file"], b"")
    assert bytes(data[r.pos :]) == trailing
    assert cls.decode(data[body_start:], version) == body

    encoded = header.to_bytes(header_version) + body.to_bytes(version)
    assert encoded == data[: len(data) - len(trailing)]


def test_librdkafka_metadata_trailing_bytes() -> None:
    """The strict reading of librdkafka #5049's frame, as the golden README spells it out."""
    data = (GOLDEN_DIR / "frames/confluent-kafka/0003_Metadata_v12.req").read_bytes()
    r = Reader(data)
    RequestHeader.read(r, 2)
    body = REQUEST_CLASSES[3].decode(data[r.pos :], 12)
    assert body.topics is None
    assert body.allow_auto_topic_creation is False
    assert body.include_topic_authorized_operations is False


RESPONSE_ENTRIES = [e for e in INDEX if e.get("response_file")]


@pytest.mark.parametrize(
    "entry", RESPONSE_ENTRIES, ids=lambda e: e["response_file"].removeprefix("frames/")
)
def test_golden_response_decodes(entry: dict[str, Any]) -> None:
    api_key, version = entry["api_key"], entry["api_version"]
    cls = RESPONSE_CLASSES[api_key]
    path: Path = GOLDEN_DIR / entry["response_file"]
    data = path.read_bytes()
    if (api_key, version) in BELOW_SERVED_RANGE:
        assert not served(cls, version)
        return
    header_version = response_header_version(api_key, cls, version)
    assert header_version == entry["response_header_version_guess"]

    r = Reader(data)
    header = ResponseHeader.read(r, header_version)
    assert header.correlation_id == entry["correlation_id"]
    if entry["response_file"] in TRUNCATED_RESPONSES:
        with pytest.raises(DecodeError):
            cls.read(r, version)
        return
    body = cls.read(r, version)
    assert r.pos == len(data), f"{len(data) - r.pos} bytes left after the body"

    encoded = header.to_bytes(header_version) + body.to_bytes(version)
    if entry["response_file"] in TANSU_DEFAULT_TAGS:
        assert len(encoded) < len(data)
        reread = Reader(encoded)
        ResponseHeader.read(reread, header_version)
        assert cls.read(reread, version) == body
    else:
        assert encoded == data
