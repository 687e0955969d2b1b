"""Frame splitting: a Kafka frame is an int32 size followed by that many bytes."""

from __future__ import annotations

import struct

from .errors import DecodeError

SIZE_PREFIX = struct.Struct(">i")


class FrameTooLarge(DecodeError):
    """A frame announced a size above the limit (socket.request.max.bytes)."""


class FrameSplitter:
    """Accumulates bytes and yields whole frames (without their size prefix). Not task-safe.

    ``next_frame`` is transactional: given too few bytes it returns None and consumes
    nothing. A negative or oversized frame size raises, and the connection must be closed.
    """

    __slots__ = ("_buf", "_start", "max_frame_size")

    def __init__(self, max_frame_size: int) -> None:
        self._buf = bytearray()
        self._start = 0
        self.max_frame_size = max_frame_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._start and self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._start

    def next_frame(self) -> bytes | None:
        buf = self._buf
        start = self._start
        if len(buf) - start < 4:
            return None
        (size,) = SIZE_PREFIX.unpack_from(buf, start)
        if size < 0:
            raise DecodeError(f"negative frame size {size}")
        if size > self.max_frame_size:
            raise FrameTooLarge(f"frame of {size} bytes exceeds the limit {self.max_frame_size}")
        end = start + 4 + size
        if len(buf) < end:
            return None
        frame = bytes(buf[start + 4 : end])
        if end == len(buf):
            buf.clear()
            self._start = 0
        elif end > 1 << 20:
            del buf[:end]
            self._start = 0
        else:
            self._start = end
        return frame
