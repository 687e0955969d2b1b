"""Metadata by topic id (KIP-516): v12+ look topics up by id, v10-11 refuse ids and null names.

What Kafka 4.3 answers, and these tests hold us to:
- v12+, any topic with a non-zero id: the topics are looked up by id and the names in the
  request are ignored (`kafka-topics --describe --topic-id` sends "" and the id); an unknown
  id answers UNKNOWN_TOPIC_ID with a null name, before the topics found.
- v10-11 with an id or a null name: INVALID_REQUEST for every topic asked, no brokers, no
  cluster id, controller -1 (MetadataRequest.getErrorResponse); a null name is echoed as "".
- v12+, a null name and no id: UNKNOWN_SERVER_ERROR in the same shape (Kafka fails on it);
  v13 (KIP-1102) also carries it as the top-level error code.
- "" with no id: INVALID_TOPIC_EXCEPTION, at every version.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka.protocol.metadata import MetadataRequest

from .differential import (
    INVALID_REQUEST,
    INVALID_TOPIC_EXCEPTION,
    NONE,
    UNKNOWN_TOPIC_ID,
    Target,
    Targets,
    create_topic,
    metadata_request,
    unique,
)

pytestmark = pytest.mark.timeout(120)

ZERO = uuid.UUID(int=0)
UNKNOWN_SERVER_ERROR = -1

# (name, id) per topic asked; "ID" stands for the created topic's id, "UNKNOWN" for an id
# no topic has, NAME for the created topic's name.
ID, UNKNOWN, NAME = "ID", "UNKNOWN", "NAME"
CASES: dict[str, list[tuple[Any, Any]]] = {
    "empty name and id": [("", ID)],
    "null name and id": [(None, ID)],
    "null name and unknown id": [(None, UNKNOWN)],
    "empty name and unknown id": [("", UNKNOWN)],
    "name and id": [(NAME, ID)],
    "another name and id": [("not-this-one", ID)],
    "by name and by unknown id": [(NAME, ZERO), ("", UNKNOWN)],
    "by id and by unknown id": [("", ID), (None, UNKNOWN)],
    "same id twice": [("", ID), (None, ID)],
    "null name, no id": [(None, ZERO)],
    "null name and a name, no ids": [(None, ZERO), (NAME, ZERO)],
    "empty name, no id": [("", ZERO)],
}


def _request(version: int, topics: list[tuple[Any, uuid.UUID]]) -> Any:
    request = MetadataRequest[version](
        topics=[MetadataRequest.MetadataRequestTopic(name=n, topic_id=i) for n, i in topics]
    )
    request.allow_auto_topic_creation = False
    if version <= 10:
        request.include_cluster_authorized_operations = False
    request.include_topic_authorized_operations = False
    return request


def _scenario(
    version: int, case: str, topic: str, created: set[str]
) -> Callable[[Target], dict[str, Any]]:
    unknown = uuid.uuid4()

    def scenario(t: Target) -> dict[str, Any]:
        if t.name not in created:
            create_topic(t, topic, 2)
            created.add(t.name)
        (described,) = t.request(metadata_request([topic])).topics
        ids = {ID: described.topic_id, UNKNOWN: unknown}
        asked = [
            (topic if n == NAME else n, ids.get(i, i) if isinstance(i, str) else i)
            for n, i in CASES[case]
        ]
        answer: dict[str, Any] = t.request(_request(version, asked)).to_dict()
        # topic ids are random per cluster: say which one each answer carries
        for answered in answer["topics"]:
            tid = answered.pop("topic_id")
            answered["which id"] = {
                str(described.topic_id): "the topic's",
                str(unknown): "the unknown one",
            }.get(str(tid), str(tid))
        return answer

    return scenario


@pytest.mark.parametrize("version", [10, 11, 12, 13])
def test_topics_by_id(targets: Targets, version: int) -> None:
    topic = unique(f"md-by-id-v{version}")
    created: set[str] = set()
    answers = targets.compare_each(
        {case: _scenario(version, case, topic, created) for case in CASES},
        f"Metadata v{version} naming topics by id",
    )
    if version >= 12:
        (found,) = answers["empty name and id"]["topics"]
        assert found["error_code"] == NONE and found["name"] == topic
        (missing,) = answers["null name and unknown id"]["topics"]
        assert missing["error_code"] == UNKNOWN_TOPIC_ID and missing["name"] is None
        assert answers["null name, no id"]["topics"][0]["error_code"] == UNKNOWN_SERVER_ERROR
        if version >= 13:  # KIP-1102: the whole request's error at the top level too
            assert answers["null name, no id"]["error_code"] == UNKNOWN_SERVER_ERROR
    else:
        assert answers["empty name and id"]["topics"][0]["error_code"] == INVALID_REQUEST
        assert answers["empty name and id"]["brokers"] == []
    assert answers["empty name, no id"]["topics"][0]["error_code"] == INVALID_TOPIC_EXCEPTION
