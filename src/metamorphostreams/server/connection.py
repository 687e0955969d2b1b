"""One client connection: frame splitting, in-order request handling, response writing.

Framing runs in ``data_received`` (an ``asyncio.Protocol``, not a StreamReader). Requests of
one connection are handled one at a time, in order, as Kafka does; the connection stops
reading while ``queued.max.requests`` frames wait. Responses are lists of parts: buffers go
to ``transport.write``; file regions of segment files go out by ``loop.sendfile`` (zero copy).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, cast

from ..protocol.errors import DecodeError
from ..protocol.frames import SIZE_PREFIX, FrameSplitter

log = logging.getLogger("metamorphostreams.server")


class _PositionalFile:
    """A file view for ``loop.sendfile`` with its own position.

    ``loop.sendfile`` seeks the file it is given (and its fallback reads through it); a
    private position keeps the segment file shared with appends and other fetches untouched.
    """

    __slots__ = ("_fd", "_pos")

    def __init__(self, fd: int, pos: int) -> None:
        self._fd = fd
        self._pos = pos

    def fileno(self) -> int:
        return self._fd

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("only absolute seeks are supported")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = os.preadv(self._fd, [buf], self._pos)
        self._pos += n
        return n


Handler = Callable[["Connection", bytes], Awaitable[list[Any] | None]]


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection instead of answering."""


class Connection(asyncio.Protocol):
    """A client connection. Owned by the event loop; not shared between tasks."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_frame_size: int,
        max_queued: int,
        idle_ms: int,
        on_close: Callable[[Connection], None],
    ) -> None:
        self._handler = handler
        self._splitter = FrameSplitter(max_frame_size)
        self._queue: deque[bytes] = deque()
        self._max_queued = max_queued
        self._idle_s = idle_ms / 1000 if idle_ms > 0 else None
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.peer = "?"
        self.last_active = asyncio.get_running_loop().time()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        transport.set_write_buffer_limits(high=1 << 20)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        self._splitter.feed(data)
        try:
            while True:
                frame = self._splitter.next_frame()
                if frame is None:
                    break
                self._queue.append(frame)
        except DecodeError as e:
            log.info("closing connection from %s: %s", self.peer, e)
            self.close()
            return
        if self._queue:
            self._wakeup.set()
        if len(self._queue) >= self._max_queued and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wakeup.set()
        self._drained.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._on_close(self)

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()

    # -- request loop -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.abort()

    async def _run(self) -> None:
        try:
            while not self._closed:
                if not self._queue:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self._idle_s)
                    except TimeoutError:
                        log.info("closing idle connection from %s", self.peer)
                        self.close()
                        return
                    continue
                frame = self._queue.popleft()
                if self._reading_paused and len(self._queue) < self._max_queued:
                    self._reading_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                try:
                    parts = await self._handler(self, frame)
                except CloseConnection as e:
                    log.info("closing connection from %s: %s", self.peer, e)
                    self.close()
                    return
                if parts is not None and not self._closed:
                    await self._send(parts)
        except asyncio.CancelledError:
            pass
        except ConnectionError:
            self.close()
        except Exception:
            log.exception("error handling a request from %s; closing its connection", self.peer)
            self.close()

    async def _send(self, parts: list[Any]) -> None:
        """Write one response: size prefix, then each part (buffers, or file regions)."""
        transport = self._transport
        assert transport is not None
        size = 0
        for p in parts:
            size += len(p) if isinstance(p, (bytes, bytearray, memoryview)) else p.size
        transport.write(SIZE_PREFIX.pack(size))
        loop = asyncio.get_running_loop()
        for p in parts:
            if self._closed:
                return
            if isinstance(p, (bytes, bytearray, memoryview)):
                transport.write(p)
                continue
            for region in getattr(p, "parts", (p,)):
                if region.size:
                    source = _PositionalFile(region.file.fileno(), region.position)
                    await loop.sendfile(
                        transport, cast(BinaryIO, source), region.position, region.size
                    )
        if not self._drained.is_set():
            await self._drained.wait()
