"""Request dispatch: header checks, version checks, routing to handler modules, encoding.

Kafka's answers to bad requests, which we match:
- a frame too short for a header, an unknown API key, or a known API at a version this
  broker does not serve: the connection is closed (Kafka's SocketServer does the same);
- ApiVersions at a version above ours: an ApiVersions v0 response with UNSUPPORTED_VERSION
  and our ApiVersions range (KIP-511), so the client can retry at a version we know;
- a body that does not decode: the connection is closed (InvalidRequestException).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol._generated import API_NAMES, REQUEST_CLASSES
from ..protocol._generated.api_versions import ApiVersionsResponse
from ..protocol._primitives import Reader, Writer
from ..protocol.api_versions import SERVED
from ..protocol.errors import DecodeError, ErrorCode
from ..protocol.headers import (
    API_VERSIONS_KEY,
    RequestHeader,
    encode_response_header,
    peek_request_ids,
    request_header_version,
    response_header_version,
)
from .connection import CloseConnection, Connection

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("metamorphostreams.server")


@dataclass(slots=True)
class RequestContext:
    """What a handler knows about the request it serves."""

    broker: Broker
    connection: Connection
    header: RequestHeader
    api_version: int


# A handler takes the context and the decoded request and returns the response message,
# or None when no response is sent (Produce with acks=0).
HandlerFn = Callable[[RequestContext, Any], Awaitable[Any]]

_CORRELATION_ID = struct.Struct(">i")
_NO_TAGGED_FIELDS = b"\0"  # response header v1 ends with an empty tagged-field section


def _served_versions() -> list[tuple[int, int]]:
    return [
        (api_key, version)
        for api_key, served in SERVED.items()
        for version in range(served.served_min, served.max_version + 1)
    ]


def _response_header_tails() -> dict[tuple[int, int], bytes]:
    """What follows the correlation id in the response header of each served (key, version)."""
    return {
        (key, version): _NO_TAGGED_FIELDS if response_header_version(key, version) else b""
        for key, version in _served_versions()
    }


class Dispatcher:
    """Routes decoded requests to handlers. Shared by all connections of a broker."""

    def __init__(self, broker: Broker, handlers: dict[int, HandlerFn]) -> None:
        self.broker = broker
        self.handlers = handlers
        missing = set(SERVED) - set(handlers)
        if missing:
            raise AssertionError(f"served APIs without a handler: {sorted(missing)}")
        # Per served (key, version), computed once rather than per request.
        self._header_tails = _response_header_tails()
        self._header_versions = {kv: request_header_version(*kv) for kv in _served_versions()}

    async def handle(self, conn: Connection, frame: bytes | bytearray) -> list[Any] | None:
        try:
            api_key, api_version, correlation_id = peek_request_ids(frame)
        except DecodeError as e:
            raise CloseConnection(str(e)) from None
        served = SERVED.get(api_key)
        if api_key == API_VERSIONS_KEY and (served is None or api_version > served.max_version):
            return self._unsupported_api_versions(correlation_id)
        if served is None or not served.serves(api_version):
            name = API_NAMES.get(api_key, "unknown")
            raise CloseConnection(
                f"request api key {api_key} ({name}) version {api_version} is not supported"
            )
        reader = Reader(memoryview(frame))
        try:
            header = RequestHeader.read(reader, self._header_versions[api_key, api_version])
            request = REQUEST_CLASSES[api_key].read(reader, api_version)
        except DecodeError as e:
            raise CloseConnection(f"malformed {API_NAMES[api_key]} v{api_version}: {e}") from None
        ctx = RequestContext(self.broker, conn, header, api_version)
        response = await self.handlers[api_key](ctx, request)
        if response is None:
            return None
        # The header and the body's leading bytes are one buffer: the connection writes each
        # buffer part as it is.
        w = Writer()
        w.buf += _CORRELATION_ID.pack(correlation_id)
        w.buf += self._header_tails[api_key, api_version]
        response.write(w, api_version)
        return w.finish()

    @staticmethod
    def _unsupported_api_versions(correlation_id: int) -> list[Any]:
        served = SERVED[API_VERSIONS_KEY]
        response = ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=[
                ApiVersionsResponse.ApiVersion(
                    api_key=API_VERSIONS_KEY,
                    min_version=served.advertised_min,
                    max_version=served.max_version,
                )
            ],
        )
        return [encode_response_header(API_VERSIONS_KEY, 0, correlation_id), *response.encode(0)]
