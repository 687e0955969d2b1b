"""Request and response headers, and which header version goes with which API version.

Request header v2 (with a tagged-field section) goes with flexible API versions, v1 otherwise;
response header v1 goes with flexible versions, v0 otherwise, except ApiVersions responses,
which always use v0 so a client can read the answer to a version the broker does not know
(KIP-511).
"""

from __future__ import annotations

import struct

from ._generated import REQUEST_CLASSES
from ._generated.headers import RequestHeader, ResponseHeader
from ._primitives import Reader
from .errors import DecodeError

__all__ = [
    "API_VERSIONS_KEY",
    "RequestHeader",
    "ResponseHeader",
    "decode_request_header",
    "encode_response_header",
    "request_header_version",
    "response_header_version",
]

API_VERSIONS_KEY = 18
_PREFIX = struct.Struct(">hhi")  # api key, api version, correlation id


def request_header_version(api_key: int, api_version: int) -> int:
    cls = REQUEST_CLASSES.get(api_key)
    if cls is not None and cls.is_flexible(api_version):
        return 2
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == API_VERSIONS_KEY:
        return 0
    cls = REQUEST_CLASSES.get(api_key)
    return 1 if cls is not None and cls.is_flexible(api_version) else 0


def peek_request_ids(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(api key, api version, correlation id) of a request frame, or DecodeError if too short."""
    if len(frame) < _PREFIX.size:
        raise DecodeError("request shorter than a header")
    api_key, api_version, correlation_id = _PREFIX.unpack_from(frame, 0)
    return int(api_key), int(api_version), int(correlation_id)


def decode_request_header(frame: memoryview) -> tuple[RequestHeader, Reader]:
    """Decode the header of a request frame; the returned reader is positioned on the body.

    An ApiVersions request at a version newer than we know is still read with header v2 if
    its version is above the first flexible one (clients send v3+ headers then), so that the
    broker can answer it with UNSUPPORTED_VERSION and its range.
    """
    api_key, api_version, _ = peek_request_ids(frame)
    reader = Reader(frame)
    header = RequestHeader.read(reader, request_header_version(api_key, api_version))
    return header, reader


def encode_response_header(api_key: int, api_version: int, correlation_id: int) -> bytes:
    return ResponseHeader(correlation_id=correlation_id).to_bytes(
        response_header_version(api_key, api_version)
    )
