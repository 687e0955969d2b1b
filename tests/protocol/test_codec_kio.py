"""Differential test against PyPI ``kio`` (0.6.5), an independent codec of the same schemas.

For every (class, version) that both codecs cover, request and response bodies and both
headers: a random message from our strategy is encoded by us, parsed by kio's
``entity_reader`` (which must consume every byte) and written back by kio's
``entity_writer``; the bytes must be identical. The reverse direction follows: our decoder
reads kio's bytes back to the message we started from.

kio covers exactly our VALID_VERSIONS for all 89 live APIs, so every pair is checked: 604
body pairs plus 4 header pairs (``test_kio_pair_count`` asserts and prints the count).

kio maps some fields to richer Python types, and those types cannot hold every wire value.
These fields get values kio can represent (hook ``_kio_values``); nothing is excluded:
- ``error_code`` fields are an ``ErrorCode`` enum: only codes kio knows (-1..133).
- ``timedelta_i64`` fields are ``datetime.timedelta``, written back through a float of
  seconds: |ms| < 2**40 keeps them exact (int64 extremes overflow timedelta).
- ``datetime_i64`` fields are aware datetimes, written back through a float timestamp:
  0 <= ms < 2**46 (year ~4200), plus -1 where kio models the field as nullable
  (-1 = null); kio rejects other negative timestamps.
kio writes a tagged field only when it differs from its default, as we and Kafka do, so
tagged fields need no special treatment.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from functools import cache
from types import ModuleType, NoneType
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec_strategies import (
    CODEC_SETTINGS,
    HEADER_CLASSES,
    REQUESTS,
    RESPONSES,
    RequestHeader,
    ResponseHeader,
    Schema,
    examples,
    is_tagged,
    messages,
    pair_id,
    pairs,
    present_fields,
    restrict,
    schema,
)
from metamorphostreams.protocol._message import Message

kio_index = pytest.importorskip("kio.index")
kio_serial = pytest.importorskip("kio.serial")
kio_errors = pytest.importorskip("kio.schema.errors")
kio_constants = pytest.importorskip("kio.static.constants")

KIO_ERROR_CODES = sorted(int(code) for code in kio_errors.ErrorCode)
TIMEDELTA_LIMIT = 1 << 40  # ms; exact through kio's float seconds
DATETIME_LIMIT = 1 << 46  # ms since the epoch; exact through kio's float timestamp


def kio_module(cls: type[Message], version: int) -> ModuleType | None:
    """kio's module for one of our classes at a version, or None when kio lacks it."""
    try:
        if cls is RequestHeader:
            return importlib.import_module(f"kio.schema.request_header.v{version}.header")
        if cls is ResponseHeader:
            return importlib.import_module(f"kio.schema.response_header.v{version}.header")
        kind = kio_constants.EntityType.request
        if cls.__name__.endswith("Response"):
            kind = kio_constants.EntityType.response
        module: ModuleType = kio_index.load_payload_module(cls.API_KEY, version, kind)  # type: ignore[attr-defined]
        return module
    except (ImportError, kio_index.KioIndexError):
        return None


BOTH = [(cls, v) for cls, v in pairs(HEADER_CLASSES + REQUESTS + RESPONSES) if kio_module(cls, v)]


@cache
def kio_fields(sch: Schema, struct_name: str, version: int) -> dict[str, dataclasses.Field[Any]]:
    """Our attribute name -> kio's dataclass field, aligned by schema order within a version.

    kio renames some fields (``timeout_ms`` -> ``timeout``) but keeps Kafka's field order and
    drops the fields absent from the version, as our ``present_fields`` does.
    """
    module = kio_module(sch.cls, version)
    assert module is not None
    kio_cls = getattr(module, struct_name)
    ours = present_fields(sch.classes[struct_name], version)
    theirs = dataclasses.fields(kio_cls)
    assert len(ours) == len(theirs), (sch.name, struct_name, version)
    return {f.attr: k for f, k in zip(ours, theirs, strict=True)}


def _kio_values(sch: Schema, struct: Any, f: Any, version: int) -> st.SearchStrategy[Any] | None:
    kf = kio_fields(sch, struct.name, version)[f.attr]
    kafka_type = kf.metadata.get("kafka_type")
    if kafka_type == "error_code":
        return st.sampled_from(KIO_ERROR_CODES)
    if kafka_type == "timedelta_i64":
        return st.integers(-TIMEDELTA_LIMIT, TIMEDELTA_LIMIT)
    if kafka_type == "datetime_i64":
        valid = st.integers(0, DATETIME_LIMIT)
        return st.just(-1) | valid if NoneType in get_args(kf.type) else valid
    return None


def test_kio_pair_count() -> None:
    body = [(cls, v) for cls, v in BOTH if cls not in HEADER_CLASSES]
    print(f"kio differential: {len(body)} body pairs + {len(BOTH) - len(body)} header pairs")
    # kio 0.6.5 is generated from Kafka 4.x schemas and has every version we serve.
    assert len(body) == len(pairs(REQUESTS + RESPONSES)) == 604
    assert len(BOTH) == 608


def test_kio_field_alignment() -> None:
    """kio's fields line up with ours, type by type, for every struct in every pair."""
    compatible = {
        ("int16", "error_code"),
        ("int32", "timedelta_i32"),
        ("int64", "timedelta_i64"),
        ("int64", "datetime_i64"),
    }
    for cls, version in BOTH:
        sch = schema(cls)
        module = kio_module(cls, version)
        for name in sch.classes:
            if getattr(module, name, None) is None:
                continue  # a struct only reachable through fields absent from this version
            for f in present_fields(sch.classes[name], version):
                kf = kio_fields(sch, name, version)[f.attr]
                tag = kf.metadata.get("tag")
                assert tag == (f.tag if is_tagged(f, version) else None), (cls, name, f.attr)
                if f.struct is None:
                    kafka_type = kf.metadata["kafka_type"]
                    assert kafka_type == f.type or (f.type, kafka_type) in compatible, (
                        cls,
                        name,
                        f.attr,
                    )


@pytest.mark.parametrize(("cls", "version"), BOTH, ids=pair_id)
def test_kio_reads_and_rewrites_our_bytes(cls: type[Message], version: int) -> None:
    module = kio_module(cls, version)
    assert module is not None
    kio_cls = getattr(module, cls.__name__)
    read = kio_serial.entity_reader(kio_cls)
    write = kio_serial.entity_writer(kio_cls)

    @settings(CODEC_SETTINGS, max_examples=examples(4))
    @given(messages(cls, version, _kio_values))
    def run(msg: Message) -> None:
        ours = msg.to_bytes(version)
        entity, size = read(ours, 0)
        assert size == len(ours), f"kio read {size} of {len(ours)} bytes"
        out = io.BytesIO()
        write(out, entity)
        theirs = out.getvalue()
        assert theirs == ours
        assert cls.decode(theirs, version) == restrict(msg, version)

    run()
