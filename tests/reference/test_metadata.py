"""Metadata, raw: existing, missing and auto-created topics, at old and new versions.

Kafka creates a topic asked for by Metadata (allow_auto_topic_creation, or any v0-v3
request) through its controller, so its first answer says UNKNOWN_TOPIC_OR_PARTITION (4.3;
older brokers said LEADER_NOT_AVAILABLE) with no partitions, while ours, created in place,
says NONE with the partitions (see KNOWN_DIFFERENCES.md). Those tests check that the first
answer is one of the three, then compare the settled answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from .differential import (
    INVALID_TOPIC_EXCEPTION,
    LEADER_NOT_AVAILABLE,
    NONE,
    UNKNOWN_TOPIC_OR_PARTITION,
    Target,
    Targets,
    create_topic,
    metadata_request,
    unique,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

FIRST_AUTO_CREATE_ANSWERS = {NONE, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION}
NO_OPERATIONS = -(2**31)  # authorized operations not asked for


def _topics(response: Any) -> list[dict[str, Any]]:
    return sorted((t.to_dict() for t in response.topics), key=lambda t: t["name"] or "")


def _cluster(response: Any) -> dict[str, Any]:
    answer = response.to_dict()
    answer.pop("topics")
    return answer


@pytest.mark.parametrize("version", [0, 1, 4, 9, 12, 13])
def test_existing_topic(targets: Targets, version: int) -> None:
    topic = unique("md-existing")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 3)
        response = t.request(metadata_request([topic], version=version))
        return {"cluster": _cluster(response), "topics": _topics(response)}

    answer = targets.compare(scenario, f"Metadata v{version} for a topic with 3 partitions")
    (topic_answer,) = answer["topics"]
    assert topic_answer["error_code"] == NONE
    assert len(topic_answer["partitions"]) == 3


def test_missing_topic_without_auto_create(targets: Targets) -> None:
    missing = unique("md-missing")

    def scenario(t: Target) -> dict[str, Any]:
        first = t.request(metadata_request([missing], auto_create=False))
        second = t.request(metadata_request([missing], auto_create=False))
        return {"first": _topics(first), "second": _topics(second)}

    answer = targets.compare(scenario, "Metadata for a missing topic, no auto-creation")
    assert answer["first"][0]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION


def test_empty_and_all_topics(targets: Targets) -> None:
    topic = unique("md-all")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        none_asked = t.request(metadata_request([]))
        every = t.request(metadata_request(None))
        ours = [x for x in _topics(every) if x["name"] == topic]
        return {"asked for none": _topics(none_asked), "asked for all, ours": ours}

    targets.compare(scenario, "Metadata for no topic and for all topics")


@pytest.mark.parametrize("version", [1, 4, 12, 13])
def test_auto_created_topic(targets: Targets, version: int) -> None:
    topic = unique(f"md-auto-v{version}")

    def scenario(t: Target) -> dict[str, Any]:
        first = _topics(t.request(metadata_request([topic], version=version, auto_create=True)))
        (first_topic,) = first
        assert first_topic["error_code"] in FIRST_AUTO_CREATE_ANSWERS, f"{t}: {first_topic}"

        settled: list[dict[str, Any]] = []

        def created() -> bool:
            request = metadata_request([topic], version=version, auto_create=False)
            settled[:] = _topics(t.request(request))
            return settled[0]["error_code"] == NONE and all(
                p["leader_id"] >= 0 for p in settled[0]["partitions"]
            )

        wait_until(created, f"{t}: auto-created topic {topic} to settle")
        return {"settled": settled}

    answer = targets.compare(scenario, f"Metadata v{version} auto-creating a topic")
    (settled,) = answer["settled"]
    assert len(settled["partitions"]) == 1  # num.partitions defaults to 1


def test_auto_create_with_an_invalid_name(targets: Targets) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        return {
            name: _topics(t.request(metadata_request([name], auto_create=True)))
            for name in ("bad name!", "a" * 250, "..")
        }

    answer = targets.compare(scenario, "Metadata auto-creating topics with invalid names")
    assert answer["bad name!"][0]["error_code"] == INVALID_TOPIC_EXCEPTION
