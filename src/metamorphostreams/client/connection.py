"""One TCP connection to one broker: framing, correlation ids, pipelining, version negotiation.

Requests are written as soon as they are made and may be many in flight; Kafka answers a
connection's requests in order, and each response is matched to its request by correlation id.
On connect the client sends ApiVersions (v3, falling back to the version the broker names, as
KIP-511 describes) and afterwards speaks, per API, min(our max, broker max).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, cast

from ..protocol._generated import API_NAMES, RESPONSE_CLASSES
from ..protocol._generated.api_versions import ApiVersionsRequest, ApiVersionsResponse
from ..protocol._primitives import Reader, part_bytes
from ..protocol.errors import DecodeError, ErrorCode
from ..protocol.frames import SIZE_PREFIX, FrameReader
from ..protocol.headers import (
    RequestHeader,
    ResponseHeader,
    request_header_version,
    response_header_version,
)
from ._versions import API_VERSIONS_FIRST_TRY, CLIENT_VERSIONS
from .errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, UnsupportedVersionError

log = logging.getLogger("metamorphostreams.client")

API_VERSIONS_KEY = 18
SOFTWARE_NAME = "metamorphostreams"
SOFTWARE_VERSION = "0.1.0"


@dataclass(slots=True)
class _Pending:
    api_key: int
    version: int
    future: asyncio.Future[Any]


class BrokerConnection(asyncio.BufferedProtocol):
    """A connection to one broker. Loop-owned; many tasks may send on it concurrently."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        node_id: int = -1,
        max_frame_size: int = 100 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.node_id = node_id
        self.client_id = client_id
        self.api_versions: dict[int, tuple[int, int]] = {}
        self._reader = FrameReader(max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._closed_exc: KafkaError | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<BrokerConnection node {self.node_id} {self.host}:{self.port}>"

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        node_id: int = -1,
        timeout_s: float = 10.0,
        max_frame_size: int = 100 * 1024 * 1024,
    ) -> BrokerConnection:
        """Connect and negotiate versions; KafkaConnectionError if the broker is unreachable."""
        loop = asyncio.get_running_loop()
        conn = cls(host, port, client_id=client_id, node_id=node_id, max_frame_size=max_frame_size)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            reason = "timed out"
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise KafkaConnectionError(
                f"cannot connect to broker {host}:{port}: {reason}"
            ) from None
        try:
            await conn._negotiate(timeout_s)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _negotiate(self, timeout_s: float) -> None:
        request = ApiVersionsRequest(
            client_software_name=SOFTWARE_NAME, client_software_version=SOFTWARE_VERSION
        )
        version = API_VERSIONS_FIRST_TRY
        for _ in range(3):
            response: ApiVersionsResponse = await self.request(request, version, timeout_s)
            ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys or []}
            if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
                lo, hi = ranges.get(API_VERSIONS_KEY, (0, 0))
                version = max(lo, min(hi, version - 1))
                continue
            if response.error_code != ErrorCode.NONE:
                raise KafkaError("ApiVersions failed", code=response.error_code)
            self.api_versions = ranges
            return
        raise UnsupportedVersionError(f"broker {self.host}:{self.port} rejects every ApiVersions")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def is_closed(self) -> bool:
        return self.closed.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- versions ----------------------------------------------------------------------

    def supports(self, api_key: int) -> bool:
        try:
            self.version_for(api_key)
        except UnsupportedVersionError:
            return False
        return True

    def version_for(self, api_key: int, max_version: int | None = None) -> int:
        """min(our max, broker max); UnsupportedVersionError if the ranges do not meet."""
        ours = CLIENT_VERSIONS.get(api_key)
        theirs = self.api_versions.get(api_key)
        name = API_NAMES.get(api_key, str(api_key))
        if ours is None or theirs is None:
            raise UnsupportedVersionError(
                f"broker {self.host}:{self.port} does not support {name} (not advertised)"
            )
        hi = min(ours[1], theirs[1], max_version if max_version is not None else ours[1])
        lo = max(ours[0], theirs[0])
        if hi < lo:
            raise UnsupportedVersionError(
                f"broker {self.host}:{self.port} supports {name} v{theirs[0]}-{theirs[1]}, "
                f"we need v{ours[0]}-{ours[1]}"
            )
        return hi

    # -- requests ----------------------------------------------------------------------

    async def request(
        self, request: Any, version: int | None = None, timeout_s: float | None = 30.0
    ) -> Any:
        """Send ``request`` and await its response (decoded at the same version)."""
        future = await self._send(request, version, expect_response=True)
        assert future is not None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            # Kafka clients drop a connection whose request timed out: later answers would
            # arrive for requests the caller has given up on.
            self._fail(KafkaTimeoutError(f"request to {self.host}:{self.port} timed out"))
            self.close()
            raise KafkaTimeoutError(
                f"{API_NAMES.get(request.API_KEY)} to broker {self.host}:{self.port} "
                f"timed out after {timeout_s:.1f}s"
            ) from None

    async def send_no_response(self, request: Any, version: int | None = None) -> None:
        """Write a request that gets no response (Produce with acks=0)."""
        await self._send(request, version, expect_response=False)

    async def _send(
        self, request: Any, version: int | None, *, expect_response: bool
    ) -> asyncio.Future[Any] | None:
        if self._closed_exc is not None or self._transport is None:
            raise self._closed_exc or KafkaConnectionError(f"not connected to {self}")
        api_key = request.API_KEY
        if version is None:
            version = self.version_for(api_key)
        correlation_id = next(self._ids) & 0x7FFFFFFF
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id=self.client_id,
        ).to_bytes(request_header_version(api_key, version))
        parts = [header, *(part_bytes(p) for p in request.encode(version))]
        size = sum(len(p) for p in parts)
        future: asyncio.Future[Any] | None = None
        if expect_response:
            future = asyncio.get_running_loop().create_future()
            self._pending[correlation_id] = _Pending(api_key, version, future)
        self._transport.writelines([SIZE_PREFIX.pack(size), *parts])
        if not self._can_write.is_set():
            await self._can_write.wait()
        return future

    # -- asyncio.BufferedProtocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            for frame in self._reader.buffer_updated(nbytes):
                self._dispatch(frame)
        except (DecodeError, KafkaError) as exc:
            log.warning("bad response from %s: %s", self, exc)
            self._fail(KafkaConnectionError(f"bad response from {self.host}:{self.port}: {exc}"))
            self.close()

    def _dispatch(self, frame: bytearray) -> None:
        if len(frame) < 4:
            raise DecodeError("response shorter than its correlation id")
        correlation_id = int.from_bytes(frame[:4], "big", signed=True)
        pending = self._pending.pop(correlation_id, None)
        if pending is None:
            raise KafkaConnectionError(f"response for unknown correlation id {correlation_id}")
        reader = Reader(frame)
        ResponseHeader.read(reader, response_header_version(pending.api_key, pending.version))
        try:
            response = RESPONSE_CLASSES[pending.api_key].read(reader, pending.version)
        except DecodeError as exc:
            if not pending.future.done():
                pending.future.set_exception(
                    KafkaConnectionError(f"cannot decode {API_NAMES[pending.api_key]}: {exc}")
                )
            raise
        if not pending.future.done():
            pending.future.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(KafkaConnectionError(f"connection to {self.host}:{self.port} closed{reason}"))
        self._can_write.set()
        self.closed.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def _fail(self, exc: KafkaError) -> None:
        if self._closed_exc is None:
            self._closed_exc = exc
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)
                # Nobody may await a future whose request was abandoned; keep asyncio quiet.
                with contextlib.suppress(Exception):
                    p.future.exception()
