"""Header versions, including the ApiVersions response-header rule (KIP-511)."""

from __future__ import annotations

from metamorphostreams.protocol._generated import REQUEST_CLASSES
from metamorphostreams.protocol.api_versions import SERVED
from metamorphostreams.protocol.headers import (
    RequestHeader,
    decode_request_header,
    request_header_version,
    response_header_version,
)


def test_header_versions_follow_flexible_versions() -> None:
    assert request_header_version(0, 8) == 1 and request_header_version(0, 9) == 2
    assert response_header_version(0, 8) == 0 and response_header_version(0, 9) == 1
    assert request_header_version(3, 9) == 2 and response_header_version(3, 9) == 1
    # ApiVersions: flexible requests from v3, but responses always use header v0
    assert request_header_version(18, 3) == 2
    assert all(response_header_version(18, v) == 0 for v in range(5))


def test_request_header_round_trip_and_body_position() -> None:
    header = RequestHeader(
        request_api_key=3, request_api_version=12, correlation_id=42, client_id="c"
    )
    frame = header.to_bytes(2) + b"BODY"
    decoded, reader = decode_request_header(memoryview(frame))
    assert decoded == header
    assert bytes(reader.buf[reader.pos :]) == b"BODY"
    null_client = RequestHeader(request_api_key=0, request_api_version=3, client_id=None)
    assert decode_request_header(memoryview(null_client.to_bytes(1)))[0].client_id is None


def test_served_ranges_fit_the_schemas() -> None:
    for api_key, served in SERVED.items():
        lo, hi = REQUEST_CLASSES[api_key].VALID_VERSIONS
        assert lo <= served.served_min <= served.max_version <= hi
        assert served.advertised_min <= served.served_min
