"""A minimal asyncio Kafka client on our own codec, for in-process broker tests."""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

from metamorphostreams.protocol._generated import RESPONSE_CLASSES
from metamorphostreams.protocol._generated.headers import RequestHeader, ResponseHeader
from metamorphostreams.protocol._primitives import Reader
from metamorphostreams.protocol.headers import request_header_version, response_header_version

_ids = itertools.count(1)


class WireClient:
    """One connection; one request in flight at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> WireClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass

    def frame(self, request: Any, version: int, correlation_id: int) -> bytes:
        api_key = request.API_KEY
        header = RequestHeader(
            request_api_key=api_key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id="ourwire",
        ).to_bytes(request_header_version(api_key, version))
        body = header + request.to_bytes(version)
        return struct.pack(">i", len(body)) + body

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 10) -> bytes:
        size = struct.unpack(">i", await asyncio.wait_for(self.reader.readexactly(4), timeout))[0]
        return await asyncio.wait_for(self.reader.readexactly(size), timeout)

    async def request(self, request: Any, version: int, timeout: float = 10) -> Any:
        cid = next(_ids)
        await self.send_raw(self.frame(request, version, cid))
        data = await self.read_frame(timeout)
        api_key = request.API_KEY
        r = Reader(data)
        header = ResponseHeader.read(r, response_header_version(api_key, version))
        assert header.correlation_id == cid
        return RESPONSE_CLASSES[api_key].read(r, version)
