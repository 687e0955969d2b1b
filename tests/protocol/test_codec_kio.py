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

kio's native reader aborts the whole interpreter (a Rust allocation failure, SIGABRT) on some
malformed input: it reserves memory for an array's declared count before reading it, e.g. a
12-byte ProduceRequest v9 ``00 0001 00000000 ffffffff0f`` asks for 34 GB. So kio runs in a
forked worker process: a codec regression that made such bytes fails one test with the bytes
in its message instead of killing the test session.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import importlib
import io
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from types import ModuleType, NoneType
from typing import Any, get_args

import pytest
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
from hypothesis import given, settings
from hypothesis import strategies as st

from metamorphostreams.protocol._message import Message
from metamorphostreams.protocol._primitives import ZERO_UUID

kio_index = pytest.importorskip("kio.index")
kio_serial = pytest.importorskip("kio.serial")
kio_errors = pytest.importorskip("kio.schema.errors")
kio_constants = pytest.importorskip("kio.static.constants")
kio_defaults = pytest.importorskip("kio.serial._implicit_defaults")

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


def test_kio_tagged_defaults_agree() -> None:
    """A tagged field is written only when it differs from its default: both defaults agree."""
    checked = 0
    for cls, version in BOTH:
        sch = schema(cls)
        module = kio_module(cls, version)
        for name, struct_cls in sch.classes.items():
            if getattr(module, name, None) is None:
                continue
            for f in present_fields(struct_cls, version):
                if not is_tagged(f, version):
                    continue
                kf = kio_fields(sch, name, version)[f.attr]
                theirs = kio_defaults.get_tagged_field_default(kf)
                ours = getattr(struct_cls(), f.attr)
                if dataclasses.is_dataclass(theirs):
                    out = io.BytesIO()
                    kio_serial.entity_writer(type(theirs))(out, theirs)
                    assert out.getvalue() == ours.to_bytes(version), (cls, version, f.attr)
                elif isinstance(theirs, tuple):
                    assert list(theirs) == ours, (cls, version, f.attr)
                elif theirs is None and f.type == "uuid" and not f.is_array:
                    # kio reads the zero UUID as None
                    assert ours == ZERO_UUID, (cls, version, f.attr)
                else:
                    assert theirs == ours, (cls, version, f.attr)
                checked += 1
    assert checked == 71


def kio_rewrite(cls: type[Message], version: int, data: bytes) -> tuple[str, int, bytes]:
    """In the worker: kio reads ``data`` and writes it back -> ("ok", bytes read, bytes)."""
    module = kio_module(cls, version)
    assert module is not None
    kio_cls = getattr(module, cls.__name__)
    try:
        entity, size = kio_serial.entity_reader(kio_cls)(data, 0)
        out = io.BytesIO()
        kio_serial.entity_writer(kio_cls)(out, entity)
    except Exception as e:  # kio's exceptions need not pickle; their text is enough
        return (f"kio raised {e!r}", 0, b"")
    return ("ok", size, out.getvalue())


def _quiet_worker() -> None:
    # A kio abort would print a Rust and a faulthandler backtrace into pytest's output; the
    # failing assertion in the parent names the bytes instead.
    faulthandler.disable()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


class KioWorker:
    """A forked process running kio, replaced when kio takes it down."""

    def __init__(self) -> None:
        self.pool = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        context = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(1, mp_context=context, initializer=_quiet_worker)

    def rewrite(self, cls: type[Message], version: int, data: bytes) -> bytes:
        try:
            status, size, out = self.pool.submit(kio_rewrite, cls, version, data).result(60)
        except BrokenProcessPool:
            self.pool = self._start()
            raise AssertionError(
                f"kio crashed reading our {cls.__name__} v{version}: {data.hex()}"
            ) from None
        assert status == "ok", f"{status} reading our {cls.__name__} v{version}: {data.hex()}"
        assert size == len(data), f"kio read {size} of {len(data)} bytes"
        return out

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def kio_worker() -> Iterator[KioWorker]:
    worker = KioWorker()
    yield worker
    worker.close()


@pytest.mark.parametrize(("cls", "version"), BOTH, ids=pair_id)
def test_kio_reads_and_rewrites_our_bytes(
    cls: type[Message], version: int, kio_worker: KioWorker
) -> None:
    @settings(CODEC_SETTINGS, max_examples=examples(4))
    @given(messages(cls, version, _kio_values))
    def run(msg: Message) -> None:
        ours = msg.to_bytes(version)
        theirs = kio_worker.rewrite(cls, version, ours)
        assert theirs == ours
        assert cls.decode(theirs, version) == restrict(msg, version)

    run()


def test_kio_worker_survives_a_kio_crash(kio_worker: KioWorker) -> None:
    """The guard itself: bytes that abort kio fail one assertion and the next call works."""
    produce = REQUESTS[0]
    assert produce.__name__ == "ProduceRequest"
    with pytest.raises(AssertionError, match="kio crashed"):
        kio_worker.rewrite(produce, 9, bytes.fromhex("00000100000000ffffffff0f"))
    ok = produce(acks=1, timeout_ms=5).to_bytes(9)
    assert kio_worker.rewrite(produce, 9, ok) == ok
