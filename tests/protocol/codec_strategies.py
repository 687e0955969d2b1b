"""Hypothesis strategies for the generated codec, driven by Kafka's JSON message schemas.

The schemas are read with the generator's own parser (``tools/gen_protocol.py``: ``MessageGen``,
``Versions``), but the strategies decide field presence, nullability and taggedness from that
schema metadata, never from the generated code, so a code-emission mistake shows up as a
failing round trip instead of being mirrored here. A mistake in parsing the schemas themselves
would be shared by both sides; the kio and kafka-python differential tests, which read the
schemas with their own code, are what catch those.

A message for version ``v`` sets every field present in ``v`` (tagged ones too) to a random
value of its type: ints over their whole range, unicode strings, nulls only where the field is
nullable in ``v``. With ``noise=True`` fields absent from ``v`` may hold random values as
well; the encoder must ignore them, and :func:`restrict` gives the message a decoder returns.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from metamorphostreams.protocol._generated import REQUEST_CLASSES, RESPONSE_CLASSES
from metamorphostreams.protocol._generated.headers import RequestHeader, ResponseHeader
from metamorphostreams.protocol._message import Message
from metamorphostreams.protocol._primitives import INLINE_RECORDS_LIMIT, ZERO_UUID

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT.parent / "shared" / "kafka-protocol" / "messages"
GOLDEN_DIR = ROOT.parent / "shared" / "golden"


def _load_generator() -> ModuleType:
    """Import tools/gen_protocol.py as a module without putting tools/ on sys.path."""
    name = "gen_protocol"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "gen_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen_protocol = _load_generator()

HEADER_CLASSES: list[type[Message]] = [RequestHeader, ResponseHeader]
REQUESTS: list[type[Message]] = [REQUEST_CLASSES[k] for k in sorted(REQUEST_CLASSES)]
RESPONSES: list[type[Message]] = [RESPONSE_CLASSES[k] for k in sorted(RESPONSE_CLASSES)]

# Budgets shared by the codec tests: a few examples per (class, version) keeps ~600 pairs fast.
# MMS_CODEC_EXAMPLES_SCALE=50 makes a deep (minutes-long) run with the same tests.
EXAMPLES_SCALE = float(os.environ.get("MMS_CODEC_EXAMPLES_SCALE", "1"))


def examples(n: int) -> int:
    """``n`` examples, times the scale from the environment."""
    return max(1, round(n * EXAMPLES_SCALE))


CODEC_SETTINGS = settings(
    deadline=None,
    database=None,  # keep the shared work tree free of .hypothesis example databases
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_UINT_BITS = {"uint16": 16, "uint32": 32}


def has(versions: Any, version: int) -> bool:
    """Whether a schema ``Versions`` range contains ``version``."""
    return bool(versions.lo <= version <= versions.hi)


@dataclass(frozen=True, eq=False)
class Schema:
    """One generated top-level class with the schema it was generated from."""

    cls: type[Message]
    gen: Any  # gen_protocol.MessageGen
    classes: dict[str, type[Message]]  # struct name -> generated (nested) class

    @property
    def name(self) -> str:
        return self.cls.__name__

    def struct_class(self, struct: Any) -> type[Message]:
        return self.classes[struct.name]


_STRUCTS: dict[type[Message], tuple[Schema, Any]] = {}


@cache
def schema(cls: type[Message]) -> Schema:
    """The schema of a generated top-level class, read from Kafka's JSON file of its name."""
    raw = gen_protocol.load_schema(SCHEMA_DIR / f"{cls.__name__}.json")
    assert raw["name"] == cls.__name__
    gen = gen_protocol.MessageGen(raw)
    classes = {gen.root.name: cls}
    for name in gen.structs:
        classes[name] = getattr(cls, name)
    sch = Schema(cls, gen, classes)
    _STRUCTS[cls] = (sch, gen.root)
    for name, struct in gen.structs.items():
        _STRUCTS[classes[name]] = (sch, struct)
    return sch


def struct_info(cls: type[Message]) -> tuple[Schema, Any]:
    """(schema, struct) of a generated class, top-level or nested."""
    if cls not in _STRUCTS:
        top = getattr(sys.modules[cls.__module__], cls.__qualname__.split(".")[0])
        schema(top)
    return _STRUCTS[cls]


def versions(cls: type[Message]) -> range:
    lo, hi = cls.VALID_VERSIONS
    return range(lo, hi + 1)


def pairs(classes: Iterable[type[Message]]) -> list[tuple[type[Message], int]]:
    """Every (class, version) in the classes' VALID_VERSIONS."""
    return [(cls, v) for cls in classes for v in versions(cls)]


def pair_id(pair: object) -> str:
    if isinstance(pair, type):
        return pair.__name__
    return f"v{pair}"


