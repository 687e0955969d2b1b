"""One client connection: frame splitting, in-order request handling, response writing,
and the broker's connection limits.

Framing runs in ``buffer_updated``: an ``asyncio.BufferedProtocol`` reading into a
``FrameReader`` (not a StreamReader), so large requests are read straight into buffers of
their own. Requests of one connection are handled one at a time, in order, as Kafka does.
Responses are lists of parts: buffers go to ``transport.write`` (small ones joined, the size
prefix with them); file regions of segment files go out by ``os.sendfile`` straight to the
socket (zero copy), on asyncio's loop or uvloop alike.

What one connection may cost is bounded, whatever the client does:
- reading stops while ``queued.max.requests`` frames, or one maximal frame's worth of bytes
  (``socket.request.max.bytes``), wait to be handled;
- the next request is not handled until the previous response has left the transport's
  buffer (``pause_writing``), so a client that never reads its responses makes the broker
  stop reading its requests, not buffer their answers;
- ``connections.max.idle.ms`` closes a connection without network progress: no bytes read,
  and none of its responses taken by the client (a reader that stopped reading counts as
  idle, as in Kafka), unless a request of it is being handled (a long-poll Fetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from ..protocol.errors import DecodeError
from ..protocol.frames import SIZE_PREFIX, FrameReader

log = logging.getLogger("metamorphostreams.server")

WRITE_BUFFER_HIGH = 1 << 20  # bytes buffered in the transport before writing pauses
_JOIN_LIMIT = 64 * 1024  # buffers up to this many bytes in all are joined into one write


Handler = Callable[["Connection", bytearray], Awaitable[list[Any] | None]]


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection instead of answering."""


_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_TCPI_BYTES_ACKED = struct.Struct("=Q")  # Linux struct tcp_info: u64 tcpi_bytes_acked ...
_TCPI_BYTES_ACKED_AT = 120  # ... at this offset (stable ABI since Linux 4.1)


def _bytes_acked(sock: socket.socket | None) -> int | None:
    """How many bytes the peer has acknowledged on ``sock`` (grows only while the client
    reads what we send), or None where the kernel does not say."""
    if sock is None or _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < _TCPI_BYTES_ACKED_AT + _TCPI_BYTES_ACKED.size:
        return None
    return int(_TCPI_BYTES_ACKED.unpack_from(info, _TCPI_BYTES_ACKED_AT)[0])


