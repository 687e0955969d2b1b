"""Primitive Kafka wire types: a bounds-checked reader and a part-collecting writer.

The generated message classes (``_generated/``) are written in terms of these two objects.
All integers are big-endian. Compact (flexible-version) lengths are unsigned varints of
``length + 1`` with 0 meaning null. Records fields are returned as ``memoryview`` slices of
the input (never copied) and written as separate parts so record data is never joined.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sized
from typing import Any

from .errors import DecodeError

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_unpack_i16 = _I16.unpack_from
_unpack_u16 = _U16.unpack_from
_unpack_i32 = _I32.unpack_from
_unpack_u32 = _U32.unpack_from
_unpack_i64 = _I64.unpack_from
_pack_i16 = _I16.pack
_pack_i32 = _I32.pack
_pack_i64 = _I64.pack

ZERO_UUID = uuid.UUID(int=0)
# Constructor default of generated fields that may be null: "not given", as opposed to None.
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()
_Bool = bool  # the classes below have methods named bool and bytes
_Bytes = bytes
INLINE_RECORDS_LIMIT = 1024  # smaller record blobs are copied inline: one part beats two


class Reader:
    """Reads primitives from a memoryview, raising DecodeError on any truncation. Not task-safe.

    The fixed-size reads check bounds inline rather than through ``_take``, and one-byte
    varints (every length and tag count below 128) skip the varint loop: these are the
    calls every request makes dozens of times.
    """

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: _Bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        self.pos = pos
        self.end = len(self.buf)

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise DecodeError(f"truncated: need {n} bytes at {pos}, have {self.end - pos}")
        self.pos = pos + n
        return pos

    def _truncated(self, n: int) -> DecodeError:
        return DecodeError(f"truncated: need {n} bytes at {self.pos}, have {self.end - self.pos}")

    def int8(self) -> int:
        pos = self.pos
        if pos + 1 > self.end:
            raise self._truncated(1)
        self.pos = pos + 1
        value: int = self.buf[pos]
        return value - 256 if value > 127 else value

    def int16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise self._truncated(2)
        self.pos = pos + 2
        value: int = _unpack_i16(self.buf, pos)[0]
        return value

    def uint16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise self._truncated(2)
        self.pos = pos + 2
        value: int = _unpack_u16(self.buf, pos)[0]
        return value

    def int32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._truncated(4)
        self.pos = pos + 4
        value: int = _unpack_i32(self.buf, pos)[0]
        return value

    def uint32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._truncated(4)
        self.pos = pos + 4
        value: int = _unpack_u32(self.buf, pos)[0]
        return value

    def int64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise self._truncated(8)
        self.pos = pos + 8
        value: int = _unpack_i64(self.buf, pos)[0]
        return value

    def float64(self) -> float:
        return float(_F64.unpack_from(self.buf, self._take(8))[0])

    def bool(self) -> _Bool:
        return self.buf[self._take(1)] != 0

    def uuid(self) -> uuid.UUID:
        pos = self._take(16)
        return uuid.UUID(bytes=bytes(self.buf[pos : pos + 16]))

    def uvarint(self) -> int:
        pos = self.pos
        if pos < self.end:
            b: int = self.buf[pos]
            if b < 0x80:
                self.pos = pos + 1
                return b
        return self._uvarint_long()

    def _uvarint_long(self) -> int:
        result = 0
        shift = 0
        buf = self.buf
        while True:
            if self.pos >= self.end:
                raise DecodeError("truncated varint")
            b = buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 28:
                raise DecodeError("varint too long")

    def _length(self, compact: _Bool) -> int:
        """Length of a string/bytes/records field; -1 means null."""
        if compact:
            return self.uvarint() - 1
        return self.int32()

    def string(self, compact: _Bool, nullable: _Bool) -> str | None:
        n = self.uvarint() - 1 if compact else self.int16()
        if n < 0:
            if n == -1 and nullable:
                return None
            raise DecodeError("null or negative length for a non-nullable string")
        pos = self.pos
        if pos + n > self.end:
            raise self._truncated(n)
        self.pos = pos + n
        try:
            return str(self.buf[pos : pos + n], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"invalid UTF-8 in string: {e}") from None

    def bytes(self, compact: _Bool, nullable: _Bool) -> _Bytes | None:
        view = self.records(compact, nullable)
        return None if view is None else _Bytes(view)

    def records(self, compact: _Bool, nullable: _Bool) -> memoryview | None:
        n = self._length(compact)
        if n < 0:
            if n == -1 and nullable:
                return None
            raise DecodeError("null or negative length for a non-nullable field")
        pos = self.pos
        if pos + n > self.end:
            raise self._truncated(n)
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def array_length(self, compact: _Bool, nullable: _Bool) -> int:
        n = self.uvarint() - 1 if compact else self.int32()
        if n < 0:
            if n == -1 and nullable:
                return -1
            raise DecodeError("null or negative length for a non-nullable array")
        if n > self.end - self.pos:
            raise DecodeError(f"array length {n} exceeds the {self.end - self.pos} bytes left")
        return n

    def skip(self, n: int) -> None:
        self._take(n)

    def skip_tagged_fields(self) -> None:
        """Skip a tagged-field section whose tags are all unknown to this version."""
        pos = self.pos
        if pos < self.end and self.buf[pos] == 0:  # no tagged fields: nearly always
            self.pos = pos + 1
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())


class Writer:
    """Collects an encoding as a list of parts; records blobs become parts of their own."""

    __slots__ = ("buf", "parts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.parts: list[Any] = []

    def int8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def int16(self, v: int) -> None:
        self.buf += _pack_i16(v)

    def uint16(self, v: int) -> None:
        self.buf += _U16.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _pack_i32(v)

    def uint32(self, v: int) -> None:
        self.buf += _U32.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _pack_i64(v)

    def float64(self, v: float) -> None:
        self.buf += _F64.pack(v)

    def bool(self, v: _Bool) -> None:
        self.buf.append(1 if v else 0)

    def uuid(self, v: uuid.UUID) -> None:
        self.buf += v.bytes

    def uvarint(self, v: int) -> None:
        buf = self.buf
        if 0 <= v < 0x80:
            buf.append(v)
            return
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)

    def raw(self, data: _Bytes | bytearray | memoryview) -> None:
        self.buf += data

    def _length(self, n: int, compact: _Bool) -> None:
        if compact:
            self.uvarint(n + 1)
        else:
            self.int32(n)

    def string(self, v: str | None, compact: _Bool, nullable: _Bool) -> None:
        if v is None:
            if not nullable:
                raise ValueError("null for a non-nullable string")
            if compact:
                self.uvarint(0)
            else:
                self.int16(-1)
            return
        data = v.encode("utf-8")
        if compact:
            self.uvarint(len(data) + 1)
        else:
            self.int16(len(data))
        self.buf += data

    def bytes(
        self, v: _Bytes | bytearray | memoryview | None, compact: _Bool, nullable: _Bool
    ) -> None:
        if v is None:
            if not nullable:
                raise ValueError("null for a non-nullable bytes field")
            self._length(-1, compact)
            return
        self._length(len(v), compact)
        self.buf += v

    def records(self, v: Any, compact: _Bool, nullable: _Bool) -> None:
        """Write a records field: a buffer, None, or a sized opaque part (a file region)."""
        if v is None:
            if not nullable:
                raise ValueError("null for a non-nullable records field")
            self._length(-1, compact)
            return
        size = len(v) if isinstance(v, (bytes, bytearray, memoryview)) else _part_size(v)
        self._length(size, compact)
        if isinstance(v, (bytes, bytearray, memoryview)) and size <= INLINE_RECORDS_LIMIT:
            self.buf += v
            return
        if self.buf:
            self.parts.append(bytes(self.buf))
            self.buf = bytearray()
        self.parts.append(v)

    def array_length(self, n: int, compact: _Bool) -> None:
        if compact:
            self.uvarint(n + 1)
        else:
            self.int32(n)

    def null_array(self, compact: _Bool, nullable: _Bool) -> None:
        if not nullable:
            raise ValueError("null for a non-nullable array")
        self.array_length(-1, compact)

    def tagged_fields(self, tagged: list[tuple[int, _Bytes]]) -> None:
        """Write a tagged-field section; ``tagged`` holds (tag, encoded value) in tag order."""
        self.uvarint(len(tagged))
        for tag, data in tagged:
            self.uvarint(tag)
            self.uvarint(len(data))
            self.buf += data

    def finish(self) -> list[Any]:
        """The encoding as parts; buffers are bytes, other parts are opaque sized objects."""
        if self.buf:
            self.parts.append(bytes(self.buf))
            self.buf = bytearray()
        return self.parts

    def getvalue(self) -> _Bytes:
        """The whole encoding as one bytes object (tests, tagged fields)."""
        return b"".join(part_bytes(p) for p in self.finish())


def _part_size(part: Any) -> int:
    if isinstance(part, Sized):
        return len(part)
    size = getattr(part, "size", None)
    if not isinstance(size, int):
        raise TypeError(f"records part {part!r} has no size")
    return size


def part_bytes(part: Any) -> _Bytes:
    """A part's bytes: buffers as they are, opaque parts through their ``read_bytes()``."""
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    return bytes(part.read_bytes())


def parts_size(parts: list[Any]) -> int:
    return sum(
        len(p) if isinstance(p, (bytes, bytearray, memoryview)) else _part_size(p) for p in parts
    )