# -- value strategies -----------------------------------------------------------------------

# A hook may replace the strategy of a scalar field (or of an array's elements), e.g. to keep
# error codes within the set another codec can represent. None means "no opinion".
ValueHook = Callable[[Schema, Any, Any, int], "st.SearchStrategy[Any] | None"]


def scalar(kafka_type: str) -> st.SearchStrategy[Any]:
    """Any value of a primitive schema type."""
    if kafka_type in _INT_BITS:
        half = 1 << (_INT_BITS[kafka_type] - 1)
        return st.integers(-half, half - 1)
    if kafka_type in _UINT_BITS:
        return st.integers(0, (1 << _UINT_BITS[kafka_type]) - 1)
    if kafka_type == "float64":
        return st.floats(allow_nan=False)  # NaN != NaN would defeat value equality
    if kafka_type == "bool":
        return st.booleans()
    if kafka_type == "uuid":
        return st.just(ZERO_UUID) | st.uuids()
    if kafka_type == "string":
        return st.text(max_size=10)
    if kafka_type == "bytes":
        return st.binary(max_size=12)
    if kafka_type == "records":
        # Blobs above INLINE_RECORDS_LIMIT are written as parts of their own.
        return st.binary(max_size=40) | st.binary(
            min_size=INLINE_RECORDS_LIMIT - 4, max_size=INLINE_RECORDS_LIMIT + 40
        )
    raise AssertionError(f"unknown schema type {kafka_type}")


def _array_size(depth: int) -> int:
    return 3 if depth == 0 else 2 if depth < 3 else 1


_KEEP_DEFAULT = object()


def _field(
    sch: Schema,
    struct: Any,
    f: Any,
    version: int,
    depth: int,
    hook: ValueHook | None,
    noise: bool,
) -> st.SearchStrategy[Any]:
    if f.struct is not None:
        elem = _struct(sch, f.struct, version, depth + 1, hook, noise)
    else:
        custom = hook(sch, struct, f, version) if hook is not None else None
        elem = scalar(f.type) if custom is None else custom
    value = st.lists(elem, max_size=_array_size(depth)) if f.is_array else elem
    if has(f.nullable, version):
        value = st.none() | value
    return value


def _build(cls: type[Message]) -> Callable[[dict[str, Any]], Message]:
    def build(values: dict[str, Any]) -> Message:
        # Attributes are set after construction: the constructor maps None to the default
        # for arrays and structs, so it cannot express a null array.
        msg = cls()
        for attr, value in values.items():
            if value is not _KEEP_DEFAULT:
                setattr(msg, attr, value)
        return msg

    return build


def _struct(
    sch: Schema,
    struct: Any,
    version: int,
    depth: int,
    hook: ValueHook | None,
    noise: bool,
) -> st.SearchStrategy[Message]:
    present: dict[str, st.SearchStrategy[Any]] = {}
    absent: dict[str, st.SearchStrategy[Any]] = {}
    for f in struct.fields:
        if has(f.versions, version):
            present[f.attr] = _field(sch, struct, f, version, depth, hook, noise)
        elif noise and not f.versions.empty:
            # A value valid in some other version; the encoder must not look at it.
            other = _field(sch, struct, f, f.versions.lo, depth + 1, None, False)
            absent[f.attr] = st.just(_KEEP_DEFAULT) | other
    return st.fixed_dictionaries(present, optional=absent).map(_build(sch.struct_class(struct)))


@cache
def messages(
    cls: type[Message],
    version: int,
    hook: ValueHook | None = None,
    noise: bool = False,
) -> st.SearchStrategy[Message]:
    """Random valid ``cls`` messages for ``version`` (see the module docstring)."""
    sch = schema(cls)
    assert version in versions(cls), (cls.__name__, version)
    return _struct(sch, sch.gen.root, version, 0, hook, noise)


def restrict(msg: Message, version: int) -> Message:
    """A copy of ``msg`` with the fields absent from ``version`` back at their defaults."""
    _sch, struct = struct_info(type(msg))
    out = type(msg)()
    for f in struct.fields:
        if not has(f.versions, version):
            continue
        value = getattr(msg, f.attr)
        if f.struct is not None and value is not None:
            value = (
                [restrict(x, version) for x in value] if f.is_array else restrict(value, version)
            )
        setattr(out, f.attr, value)
    return out


def present_fields(cls: type[Message], version: int) -> list[Any]:
    """The schema fields of a generated class that exist in ``version``, in schema order."""
    _sch, struct = struct_info(cls)
    return [f for f in struct.fields if has(f.versions, version)]


def is_tagged(f: Any, version: int) -> bool:
    return has(f.tagged, version) and has(f.versions, version)
