"""Load and abuse: a thousand concurrent connections, idle ones closed after
``connections.max.idle.ms``, ``max.connections`` and ``max.connections.per.ip``, clients that
never read their responses (they must not grow the broker's memory), and a slow reader that
must not stall anyone else.
"""

from __future__ import annotations

import itertools
import selectors
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory, BrokerProcess

from .conftest import Figures
from .support import (
    broker_pid,
    closed_by_peer,
    connect,
    open_fds,
    peak_rss_mib,
    rss_mib,
)

CONNECTIONS = 1_000
IO_LIMIT_S = 30.0  # bound on any phase of socket I/O below; a healthy broker needs ~1 s

_ids = itertools.count(1)


def _framed(request: Any) -> bytes:
    request.with_header(correlation_id=next(_ids), client_id="robustness")
    return bytes(request.encode(header=True, framed=True))


def api_versions_frame(correlation_id: int) -> bytes:
    return wire.frame(wire.api_versions_v0_payload(correlation_id))


def metadata_frame() -> bytes:
    from kafka.protocol.metadata import MetadataRequest

    return _framed(MetadataRequest[1](topics=None))


def fetch_frame(
    topic: str,
    offset: int = 0,
    *,
    max_bytes: int = 1 << 20,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
) -> bytes:
    request = wire.fetch_request(topic, 0, offset, max_bytes=max_bytes)
    request.max_wait_ms = max_wait_ms
    request.min_bytes = min_bytes
    return _framed(request)


def read_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"EOF after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    (size,) = struct.unpack(">i", exact(4))
    return exact(size)


def round_trip_api_versions(sock: socket.socket) -> None:
    correlation_id = next(_ids)
    sock.sendall(api_versions_frame(correlation_id))
    got = struct.unpack_from(">i", read_frame(sock))[0]
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"


# --------------------------------------------------------------------------- many sockets