class Connection(asyncio.BufferedProtocol):
    """A client connection. Owned by the event loop; not shared between tasks.

    ``admit`` is asked once the peer is known; a refused connection is closed at once and
    never handled (``admitted`` stays False). ``on_close`` is called once, when the
    transport is gone, for admitted and refused connections alike.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_frame_size: int,
        max_queued: int,
        idle_ms: int,
        on_close: Callable[[Connection], None],
        send_buffer_bytes: int = -1,
        admit: Callable[[Connection], bool] | None = None,
    ) -> None:
        self._handler = handler
        self._reader = FrameReader(max_frame_size)
        self._queue: deque[bytearray] = deque()
        self._queued_bytes = 0
        self._max_queued = max_queued
        self._max_queued_bytes = max_frame_size
        self._idle_s = idle_ms / 1000 if idle_ms > 0 else None
        self._send_buffer_bytes = send_buffer_bytes
        self._on_close = on_close
        self._admit = admit
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._handling = False
        self._waiting_to_send = False
        self._acked: int | None = None
        self._closed = False
        self.admitted = False
        self.peer = "?"
        self.peer_host = ""
        self.last_active = asyncio.get_running_loop().time()

    # -- asyncio.BufferedProtocol ------------------------------------------------------

    def connection_made(self, base_transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base_transport)  # uvloop's is not a subclass
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
            self.peer_host = str(peer[0])
        if self._admit is not None and not self._admit(self):
            self.close()
            return
        self.admitted = True
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        sock = transport.get_extra_info("socket")
        self._acked = _bytes_acked(sock)
        if sock is not None:
            # As Kafka's Acceptor: keepalive on, SO_SNDBUF from socket.send.buffer.bytes
            # (-1: the OS default); SO_RCVBUF is inherited from the listening socket.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if self._send_buffer_bytes != -1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer_bytes)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        if self._idle_s is not None:
            self._idle_timer = loop.call_later(self._idle_s, self._check_idle)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._closed:
            return
        self.last_active = asyncio.get_running_loop().time()
        try:
            frames = self._reader.buffer_updated(nbytes)
        except DecodeError as e:
            log.info("closing connection from %s: %s", self.peer, e)
            self.close()
            return
        if not frames:
            return
        for frame in frames:
            self._queue.append(frame)
            self._queued_bytes += len(frame)
        self._wakeup.set()
        if not self._reading_paused and (
            len(self._queue) >= self._max_queued or self._queued_bytes >= self._max_queued_bytes
        ):
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wakeup.set()
        self._drained.set()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._queue.clear()
        self._queued_bytes = 0
        self._on_close(self)

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self.last_active = asyncio.get_running_loop().time()
        self._drained.set()

    # -- idleness -----------------------------------------------------------------------

    def _check_idle(self) -> None:
        """connections.max.idle.ms: runs every so often until the connection is gone."""
        if self._closed or self._idle_s is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        transport = self._transport
        acked = _bytes_acked(transport.get_extra_info("socket") if transport else None)
        if acked is not None and self._acked is not None and acked > self._acked:
            self.last_active = now  # the client took some of our bytes: it is reading
        self._acked = acked
        idle = now - self.last_active
        if idle >= self._idle_s and not self._handling:
            log.info("closing connection from %s: idle for %.1f s", self.peer, idle)
            self.close()
            return
        wait = self._idle_s - idle if idle < self._idle_s else self._idle_s / 4
        self._idle_timer = loop.call_later(max(wait, 0.01), self._check_idle)

    # -- request loop -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        self._closed = True
        task = self._task
        if self._waiting_to_send and task is not None and not task.done():
            # The wait holds a duplicate of the socket's descriptor, which would keep the
            # socket open after the abort: end the wait first (it closes the duplicate).
            task.cancel()
            task.add_done_callback(lambda _: transport.abort())
            return
        transport.abort()

    async def _run(self) -> None:
        try:
            while not self._closed:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = self._queue.popleft()
                self._queued_bytes -= len(frame)
                if self._reading_paused and self._can_read_more():
                    self._reading_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                self._handling = True
                try:
                    parts = await self._handler(self, frame)
                except CloseConnection as e:
                    log.info("closing connection from %s: %s", self.peer, e)
                    self.close()
                    return
                finally:
                    self._handling = False
                    self.last_active = asyncio.get_running_loop().time()
                if parts is not None and not self._closed:
                    await self._send(parts)
        except asyncio.CancelledError:
            pass
        except ConnectionError:
            self.close()
        except Exception:
            log.exception("error handling a request from %s; closing its connection", self.peer)
            self.close()

    def _can_read_more(self) -> bool:
        return len(self._queue) < self._max_queued and self._queued_bytes < self._max_queued_bytes

    async def _send(self, parts: list[Any]) -> None:
        """Write one response: size prefix, then each part (buffers, or file regions); then
        wait until the transport's buffer is below its limit, so a client that does not
        read stops its own requests from being handled.

        Consecutive small buffers (the prefix included) go out in one ``transport.write``;
        file regions go out by ``sendfile`` (see ``_send_region``)."""
        transport = self._transport
        assert transport is not None
        size = 0
        for p in parts:
            size += len(p) if isinstance(p, (bytes, bytearray, memoryview)) else p.size
        pending: list[Any] = [SIZE_PREFIX.pack(size)]
        pending_bytes = 4
        for p in parts:
            if isinstance(p, (bytes, bytearray, memoryview)):
                if pending_bytes + len(p) > _JOIN_LIMIT:
                    self._write_joined(transport, pending)
                    pending = []
                    pending_bytes = 0
                    transport.write(p)
                else:
                    pending.append(p)
                    pending_bytes += len(p)
                continue
            for region in getattr(p, "parts", (p,)):
                if not region.size:
                    continue
                if pending:
                    self._write_joined(transport, pending)
                    pending = []
                    pending_bytes = 0
                if self._closed or not await self._send_region(transport, region):
                    return
        if pending:
            self._write_joined(transport, pending)
        if not self._drained.is_set():
            await self._drained.wait()

    @staticmethod
    def _write_joined(transport: asyncio.Transport, pending: list[Any]) -> None:
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def _send_region(self, transport: asyncio.Transport, region: Any) -> bool:
        """Send ``region.size`` bytes of a segment file at ``region.position`` by
        ``os.sendfile`` straight to the socket; False when the connection is gone (or was
        closed because the file ended early).

        The transport's buffer is empty first, so the bytes go in order. When the socket is
        full, the wait for it to drain is on a duplicate of its descriptor: the transport
        owns the original in the event loop (asyncio's or uvloop's)."""
        fd = region.file.fileno()
        position = region.position
        remaining = region.size
        if transport.get_write_buffer_size():
            await self._wait_written(transport)
        loop = asyncio.get_running_loop()
        while remaining:
            if self._closed or transport.is_closing():
                return False  # the peer went away meanwhile: nothing left to send it
            sock_fd = transport.get_extra_info("socket").fileno()
            try:
                sent = os.sendfile(sock_fd, fd, position, remaining)
            except BlockingIOError:
                await self._socket_writable(sock_fd)
                continue
            except ConnectionError:
                self.close()
                return False
            if sent == 0:
                # The file was cut under us, and the response's size was already sent: the
                # client's framing cannot be kept, so the connection goes.
                log.warning(
                    "closing connection from %s: a segment file ended %d bytes early",
                    self.peer,
                    remaining,
                )
                self.close()
                return False
            position += sent
            remaining -= sent
            self.last_active = loop.time()  # the socket took bytes: the client reads
        return True

    async def _socket_writable(self, sock_fd: int) -> None:
        """Wait until the socket takes bytes again (or fails), on a duplicate descriptor
        that lives only for the wait."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        probe = os.dup(sock_fd)
        self._waiting_to_send = True
        try:
            loop.add_writer(probe, ready)
            try:
                await waiter
            finally:
                loop.remove_writer(probe)
        finally:
            os.close(probe)
            self._waiting_to_send = False

    async def _wait_written(self, transport: asyncio.Transport) -> None:
        """Wait until the transport's buffer is empty, so that a sendfile after it keeps
        the response's bytes in order."""
        if not transport.get_write_buffer_size():
            return
        transport.set_write_buffer_limits(high=0)  # resume_writing once it is empty
        try:
            while transport.get_write_buffer_size() and not self._closed:
                self._drained.clear()
                await self._drained.wait()
        finally:
            if not self._closed:
                transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)


