"""DescribeConfigs for topics and this broker."""

from __future__ import annotations

from ...protocol._generated.describe_configs import DescribeConfigsRequest, DescribeConfigsResponse
from ...protocol.errors import ErrorCode
from ..config import INT_MAX, KEYS
from ..dispatch import RequestContext
from ..topic_configs import (
    BOOLEAN,
    DEFAULT_CONFIG,
    INT,
    LONG,
    STATIC_BROKER_CONFIG,
    STRING,
    describe_topic_configs,
)

TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
Entry = DescribeConfigsResponse.DescribeConfigsResourceResult
Synonym = DescribeConfigsResponse.DescribeConfigsSynonym
Result = DescribeConfigsResponse.DescribeConfigsResult


def _wanted(keys: list[str] | None, name: str) -> bool:
    return keys is None or name in keys


def _topic_entries(
    ctx: RequestContext, name: str, req_keys: list[str] | None, synonyms: bool
) -> list[Entry]:
    info = ctx.broker.metadata.topics[name]
    entries = []
    for config_name, value, source, ctype, syns in describe_topic_configs(
        info.configs, ctx.broker.config.props
    ):
        if not _wanted(req_keys, config_name):
            continue
        entries.append(
            Entry(
                name=config_name,
                value=value,
                read_only=False,
                config_source=source,
                is_sensitive=False,
                synonyms=[Synonym(name=n, value=v, source=s) for n, v, s in syns]
                if synonyms
                else [],
                config_type=ctype,
                documentation=None,
            )
        )
    return entries


def _broker_entries(ctx: RequestContext, req_keys: list[str] | None) -> list[Entry]:
    config = ctx.broker.config
    entries = []
    for name in sorted(KEYS):
        if not _wanted(req_keys, name):
            continue
        value = config[name]
        if isinstance(value, bool):
            ctype, text = BOOLEAN, str(value).lower()
        elif isinstance(value, int):
            ctype = LONG if name.endswith(".ms") or abs(value) > INT_MAX else INT
            text = str(value)
        else:
            ctype, text = STRING, str(value)
        source = STATIC_BROKER_CONFIG if name in config.props else DEFAULT_CONFIG
        entries.append(
            Entry(
                name=name,
                value=text,
                read_only=True,
                config_source=source,
                is_sensitive=False,
                config_type=ctype,
                documentation=None,
            )
        )
    return entries


async def handle_describe_configs(
    ctx: RequestContext, req: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    results = []
    for res in req.resources:
        keys = res.configuration_keys
        rtype, rname = res.resource_type, res.resource_name
        if rtype == TOPIC_RESOURCE:
            if rname not in ctx.broker.metadata.topics:
                results.append(
                    Result(
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        error_message=f"The topic '{rname}' does not exist.",
                        resource_type=rtype,
                        resource_name=rname,
                    )
                )
                continue
            entries = _topic_entries(ctx, rname, keys, req.include_synonyms)
        elif rtype == BROKER_RESOURCE:
            if rname not in ("", str(ctx.broker.broker_id)):
                results.append(
                    Result(
                        error_code=ErrorCode.INVALID_REQUEST,
                        error_message=f"Unexpected broker id, expected {ctx.broker.broker_id} "
                        f"or empty string, but received {rname}",
                        resource_type=rtype,
                        resource_name=rname,
                    )
                )
                continue
            entries = _broker_entries(ctx, keys)
        else:
            results.append(
                Result(
                    error_code=ErrorCode.INVALID_REQUEST,
                    error_message=f"Unsupported resource type {rtype}",
                    resource_type=rtype,
                    resource_name=rname,
                )
            )
            continue
        results.append(
            Result(
                error_code=ErrorCode.NONE, resource_type=rtype, resource_name=rname, configs=entries
            )
        )
    return DescribeConfigsResponse(results=results)