class Swarm:
    """Many non-blocking connections driven together with a selector."""

    def __init__(self, port: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        sel = selectors.DefaultSelector()
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sel.register(sock, selectors.EVENT_WRITE)
                self.socks.append(sock)
            pending = set(self.socks)
            deadline = time.monotonic() + IO_LIMIT_S
            while pending:
                assert time.monotonic() < deadline, f"{len(pending)} connects did not finish"
                for key, _ in sel.select(1.0):
                    sock = key.fileobj  # type: ignore[assignment]
                    assert isinstance(sock, socket.socket)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    assert err == 0, f"connect failed: {err}"
                    sel.unregister(sock)
                    pending.discard(sock)
        finally:
            sel.close()

    def round_trip_all(self) -> None:
        """One ApiVersions request on every connection at once; every answer read."""
        expected: dict[socket.socket, int] = {}
        for sock in self.socks:
            correlation_id = next(_ids)
            expected[sock] = correlation_id
            sock.setblocking(True)
            sock.sendall(api_versions_frame(correlation_id))
            sock.setblocking(False)
        buffers = {sock: bytearray() for sock in self.socks}
        sel = selectors.DefaultSelector()
        for sock in self.socks:
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + IO_LIMIT_S
        try:
            while expected:
                assert time.monotonic() < deadline, f"{len(expected)} answers missing"
                for key, _ in sel.select(1.0):
                    sock = key.fileobj  # type: ignore[assignment]
                    assert isinstance(sock, socket.socket)
                    chunk = sock.recv(65536)
                    assert chunk, "the broker closed one of the held connections"
                    buf = buffers[sock]
                    buf += chunk
                    if len(buf) >= 8 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                        got = struct.unpack_from(">i", buf, 4)[0]
                        assert got == expected.pop(sock), "wrong correlation id"
                        sel.unregister(sock)
                        buf.clear()
        finally:
            sel.close()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


@contextmanager
def swarm(port: int, count: int) -> Iterator[Swarm]:
    s = Swarm(port, count)
    try:
        yield s
    finally:
        s.close()


def _wait_for(predicate: Any, what: str, limit_s: float = IO_LIMIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(120)
def test_a_thousand_concurrent_connections(broker: BrokerProcess, figures: Figures) -> None:
    pid = broker_pid(broker)
    fds_before = open_fds(pid)
    rss_before = rss_mib(pid)
    with swarm(broker.port, CONNECTIONS) as many:
        many.round_trip_all()
        _wait_for(lambda: open_fds(pid) >= fds_before + CONNECTIONS, "the broker's sockets")
        wire.assert_broker_serves(broker.bootstrap)  # a newcomer is served meanwhile
        many.round_trip_all()  # and every held connection still answers
        fds_held = open_fds(pid)
        rss_held = rss_mib(pid)
    _wait_for(lambda: open_fds(pid) <= fds_before + 5, "the broker to let go of the sockets")
    wire.assert_broker_serves(broker.bootstrap)
    figures("connections held", CONNECTIONS)
    figures("broker fds (before, held)", (fds_before, fds_held))
    figures("broker RSS MiB (before, held)", (round(rss_before, 1), round(rss_held, 1)))
    figures("peak RSS MiB", round(peak_rss_mib(pid), 1))


@pytest.mark.timeout(60)
def test_announcing_huge_requests_costs_only_what_is_sent(
    broker: BrokerProcess, figures: Figures
) -> None:
    """30 connections each announce a request of 100 MB (socket.request.max.bytes allows it)
    and send 200 KB of it: the broker holds what arrived, not 3 GB; then they go away."""
    pid = broker_pid(broker)
    rss_before = rss_mib(pid)
    announced = 100 * 1000 * 1000
    socks = [connect(broker.port) for _ in range(30)]
    try:
        for sock in socks:
            sock.sendall(struct.pack(">i", announced) + bytes(200_000))
        wire.assert_broker_serves(broker.bootstrap)  # every byte sent has been read by now
        rss_held = rss_mib(pid)
    finally:
        for sock in socks:
            sock.close()
    wire.assert_broker_serves(broker.bootstrap)
    figures("broker RSS MiB (before, 30 x 100 MB announced)", (round(rss_before), round(rss_held)))
    assert rss_held - rss_before < 80, "the broker allocated for bytes it was never sent"


@pytest.mark.timeout(60)
def test_idle_connections_are_closed(broker_factory: BrokerFactory, figures: Figures) -> None:
    idle_ms = 1_000
    broker = broker_factory({"connections.max.idle.ms": idle_ms})
    silent = [connect(broker.port) for _ in range(20)]
    used_once = [connect(broker.port) for _ in range(20)]
    for sock in used_once:
        round_trip_api_versions(sock)
    busy = connect(broker.port)
    trickler = connect(broker.port)  # sends one frame a byte at a time: still activity
    trickle = api_versions_frame(next(_ids))
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < 3 * idle_ms / 1000:
        round_trip_api_versions(busy)
        if sent < len(trickle) - 1:
            trickler.sendall(trickle[sent : sent + 1])
            sent += 1
        time.sleep(0.2)
    trickler.sendall(trickle[sent:])
    read_frame(trickler)  # answered: it was never closed
    round_trip_api_versions(busy)
    closed = sum(closed_by_peer(s, 5.0) for s in silent + used_once)
    assert closed == len(silent) + len(used_once), f"only {closed} idle connections closed"
    for sock in [*silent, *used_once, busy, trickler]:
        sock.close()
    log = broker.stderr_text()
    figures("idle connections closed", closed)
    figures("idle close log lines", log.count("idle for"))


@pytest.mark.timeout(60)
def test_connection_limits(broker_factory: BrokerFactory, figures: Figures) -> None:
    broker = broker_factory(
        {
            "max.connections": 30,
            "max.connections.per.ip": 10,
            "max.connections.per.ip.overrides": "127.0.0.3:2,127.0.0.4:20",
        }
    )
    held: list[socket.socket] = []

    def open_served(source: str) -> socket.socket:
        sock = connect(broker.port, source=source)
        round_trip_api_versions(sock)
        held.append(sock)
        return sock

    def assert_refused(source: str) -> None:
        sock = connect(broker.port, source=source)
        try:
            try:
                sock.sendall(api_versions_frame(next(_ids)))
            except (BrokenPipeError, ConnectionResetError):
                return
            assert closed_by_peer(sock, 5.0), f"a connection from {source} beyond its limit"
        finally:
            sock.close()

    for _ in range(10):
        open_served("127.0.0.1")
    assert_refused("127.0.0.1")  # max.connections.per.ip
    for _ in range(2):
        open_served("127.0.0.3")
    assert_refused("127.0.0.3")  # its override: 2
    for _ in range(18):
        open_served("127.0.0.4")  # its override: 20, above the default
    assert_refused("127.0.0.4")  # 30 in all: max.connections
    assert_refused("127.0.0.5")
    held.pop(0).close()  # a slot frees up
    deadline = time.monotonic() + IO_LIMIT_S
    while True:
        try:
            open_served("127.0.0.5")
            break
        except (ConnectionError, OSError):
            assert time.monotonic() < deadline, "the freed slot was never given out"
            time.sleep(0.05)
    for sock in held:
        sock.close()
    log = broker.stderr_text()
    refusals = log.count("rejected connection from")
    assert log.count("(max.connections.per.ip)") >= 2 and log.count("(max.connections)") >= 2
    figures("connections served at the limit", 30)
    figures("connections refused", refusals)


@pytest.mark.timeout(120)
def test_clients_that_do_not_read_cannot_grow_broker_memory(
    broker_factory: BrokerFactory, figures: Figures
) -> None:
    idle_ms = 2_000
    broker = broker_factory(
        {
            "connections.max.idle.ms": idle_ms,
            "socket.request.max.bytes": 2 * 1024 * 1024,
            "offsets.topic.num.partitions": 1,
        }
    )
    pid = broker_pid(broker)
    topic = "big"
    end = _fill_topic(broker, topic, megabytes=4)
    rss_before = rss_mib(pid)
    fds_before = open_fds(pid)

    # 1. Each connection parks a long-poll Fetch, then floods 1 MiB requests behind it: the
    #    broker may hold one request's worth of them, not all it can read.
    flooders: list[socket.socket] = []
    flooded = 0
    junk = _framed(wire.produce_request("no-such-topic", 0, bytes(1 << 20), acks=1))
    for _ in range(4):
        sock = connect(broker.port)
        flooders.append(sock)
        sock.sendall(fetch_frame(topic, end, max_wait_ms=3_000, min_bytes=1))
        flooded += _send_until_blocked(sock, junk, limit_bytes=96 << 20)
    rss_flooded = rss_mib(pid)

    # 2. Pipelined Fetch and Metadata requests, never reading the answers.
    fetch = fetch_frame(topic)
    meta = metadata_frame()
    stuck: list[socket.socket] = []
    pipelined = 0
    for n in range(8):
        sock = connect(broker.port)
        stuck.append(sock)
        frame = fetch if n % 2 else meta
        pipelined += _send_until_blocked(sock, frame, limit_bytes=8 << 20) // len(frame)
    # 3. A slow reader: keeps taking a little of its answers.
    slow = connect(broker.port)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    pipelined += _send_until_blocked(slow, fetch, limit_bytes=1 << 20) // len(fetch)
    rss_stuck = rss_mib(pid)

    # Everyone else is served meanwhile; the slow reader stays open past the idle limit.
    good = wire.WireConnection(broker.bootstrap)
    worst = 0.0
    slow_read = 0
    trips = 0
    until = time.monotonic() + 3 * idle_ms / 1000
    while time.monotonic() < until:
        began = time.monotonic()
        good.request(wire.fetch_request(topic, 0, 0, max_bytes=64 * 1024))
        wire.assert_broker_serves(broker.bootstrap)
        worst = max(worst, time.monotonic() - began)
        trips += 1
        slow.settimeout(0.1)
        try:
            slow_read += len(slow.recv(16 * 1024))
        except TimeoutError:
            pass
        time.sleep(0.05)
    good.close()
    rss_peak_phase = rss_mib(pid)
    growth = max(rss_flooded, rss_stuck, rss_peak_phase) - rss_before
    assert growth < 64, f"broker RSS grew by {growth:.0f} MiB for clients that do not read"

    # The clients that stopped reading were closed as idle; the slow reader was not.
    closed = sum(closed_by_peer(s, 10.0) for s in [*flooders, *stuck])
    assert closed == len(flooders) + len(stuck), f"only {closed} stuck clients were closed"
    slow.settimeout(0.5)
    slow_read += len(slow.recv(16 * 1024))  # still open, still being served
    slow.close()
    _wait_for(lambda: open_fds(pid) <= fds_before + 2, "the broker to release the sockets")
    log = broker.stderr_text()
    assert "Exception in callback" not in log and "Traceback" not in log, log[-4000:]

    figures("requests pipelined without reading", pipelined)
    figures("MiB flooded behind a parked request", round(flooded / (1 << 20)))
    figures(
        "broker RSS MiB (before, flooded, stuck, peak)",
        tuple(round(x, 1) for x in (rss_before, rss_flooded, rss_stuck, peak_rss_mib(pid))),
    )
    figures("good client round trips, worst s", (trips, round(worst, 3)))
    figures("slow reader bytes read", slow_read)
    figures("stuck clients closed as idle", closed)


def _send_until_blocked(sock: socket.socket, frame: bytes, *, limit_bytes: int) -> int:
    """Pipeline copies of ``frame`` until the socket stays unwritable for a second (the
    broker stopped reading) or ``limit_bytes`` went out; returns the bytes sent."""
    sock.setblocking(False)
    sent = 0
    blocked_since: float | None = None
    view = memoryview(frame)
    pos = 0
    while sent < limit_bytes:
        try:
            n = sock.send(view[pos:])
        except BlockingIOError:
            now = time.monotonic()
            blocked_since = blocked_since or now
            if now - blocked_since > 1.0:
                break
            time.sleep(0.01)
            continue
        blocked_since = None
        sent += n
        pos = (pos + n) % len(frame)
    sock.setblocking(True)
    return sent


def _fill_topic(broker: BrokerProcess, topic: str, *, megabytes: int) -> int:
    """``megabytes`` of 64 KB batches; returns the log end offset."""
    from helpers.confluent import create_topic

    create_topic(broker.bootstrap, topic, 1)
    with wire.WireConnection(broker.bootstrap) as conn:
        for n in range(megabytes * 16):
            records = [wire.Record(None, bytes([n % 251]) * 16_000, (), i) for i in range(4)]
            batch = wire.build_record_batch(records, base_timestamp=1_700_000_000_000)
            response = wire.produce_partition_response(
                conn.request(wire.produce_request(topic, 0, batch))
            )
            assert response.error_code == wire.NONE, response
    return megabytes * 16 * 4
