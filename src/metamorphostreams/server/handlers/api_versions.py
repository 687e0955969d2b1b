"""ApiVersions: the version ranges and feature levels this broker advertises."""

from __future__ import annotations

import re

from ...protocol._generated.api_versions import ApiVersionsRequest, ApiVersionsResponse
from ...protocol.api_versions import SERVED
from ...protocol.errors import ErrorCode
from ...protocol.features import FINALIZED_FEATURES_EPOCH, finalized_features, supported_features
from ..dispatch import RequestContext

# Kafka's ApiVersionsRequest.isValid pattern for client software name and version (v3+).
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")
FEATURES_VERSION = 3  # v3+: supported and finalized features (KIP-584)

_API_KEYS = [
    ApiVersionsResponse.ApiVersion(
        api_key=r.api_key, min_version=r.advertised_min, max_version=r.max_version
    )
    for r in sorted(SERVED.values(), key=lambda r: r.api_key)
]


def _with_features(response: ApiVersionsResponse, api_version: int) -> ApiVersionsResponse:
    response.supported_features = [
        ApiVersionsResponse.SupportedFeatureKey(
            name=f.name, min_version=f.supported_min, max_version=f.supported_max
        )
        for f in supported_features(api_version)
    ]
    response.finalized_features_epoch = FINALIZED_FEATURES_EPOCH
    response.finalized_features = [
        ApiVersionsResponse.FinalizedFeatureKey(
            name=f.name, min_version_level=f.finalized, max_version_level=f.finalized
        )
        for f in finalized_features()
    ]
    return response


async def handle_api_versions(ctx: RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse:
    if ctx.api_version >= 3 and not (
        _SOFTWARE.match(req.client_software_name or "")
        and _SOFTWARE.match(req.client_software_version or "")
    ):
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=[])
    response = ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=list(_API_KEYS))
    if ctx.api_version >= FEATURES_VERSION:
        _with_features(response, ctx.api_version)
    return response