class ConnectionQuotas:
    """Kafka's ``max.connections``, ``max.connections.per.ip`` and
    ``max.connections.per.ip.overrides`` (SocketServer's ConnectionQuotas): counts the
    admitted connections, in total and per client address. Loop-owned.

    Beyond a limit a new connection is closed as soon as it is accepted. (Kafka closes it
    too for the per-address limits; for the broker-wide one it stops accepting until a
    connection ends, which leaves clients waiting in the listen backlog instead.)
    """

    def __init__(self, max_connections: int, per_ip: int, overrides: Mapping[str, int]) -> None:
        self.max_connections = max_connections
        self.per_ip = per_ip
        self.overrides = {_normalise_host(h): n for h, n in overrides.items()}
        self.total = 0
        self._by_host: dict[str, int] = {}
        self.rejected = 0

    def limit_for(self, host: str) -> int:
        return self.overrides.get(_normalise_host(host), self.per_ip)

    def admit(self, conn: Connection) -> bool:
        host = _normalise_host(conn.peer_host)
        count = self._by_host.get(host, 0)
        limit = self.limit_for(host)
        if count >= limit:
            self.rejected += 1
            log.info(
                "rejected connection from %s: the address already has the configured maximum "
                "of %d connections (max.connections.per.ip)",
                conn.peer,
                limit,
            )
            return False
        if self.total >= self.max_connections:
            self.rejected += 1
            log.info(
                "rejected connection from %s: the broker already has the configured maximum "
                "of %d connections (max.connections)",
                conn.peer,
                self.max_connections,
            )
            return False
        self.total += 1
        self._by_host[host] = count + 1
        return True

    def release(self, conn: Connection) -> None:
        if not conn.admitted:
            return
        host = _normalise_host(conn.peer_host)
        self.total -= 1
        left = self._by_host.get(host, 1) - 1
        if left > 0:
            self._by_host[host] = left
        else:
            self._by_host.pop(host, None)


def _normalise_host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def resolve_overrides(overrides: Mapping[str, int]) -> dict[str, int]:
    """``max.connections.per.ip.overrides`` keyed by address: host names are looked up once
    (as Kafka does when it reads the config); every address of a name gets its limit."""
    out: dict[str, int] = {}
    for host, limit in overrides.items():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            out[host] = limit
            continue
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as e:
            log.warning("max.connections.per.ip.overrides: cannot resolve %r: %s", host, e)
            continue
        for info in infos:
            out[str(info[4][0])] = limit
    return out
