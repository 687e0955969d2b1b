"""DescribeConfigs for topics, raw: the set of names, values, sources, types, errors."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.protocol.admin import DescribeConfigsRequest

from .differential import (
    UNKNOWN_TOPIC_OR_PARTITION,
    VOLATILE,
    Target,
    Targets,
    by_name,
    compare_answers,
    create_topic,
    unique,
)

pytestmark = pytest.mark.timeout(120)

TOPIC = 2  # ConfigResource.Type.TOPIC
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5

# The settings every Kafka user touches: their default values must be Kafka's.
COMMON = (
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
)

# Known differences (KNOWN_DIFFERENCES.md): Kafka's KRaft controller stores a cluster-wide
# min.insync.replicas, so Kafka reports it from DYNAMIC_DEFAULT_BROKER_CONFIG (same value).
SOURCE_DIFFERS = frozenset({"min.insync.replicas"})
# A bug of ours, checked on its own by test_message_timestamp_after_max_ms_default.
VALUE_BUG = frozenset({"message.timestamp.after.max.ms"})
# Documentation that was not asked for is checked on its own by test_documentation_not_asked.
NO_DOCUMENTATION = VOLATILE | {"documentation"}


def _describe(
    t: Target,
    topic: str,
    keys: list[str] | None = None,
    *,
    synonyms: bool = False,
    version: int = 4,
) -> dict[str, Any]:
    resource = DescribeConfigsRequest.DescribeConfigsResource
    request = DescribeConfigsRequest[version](
        resources=[resource(resource_type=TOPIC, resource_name=topic, configuration_keys=keys)],
        include_synonyms=synonyms,
    )
    if version >= 3:
        request.include_documentation = False
    (result,) = t.request(request).results
    answer: dict[str, Any] = result.to_dict()
    answer["configs"] = by_name(answer["configs"])
    return answer


def test_topic_config_names_values_and_sources(targets: Targets) -> None:
    topic = unique("described")
    overrides = {"retention.ms": "1234", "segment.bytes": "1048576", "cleanup.policy": "delete"}

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1, overrides)
        return _describe(t, topic)

    kafka, ours = targets.run(scenario)
    assert kafka["error_code"] == ours["error_code"] == 0, (kafka, ours)
    assert sorted(ours["configs"]) == sorted(kafka["configs"]), (
        f"only Kafka: {sorted(set(kafka['configs']) - set(ours['configs']))}, "
        f"only ours: {sorted(set(ours['configs']) - set(kafka['configs']))}"
    )
    for answer in (kafka, ours):
        for name in VALUE_BUG:
            answer["configs"].pop(name)
        for name in SOURCE_DIFFERS:
            answer["configs"][name].pop("config_source")
    compare_answers(kafka, ours, "DescribeConfigs v4 for a topic", drop=NO_DOCUMENTATION)
    for name in COMMON:
        assert name in kafka["configs"], f"Kafka no longer has topic config {name}"
    described = kafka["configs"]
    assert described["retention.ms"]["config_source"] == DYNAMIC_TOPIC_CONFIG
    assert described["segment.ms"]["config_source"] == DEFAULT_CONFIG


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_versions_and_selected_keys(targets: Targets, version: int) -> None:
    topic = unique("described-keys")
    missing = unique("not-there")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1, {"retention.bytes": "100000"})
        return {
            "selected keys": _describe(
                t, topic, ["retention.bytes", "segment.ms", "no.such.key"], version=version
            ),
            "missing topic": _describe(t, missing, version=version),
        }

    answer = targets.compare(
        scenario, f"DescribeConfigs v{version} with selected keys", drop=NO_DOCUMENTATION
    )
    assert answer["missing topic"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION


def test_message_timestamp_after_max_ms_default(targets: Targets) -> None:
    topic = unique("ts-after")

    def scenario(t: Target) -> Any:
        create_topic(t, topic, 1)
        return _describe(t, topic, ["message.timestamp.after.max.ms"])

    targets.compare(
        scenario, "the default of message.timestamp.after.max.ms", drop=NO_DOCUMENTATION
    )


def test_documentation_not_asked(targets: Targets) -> None:
    topic = unique("no-docs")

    def scenario(t: Target) -> Any:
        create_topic(t, topic, 1)
        answer = _describe(t, topic, ["retention.ms", "cleanup.policy"])
        return {n: c["documentation"] for n, c in answer["configs"].items()}

    targets.compare(scenario, "DescribeConfigs documentation when not asked for")


def test_synonyms(targets: Targets) -> None:
    topic = unique("synonyms")

    def scenario(t: Target) -> Any:
        create_topic(t, topic, 1, {"retention.ms": "1234"})
        keys = ["retention.ms", "retention.bytes", "segment.ms", "cleanup.policy"]
        answer = _describe(t, topic, keys, synonyms=True)
        return {n: c["synonyms"] for n, c in answer["configs"].items()}

    targets.compare(scenario, "DescribeConfigs synonyms")
