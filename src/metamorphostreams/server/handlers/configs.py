"""DescribeConfigs for topics, this broker, its loggers and groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol._generated.describe_configs import DescribeConfigsRequest, DescribeConfigsResponse
from ...protocol.errors import ErrorCode
from ..broker_config_defs import BROKER_CONFIGS
from ..broker_configs import (
    ConfigView,
    describe_broker_configs,
    describe_group_configs,
    describe_loggers,
)
from ..dispatch import RequestContext
from ..topic_configs import describe_topic_configs

if TYPE_CHECKING:
    from ..broker import Broker

# ConfigResource.Type
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
BROKER_LOGGER_RESOURCE = 8
GROUP_RESOURCE = 32
Entry = DescribeConfigsResponse.DescribeConfigsResourceResult
Synonym = DescribeConfigsResponse.DescribeConfigsSynonym
Result = DescribeConfigsResponse.DescribeConfigsResult
Resource = DescribeConfigsRequest.DescribeConfigsResource


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


def static_broker_configs(broker: Broker) -> dict[str, str]:
    """What this broker was started with, under Kafka's keys: server.properties, and what
    `mms broker`'s options set (its id, data dir and listener)."""
    static = {k: v for k, v in broker.config.props.items() if k in BROKER_CONFIGS}
    static["node.id"] = static["broker.id"] = str(broker.broker_id)
    static["log.dirs"] = str(broker.data_dir)
    static["listeners"] = f"PLAINTEXT://{broker.host}:{broker.port}"
    return static


def _entries(
    views: list[ConfigView],
    req_keys: list[str] | None,
    synonyms: bool,
    documentation: str | None,
) -> list[Entry]:
    return [
        Entry(
            name=v.name,
            value=v.value,
            read_only=v.read_only,
            config_source=v.source,
            is_sensitive=v.sensitive,
            synonyms=[Synonym(name=n, value=val, source=s) for n, val, s in v.synonyms]
            if synonyms
            else [],
            config_type=v.config_type,
            documentation=documentation,
        )
        for v in views
        if _wanted(req_keys, v.name)
    ]


def _error(res: Resource, error: ErrorCode, message: str) -> Result:
    return Result(
        error_code=error,
        error_message=message,
        resource_type=res.resource_type,
        resource_name=res.resource_name,
    )


def _describe(ctx: RequestContext, req: DescribeConfigsRequest, res: Resource) -> Result:
    broker = ctx.broker
    rtype, rname, keys = res.resource_type, res.resource_name, res.configuration_keys
    # Kafka's prose is not copied: asked-for documentation is empty (KNOWN_DIFFERENCES.md).
    docs = "" if req.include_documentation else None
    me = str(broker.broker_id)
    if rtype == TOPIC_RESOURCE:
        if rname not in broker.metadata.topics:
            return _error(
                res, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{rname}' does not exist."
            )
        entries = _topic_entries(ctx, rname, keys, req.include_synonyms)
    elif rtype == BROKER_RESOURCE:
        if rname not in ("", me):
            return _error(
                res,
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {me} or empty string, but received {rname}",
            )
        # "" is the cluster-wide default: Kafka lists only dynamic cluster defaults there,
        # and we have none.
        views = describe_broker_configs(static_broker_configs(broker)) if rname else []
        entries = _entries(views, keys, req.include_synonyms, docs)
    elif rtype == BROKER_LOGGER_RESOURCE:
        if not rname:
            return _error(res, ErrorCode.INVALID_REQUEST, "Broker id must not be empty")
        if rname != me:
            return _error(
                res,
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {me} but received {rname}",
            )
        entries = _entries(describe_loggers(), keys, False, "")  # Kafka: never documented
    elif rtype == GROUP_RESOURCE:
        if not rname:
            return _error(res, ErrorCode.INVALID_REQUEST, "Group name must not be empty")
        views = describe_group_configs(static_broker_configs(broker))
        entries = _entries(views, keys, req.include_synonyms, docs)
    else:
        return _error(res, ErrorCode.INVALID_REQUEST, f"Unsupported resource type {rtype}")
    return Result(
        error_code=ErrorCode.NONE,
        error_message="",
        resource_type=rtype,
        resource_name=rname,
        configs=entries,
    )


async def handle_describe_configs(
    ctx: RequestContext, req: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    return DescribeConfigsResponse(results=[_describe(ctx, req, res) for res in req.resources])
