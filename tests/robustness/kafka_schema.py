"""Request frames straight from Kafka's JSON message schemas, as Hypothesis strategies.

Independent of the codec under test (it neither imports ``protocol/`` nor the generator in
``tools/``): the schema says which fields a version has, which are nullable or tagged, and
how each type is laid out on the wire; the strategies here produce the *bytes* of random
requests that are valid by the schema. ``FieldHook`` lets a test steer a field's values
(small partition counts, short waits) where a valid value would only make the broker busy.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from helpers.kafka_wire import unsigned_varint as uvarint
from hypothesis import strategies as st

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "kafka-protocol" / "messages"

ARRAY_MAX = 3  # elements per array level: enough to reach every field, small frames
LIE_ONE_IN = 6  # with lies on, about one length or count in this many is a lie

# Declared lengths and counts that do not match what follows (int32/int16 forms, and the
# compact uvarint form, which is the value plus one).
_LYING_WIDE = [0x7FFFFFFF, -2, -(1 << 31), 1 << 24, 65_535]
_LYING_NARROW = [0x7FFF, -2, -(1 << 15), 300]
_LYING_COMPACT = [(1 << 32) - 1, 1 << 31, 1 << 24, 70_000]

_FIXED = {
    "bool": (">?", None),
    "int8": (">b", 8),
    "int16": (">h", 16),
    "int32": (">i", 32),
    "int64": (">q", 64),
    "uint16": (">H", None),
    "uint32": (">I", None),
}


def _strip_comments(text: str) -> str:
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\":
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Versions:
    lo: int
    hi: int

    @classmethod
    def parse(cls, spec: str | None) -> Versions:
        if spec is None or spec == "none":
            return cls(1, 0)
        if spec.endswith("+"):
            return cls(int(spec[:-1]), 1 << 15)
        if "-" in spec:
            lo, hi = spec.split("-")
            return cls(int(lo), int(hi))
        return cls(int(spec), int(spec))

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.lo <= version <= self.hi


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    versions: Versions
    nullable: Versions
    tagged: Versions
    tag: int | None
    fields: tuple[Field, ...] | None  # inline struct (array of it, or a single one)

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def element(self) -> str:
        return self.type[2:] if self.is_array else self.type


@dataclass(frozen=True)
class Schema:
    api_key: int
    name: str
    valid: Versions
    flexible: Versions
    fields: tuple[Field, ...]
    common: dict[str, tuple[Field, ...]]


def _fields(raw: list[dict[str, Any]]) -> tuple[Field, ...]:
    return tuple(
        Field(
            name=f["name"],
            type=f["type"],
            versions=Versions.parse(f.get("versions")),
            nullable=Versions.parse(f.get("nullableVersions")),
            tagged=Versions.parse(f.get("taggedVersions")),
            tag=f.get("tag"),
            fields=_fields(f["fields"]) if "fields" in f else None,
        )
        for f in raw
    )


@cache
def request_schema(name: str) -> Schema:
    raw = json.loads(_strip_comments((SCHEMA_DIR / f"{name}.json").read_text()))
    common = {s["name"]: _fields(s["fields"]) for s in raw.get("commonStructs", [])}
    return Schema(
        api_key=raw["apiKey"],
        name=raw["name"],
        valid=Versions.parse(raw["validVersions"]),
        flexible=Versions.parse(raw.get("flexibleVersions")),
        fields=_fields(raw.get("fields", [])),
        common=common,
    )


@cache
def schema_by_key() -> dict[int, Schema]:
    out: dict[int, Schema] = {}
    for path in sorted(SCHEMA_DIR.glob("*Request.json")):
        sch = request_schema(path.stem)
        out[sch.api_key] = sch
    return out


# --------------------------------------------------------------------------- wire pieces


def _length(n: int | None, flexible: bool, wide: bool) -> bytes:
    """A string/bytes/array length; None is null (-1, or 0 compact)."""
    if flexible:
        return uvarint(0 if n is None else n + 1)
    return struct.pack(">i" if wide else ">h", -1 if n is None else n)


# --------------------------------------------------------------------------- strategies

# (schema, field, version) -> a strategy of *values* for a scalar field, or None
FieldHook = Callable[[Schema, Field, int], "st.SearchStrategy[Any] | None"]


def _scalar_value(kind: str) -> st.SearchStrategy[Any]:
    if kind == "bool":
        return st.booleans()
    if kind in ("int8", "int16", "int32", "int64"):
        bits = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}[kind]
        half = 1 << (bits - 1)
        return st.integers(-half, half - 1)
    if kind == "uint16":
        return st.integers(0, 0xFFFF)
    if kind == "uint32":
        return st.integers(0, 0xFFFFFFFF)
    if kind == "float64":
        return st.floats(allow_nan=False)
    if kind == "uuid":
        return st.just(bytes(16)) | st.binary(min_size=16, max_size=16)
    if kind == "string":
        return st.text(max_size=12)
    if kind in ("bytes", "records"):
        return st.binary(max_size=64)
    raise AssertionError(f"unknown schema type {kind}")


def _tagged(tag: int, data: bytes | None) -> bytes | None:
    """One tagged field (tag, size, data), or None when the field is left out."""
    return None if data is None else uvarint(tag) + uvarint(len(data)) + data


def _encode_scalar(kind: str, value: Any, flexible: bool) -> bytes:
    if kind in _FIXED:
        return struct.pack(_FIXED[kind][0], value)
    if kind == "float64":
        return struct.pack(">d", value)
    if kind == "uuid":
        return bytes(value)
    if kind == "string":
        if value is None:
            return _length(None, flexible, wide=False)
        raw = value.encode()
        return _length(len(raw), flexible, wide=False) + raw
    if kind in ("bytes", "records"):
        if value is None:
            return _length(None, flexible, wide=True)
        return _length(len(value), flexible, wide=True) + bytes(value)
    raise AssertionError(kind)


def _lying_length(flexible: bool, wide: bool) -> st.SearchStrategy[bytes]:
    if flexible:
        return st.sampled_from(_LYING_COMPACT).map(uvarint)
    if wide:
        return st.sampled_from(_LYING_WIDE).map(lambda n: struct.pack(">i", n))
    return st.sampled_from(_LYING_NARROW).map(lambda n: struct.pack(">h", n))


class Encoder:
    """Strategies of encoded bodies for one request schema and version. With ``lies``,
    some lengths and counts announce far more (or negative amounts of) data than follows:
    structurally valid requests with broken sizes, the classic decoder trap."""

    def __init__(
        self, schema: Schema, version: int, hook: FieldHook | None, lies: bool = False
    ) -> None:
        self.schema = schema
        self.version = version
        self.flexible = version in schema.flexible
        self.hook = hook
        self.lies = lies

    def _maybe_lie(
        self, honest: st.SearchStrategy[bytes], lying: st.SearchStrategy[bytes]
    ) -> st.SearchStrategy[bytes]:
        if not self.lies:
            return honest
        return st.integers(0, LIE_ONE_IN - 1).flatmap(lambda n: lying if n == 0 else honest)

    def body(self) -> st.SearchStrategy[bytes]:
        return self._struct(self.schema.fields, depth=0)

    def _struct_fields(self, f: Field) -> tuple[Field, ...]:
        if f.fields is not None:
            return f.fields
        return self.schema.common[f.element]

    def _is_struct(self, f: Field) -> bool:
        return f.fields is not None or f.element in self.schema.common

    def _struct(self, fields: tuple[Field, ...], depth: int) -> st.SearchStrategy[bytes]:
        v = self.version
        regular = [f for f in fields if v in f.versions and not (self.flexible and v in f.tagged)]
        tagged = [f for f in fields if v in f.versions and self.flexible and v in f.tagged]
        parts = [self._field(f, depth) for f in regular]
        if not self.flexible:
            return st.tuples(*parts).map(b"".join)
        tagged_parts = [
            st.one_of(st.none(), self._field(f, depth)).map(functools.partial(_tagged, f.tag or 0))
            for f in sorted(tagged, key=lambda f: f.tag or 0)
        ]

        def join(regular_bytes: tuple[bytes, ...], tags: tuple[bytes | None, ...]) -> bytes:
            present = [t for t in tags if t is not None]
            return b"".join(regular_bytes) + uvarint(len(present)) + b"".join(present)

        return st.builds(join, st.tuples(*parts), st.tuples(*tagged_parts))

    def _field(self, f: Field, depth: int) -> st.SearchStrategy[bytes]:
        nullable = self.version in f.nullable
        if self._is_struct(f):
            elem = self._struct(self._struct_fields(f), depth + 1)
            if f.is_array:
                return self._array(elem, nullable, depth)
            if nullable:  # a nullable struct: int8 presence marker
                return st.one_of(st.just(b"\xff"), elem.map(lambda b: b"\x01" + b))
            return elem
        if f.is_array:
            values = self._values(f, f.element)
            elem = values.map(functools.partial(_encode_scalar, f.element, flexible=self.flexible))
            return self._array(elem, nullable, depth)
        values = self._values(f, f.type)
        if nullable:
            values = st.one_of(st.none(), values)
        honest = values.map(functools.partial(_encode_scalar, f.type, flexible=self.flexible))
        if f.type not in ("string", "bytes", "records"):
            return honest
        wide = f.type != "string"
        lying = st.tuples(_lying_length(self.flexible, wide), st.binary(max_size=8)).map(b"".join)
        return self._maybe_lie(honest, lying)

    def _values(self, f: Field, kind: str) -> st.SearchStrategy[Any]:
        custom = self.hook(self.schema, f, self.version) if self.hook is not None else None
        return _scalar_value(kind) if custom is None else custom

    def _array(
        self, elem: st.SearchStrategy[bytes], nullable: bool, depth: int
    ) -> st.SearchStrategy[bytes]:
        size = ARRAY_MAX if depth == 0 else max(1, ARRAY_MAX - depth)
        arrays = st.lists(elem, max_size=size).map(
            lambda xs: _length(len(xs), self.flexible, wide=True) + b"".join(xs)
        )
        lying = st.tuples(_lying_length(self.flexible, wide=True), st.lists(elem, max_size=1)).map(
            lambda t: t[0] + b"".join(t[1])
        )
        arrays = self._maybe_lie(arrays, lying)
        if nullable:
            return st.one_of(st.just(_length(None, self.flexible, wide=True)), arrays)
        return arrays


def header_is_flexible(api_key: int, version: int) -> bool:
    schema = schema_by_key()[api_key]
    if api_key == 7 and version == 0:  # ControlledShutdown v0 uses header v0
        return False
    return version in schema.flexible


@cache
def bodies(
    api_key: int, version: int, hook: FieldHook | None, lies: bool = False
) -> st.SearchStrategy[bytes]:
    return Encoder(schema_by_key()[api_key], version, hook, lies).body()
