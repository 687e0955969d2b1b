"""Frame reading: a Kafka frame is an int32 size followed by that many bytes."""

from __future__ import annotations

import struct

from .errors import DecodeError

SIZE_PREFIX = struct.Struct(">i")

READ_SIZE = 32 * 1024  # the shared read buffer; frames larger than half of it get their own
_OWN_BUFFER_ABOVE = READ_SIZE // 2
# A frame's own buffer starts at most this big and doubles as its bytes arrive: what a client
# makes the broker hold follows what it sent, not the size it announced.
OWN_BUFFER_FIRST = 1 << 20


class FrameTooLarge(DecodeError):
    """A frame announced a size above the limit (socket.request.max.bytes)."""


class FrameReader:
    """Cuts a byte stream into frames (without their size prefix), for an
    ``asyncio.BufferedProtocol``: the transport reads into ``get_buffer()``, then
    ``buffer_updated(n)`` returns the frames completed. Not task-safe.

    Small frames are read many at a time into one shared buffer and copied out once each. A
    frame larger than half of that buffer gets a ``bytearray`` of its own as soon as its size
    is known, and the socket reads the rest of it straight in, so a 1 MiB Produce is never
    copied in user space. That buffer is the frame's size up to ``OWN_BUFFER_FIRST``, and
    grows (doubling) only as the bytes arrive. Every frame is a fresh ``bytearray`` owned by
    the caller (Produce patches its batches in place). A negative or oversized size raises
    DecodeError, and the connection must be closed.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_frame",
        "_frame_filled",
        "_frame_size",
        "_start",
        "max_frame_size",
    )

    def __init__(self, max_frame_size: int) -> None:
        self._buf = bytearray(READ_SIZE)
        self._start = 0  # unconsumed bytes are _buf[_start:_end]
        self._end = 0
        self._frame: bytearray | None = None  # a large frame being read in place
        self._frame_filled = 0  # bytes of it received
        self._frame_size = 0  # its announced size
        self.max_frame_size = max_frame_size

    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        in_frame = 4 + self._frame_filled if self._frame is not None else 0
        return self._end - self._start + in_frame

    def get_buffer(self) -> memoryview:
        """Where the next bytes from the socket go (never empty)."""
        frame = self._frame
        if frame is not None:
            if self._frame_filled == len(frame):  # full so far: grow toward the announced size
                self._frame = frame = self._grown(frame)
            return memoryview(frame)[self._frame_filled :]
        if self._end == len(self._buf):
            # Only a small frame's beginning can be left here: move it to the front.
            pending = self._end - self._start
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start = 0
            self._end = pending
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """Account for ``nbytes`` written into the last ``get_buffer()``; the frames now
        complete, in order."""
        frames: list[bytearray] = []
        frame = self._frame
        if frame is not None:
            self._frame_filled += nbytes
            if self._frame_filled < self._frame_size:
                return frames
            frames.append(frame)
            self._frame = None
            self._frame_filled = 0
            return frames
        self._end += nbytes
        buf = self._buf
        start = self._start
        end = self._end
        while end - start >= 4:
            (size,) = SIZE_PREFIX.unpack_from(buf, start)
            if size < 0:
                raise DecodeError(f"negative frame size {size}")
            if size > self.max_frame_size:
                raise FrameTooLarge(
                    f"frame of {size} bytes exceeds the limit {self.max_frame_size}"
                )
            if start + 4 + size <= end:
                frames.append(buf[start + 4 : start + 4 + size])
                start += 4 + size
                continue
            if size > _OWN_BUFFER_ABOVE:
                have = end - start - 4
                own = bytearray(min(size, max(OWN_BUFFER_FIRST, have)))
                own[:have] = buf[start + 4 : end]
                self._frame = own
                self._frame_filled = have
                self._frame_size = size
                start = end
            break
        if start == end:
            start = end = 0
        self._start = start
        self._end = end
        return frames

    def _grown(self, frame: bytearray) -> bytearray:
        more = min(len(frame), self._frame_size - len(frame))
        try:
            frame += bytes(more)  # in place (realloc: large blocks are remapped, not copied)
        except BufferError:  # a view of it is still held somewhere: grow a copy instead
            frame = frame + bytes(more)
        return frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Take ``data`` as if the socket had read it: the frames it completes."""
        frames: list[bytearray] = []
        view = memoryview(data)
        while view:
            target = self.get_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            target.release()
            frames += self.buffer_updated(n)
            view = view[n:]
        return frames
