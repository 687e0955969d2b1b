"""ApiVersions: the version ranges this broker advertises."""

from __future__ import annotations

import re

from ...protocol._generated.api_versions import ApiVersionsRequest, ApiVersionsResponse
from ...protocol.api_versions import SERVED
from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext

# Kafka's ApiVersionsRequest.isValid pattern for client software name and version (v3+).
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")

_API_KEYS = [
    ApiVersionsResponse.ApiVersion(
        api_key=r.api_key, min_version=r.advertised_min, max_version=r.max_version
    )
    for r in sorted(SERVED.values(), key=lambda r: r.api_key)
]


async def handle_api_versions(ctx: RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse:
    if ctx.api_version >= 3 and not (
        _SOFTWARE.match(req.client_software_name or "")
        and _SOFTWARE.match(req.client_software_version or "")
    ):
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=[])
    return ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=list(_API_KEYS))
