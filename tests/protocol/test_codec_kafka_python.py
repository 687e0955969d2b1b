"""Differential test against kafka-python 3.x's protocol classes (``kafka.protocol``).

kafka-python 3 builds its message classes at import time from Kafka JSON schemas it vendors
(``kafka/protocol/schemas/resources``), with its own compiled encoders and decoders: an
independent codec of the same wire format. It covers the APIs a client needs (52 of our 89).

For every (API, version) in both our VALID_VERSIONS and the ``validVersions`` of
kafka-python's vendored schema, requests and responses: a random message from our strategy
is encoded by us, decoded by kafka-python's ``ApiMessage.decode(data, version=v)`` for that
class and re-encoded by its ``ApiMessage.encode`` at the version it was decoded with (the
generic entry points: see ``KP_DECODE``); the bytes must be identical, which also shows that
kafka-python read every byte. Our decoder then reads kafka-python's bytes back to the message
we started from. Both headers are
checked the same way through ``kafka.protocol.api_header`` at header v1/v2 and v0/v1.

Nothing is excluded and no value is constrained: kafka-python's only non-raw field type, the
``bitfield`` it patches into the authorized-operations fields, maps every int32 to a set of
bits and back. ``test_kafka_python_pair_count`` prints and asserts the number of pairs.

kafka-python relaxes every class's minimum version to 0 on decode; versions below the vendored
schema's real minimum are not wire formats Kafka defines, so they are not compared.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
from typing import Any

import pytest
from codec_strategies import (
    CODEC_SETTINGS,
    REQUESTS,
    RESPONSES,
    RequestHeader,
    ResponseHeader,
    examples,
    messages,
    pair_id,
    pairs,
    restrict,
)
from hypothesis import given, settings

from metamorphostreams.protocol._message import Message

kafka_protocol = pytest.importorskip("kafka.protocol")
api_message = pytest.importorskip("kafka.protocol.api_message")
api_header = pytest.importorskip("kafka.protocol.api_header")


def _kafka_python_classes() -> dict[tuple[int, str], Any]:
    """(api key, "request"/"response") -> kafka-python's primary message class."""
    for info in pkgutil.walk_packages(kafka_protocol.__path__, "kafka.protocol."):
        if info.name.endswith("generate_stubs"):
            continue
        importlib.import_module(info.name)
    found: dict[tuple[int, str], Any] = {}
    todo = list(api_message.ApiMessage.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        # Versioned wrappers (Class[v]) are subclasses too; keep the primary classes.
        if cls.__dict__.get("_json") is not None and cls._class_version is None:
            found[(cls.API_KEY, cls.type)] = cls
    return found


KP_CLASSES = _kafka_python_classes()
# The generic codec entry points, bypassing per-API overrides that are client conveniences,
# not wire format: ApiVersionsResponse.decode reads any error response as v0 (KIP-511's
# fallback, applied by kafka-python to every non-zero error code), DeleteTopicsRequest.encode
# copies topics into topic_names and re-sets the version through a header slot that decoded
# objects lack, MetadataRequest.encode turns a v0 null topic list into [].
KP_DECODE = api_message.ApiMessage.__dict__["decode"].__func__
KP_ENCODE = api_message.ApiMessage.encode


def _kind(cls: type[Message]) -> str:
    return "request" if cls.__name__.endswith("Request") else "response"


def kp_valid_versions(kp_cls: Any) -> range:
    lo, hi = kp_cls.valid_versions
    return range(lo, hi + 1)


BOTH = [
    (cls, v)
    for cls, v in pairs(REQUESTS + RESPONSES)
    if (cls.API_KEY, _kind(cls)) in KP_CLASSES
    and v in kp_valid_versions(KP_CLASSES[(cls.API_KEY, _kind(cls))])
]
HEADERS = [(RequestHeader, 1), (RequestHeader, 2), (ResponseHeader, 0), (ResponseHeader, 1)]


def test_kafka_python_pair_count() -> None:
    apis = {cls.API_KEY for cls, _v in BOTH}
    ours = {cls.API_KEY for cls, _v in pairs(REQUESTS)}
    print(
        f"kafka-python differential: {len(BOTH)} body pairs over {len(apis)} APIs "
        f"(of our {len(ours)}) + {len(HEADERS)} header pairs"
    )
    assert len(apis) == 52
    # Where both cover an API, kafka-python's vendored range equals ours (same Kafka 4.x).
    for cls, _v in BOTH:
        kp = KP_CLASSES[(cls.API_KEY, _kind(cls))]
        assert kp_valid_versions(kp) == range(cls.VALID_VERSIONS[0], cls.VALID_VERSIONS[1] + 1)
    assert len(BOTH) == 478


@pytest.mark.parametrize(("cls", "version"), BOTH, ids=pair_id)
def test_kafka_python_decodes_and_reencodes_our_bytes(cls: type[Message], version: int) -> None:
    kp_cls = KP_CLASSES[(cls.API_KEY, _kind(cls))]

    @settings(CODEC_SETTINGS, max_examples=examples(4))
    @given(messages(cls, version))
    def run(msg: Message) -> None:
        ours = msg.to_bytes(version)
        decoded = KP_DECODE(kp_cls, ours, version=version)
        theirs = bytes(KP_ENCODE(decoded))  # at the version it was decoded with
        assert theirs == ours
        assert cls.decode(theirs, version) == restrict(msg, version)

    run()


@pytest.mark.parametrize(("cls", "version"), HEADERS, ids=pair_id)
def test_kafka_python_headers(cls: type[Message], version: int) -> None:
    kp_cls = api_header.RequestHeader if cls is RequestHeader else api_header.ResponseHeader
    flexible = cls.is_flexible(version)

    @settings(CODEC_SETTINGS, max_examples=examples(20))
    @given(messages(cls, version))
    def run(msg: Message) -> None:
        ours = msg.to_bytes(version)
        decoded = kp_cls.decode(io.BytesIO(ours), flexible=flexible)
        theirs = bytes(decoded.encode(flexible=flexible))
        assert theirs == ours
        assert cls.decode(theirs, version) == msg

    run()
