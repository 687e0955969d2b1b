"""Zigzag varints as used inside magic-2 records (Kafka's ByteUtils.writeVarint/readVarint).

Signed values are zigzag-mapped (0,-1,1,-2,... -> 0,1,2,3,...) and then written 7 bits per
byte, least significant group first, high bit set on every byte but the last. An int32
takes at most 5 bytes and an int64 at most 10; longer encodings are rejected. These are
not the unsigned varints of flexible API messages (those live with the message codec).
"""

from __future__ import annotations

from metamorphostreams.protocol.errors import DecodeError

__all__ = [
    "read_varint",
    "read_varlong",
    "varint_size",
    "write_varint",
    "write_varlong",
]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_VARINT_BYTES = 5  # ceil(32 / 7)
_MAX_VARLONG_BYTES = 10  # ceil(64 / 7)


def _zigzag(value: int, bits: int) -> int:
    return ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)


def _unzigzag(raw: int) -> int:
    return (raw >> 1) ^ -(raw & 1)


def _write_unsigned(out: bytearray, raw: int) -> None:
    while raw > 0x7F:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (an int32) as a zigzag varint."""
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"varint out of int32 range: {value}")
    _write_unsigned(out, _zigzag(value, 32))


def write_varlong(out: bytearray, value: int) -> None:
    """Append ``value`` (an int64) as a zigzag varlong."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"varlong out of int64 range: {value}")
    _write_unsigned(out, _zigzag(value, 64))


def varint_size(value: int) -> int:
    """Bytes ``write_varint`` would use for ``value``."""
    raw = _zigzag(value, 32)
    size = 1
    while raw > 0x7F:
        raw >>= 7
        size += 1
    return size


def _read_unsigned(
    buf: bytes | bytearray | memoryview, pos: int, max_bytes: int
) -> tuple[int, int]:
    raw = 0
    shift = 0
    end = len(buf)
    for i in range(max_bytes):
        if pos + i >= end:
            raise DecodeError(f"truncated varint at {pos}")
        byte = buf[pos + i]
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return raw, pos + i + 1
        shift += 7
    raise DecodeError(f"varint longer than {max_bytes} bytes at {pos}")


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a zigzag int32 at ``pos``; returns ``(value, next_pos)``."""
    raw, pos = _read_unsigned(buf, pos, _MAX_VARINT_BYTES)
    if raw >> 32:
        raise DecodeError("varint overflows int32")
    return _unzigzag(raw), pos


def read_varlong(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a zigzag int64 at ``pos``; returns ``(value, next_pos)``."""
    raw, pos = _read_unsigned(buf, pos, _MAX_VARLONG_BYTES)
    if raw >> 64:
        raise DecodeError("varlong overflows int64")
    return _unzigzag(raw), pos
