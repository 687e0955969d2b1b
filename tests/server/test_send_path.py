"""The connection's send path on real sockets, on asyncio's loop and on uvloop: large
fetches to a reader slower than the socket (sendfile, a wait for the socket to drain, more
sendfile), a connection closed during that wait, the socket options of Kafka's config, and
a file region that ends before the size the response promised."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from metamorphostreams.protocol._generated import RESPONSE_CLASSES
from metamorphostreams.protocol._generated.api_versions import ApiVersionsRequest
from metamorphostreams.protocol._generated.headers import ResponseHeader
from metamorphostreams.protocol._primitives import Reader
from metamorphostreams.protocol.records import iter_records
from metamorphostreams.server.broker import Broker
from metamorphostreams.server.connection import Connection
from metamorphostreams.storage.results import FileRegion

from .ourwire import WireClient
from .test_apis import batch, create, fetch, fetch_request, produce

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}
each_loop = pytest.mark.parametrize("run", LOOPS.values(), ids=LOOPS.keys())


async def _serve(
    handler: Callable[[Connection, bytearray], Coroutine[Any, Any, list[Any]]],
    on_close: Callable[[Connection], None],
    *,
    idle_ms: int,
) -> tuple[asyncio.Server, int]:
    """Connections with ``handler`` on a loopback port: the server and its port."""
    server = await asyncio.get_running_loop().create_server(
        lambda: Connection(
            handler,
            max_frame_size=1 << 20,
            max_queued=1,
            idle_ms=idle_ms,
            on_close=on_close,
            send_buffer_bytes=16384,  # what is sent and unread stays small
        ),
        "127.0.0.1",
        0,
    )
    return server, server.sockets[0].getsockname()[1]


def _buffer_as_set(option: int, size: int) -> int:
    """What the kernel reports for a socket buffer set to ``size`` (Linux doubles it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, option, size)
        return int(s.getsockopt(socket.SOL_SOCKET, option))


async def _slow_client(broker: Broker) -> WireClient:
    """A connection whose receive buffer is small, so the broker's sends fill up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (broker.host, broker.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    return WireClient(reader, writer)


@each_loop
def test_fetches_larger_than_the_socket_buffers_arrive_whole(tmp_path: Path, run: Runner) -> None:
    """3 partitions of 1.5 MB each in one Fetch, read 0.3 s late: far more than the
    server's 16 KiB send buffer and the client's receive buffer hold, so sendfile meets a
    full socket and waits for it to drain, many times; every record arrives, in order,
    and the connection still frames the next response right."""
    payloads = {p: [os.urandom(60_000) for _ in range(25)] for p in range(3)}

    async def main() -> None:
        props = {"socket.send.buffer.bytes": "16384"}
        async with Broker(tmp_path / "data", port=0, props=props) as broker:
            admin = await WireClient.connect(broker.host, broker.port)
            assert (await create(admin, "big", partitions=3)).error_code == 0
            for p, values in payloads.items():
                for i in range(0, len(values), 5):
                    assert (
                        await produce(admin, "big", p, batch(values[i : i + 5]))
                    ).error_code == 0
            await admin.close()

            client = await _slow_client(broker)
            try:
                req = fetch_request(
                    "big", dict.fromkeys(range(3), 0), max_bytes=50 << 20,
                    partition_max_bytes=10 << 20,
                )  # fmt: skip
                await client.send_raw(client.frame(req, 12, 7))
                await asyncio.sleep(0.3)
                frame = await client.read_frame(timeout=30)
                r = Reader(frame)
                assert ResponseHeader.read(r, 1).correlation_id == 7
                resp: Any = RESPONSE_CLASSES[1].read(r, 12)
                parts = {p.partition_index: p for p in resp.responses[0].partitions}
                for p, values in payloads.items():
                    got = [rec.value for rec in iter_records(parts[p].records)]
                    assert got == values, f"partition {p}"
                # The next response on the same connection is framed right.
                again = await fetch(client, "big", 2, 24)
                assert [rec.offset for rec in iter_records(again.records)] == [20, 21, 22, 23, 24]
            finally:
                await client.close()

    run(main())


@each_loop
def test_socket_buffer_configs_and_keepalive_are_applied(tmp_path: Path, run: Runner) -> None:
    async def main() -> None:
        props = {"socket.send.buffer.bytes": "65536", "socket.receive.buffer.bytes": "131072"}
        async with Broker(tmp_path / "data", port=0, props=props) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            try:
                assert (await client.request(ApiVersionsRequest(), 2)).error_code == 0
                (conn,) = broker._connections
                transport = conn._transport
                assert transport is not None
                sock = transport.get_extra_info("socket")
                sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                assert sndbuf == _buffer_as_set(socket.SO_SNDBUF, 65536)
                assert rcvbuf == _buffer_as_set(socket.SO_RCVBUF, 131072)
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            finally:
                await client.close()

    run(main())


@each_loop
def test_a_file_region_shorter_than_promised_closes_the_connection(
    tmp_path: Path, run: Runner
) -> None:
    """A segment cut under a response (it cannot be sent whole): the client gets what
    there was, then the connection ends, instead of waiting for bytes that never come."""
    segment = tmp_path / "short.log"
    segment.write_bytes(b"r" * 100)

    async def main() -> None:
        with segment.open("rb") as file:

            async def handler(conn: Connection, frame: bytearray) -> list[Any]:
                return [b"head", FileRegion(file, 0, 1000)]

            closed: list[Connection] = []
            server, port = await _serve(handler, closed.append, idle_ms=0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(struct.pack(">i", 3) + b"req")
            received = await asyncio.wait_for(reader.read(), 10)  # until EOF
            assert received == struct.pack(">i", 1004) + b"head" + b"r" * 100
            writer.close()
            server.close()
            await server.wait_closed()
            assert len(closed) == 1

    run(main())


@each_loop
def test_a_client_that_stops_reading_mid_response_is_closed_and_let_go(
    tmp_path: Path, run: Runner
) -> None:
    """connections.max.idle.ms ends a connection whose client stopped reading in the middle
    of an 8 MB response, while the broker waits for its socket to drain: the client sees
    the connection end, and the broker keeps no descriptor of it."""
    segment = tmp_path / "big.log"
    segment.write_bytes(os.urandom(8 << 20))

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        with segment.open("rb") as file:

            async def handler(conn: Connection, frame: bytearray) -> list[Any]:
                return [FileRegion(file, 0, 8 << 20)]

            closed: list[Connection] = []
            server, port = await _serve(handler, closed.append, idle_ms=500)
            before = open_fds()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(struct.pack(">i", 3) + b"req")
            for _ in range(100):  # the broker is closing it as idle
                await asyncio.sleep(0.05)
                if closed:
                    break
            assert len(closed) == 1
            sock.settimeout(10)
            received = 0
            with pytest.raises((ConnectionResetError, EOFError)):
                while True:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise EOFError
                    received += len(chunk)
            assert 0 < received < (8 << 20) + 4
            sock.close()
            await asyncio.sleep(0.05)
            assert open_fds() == before
            server.close()
            await server.wait_closed()

    run(main())
