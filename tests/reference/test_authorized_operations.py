"""Authorized operations without an authorizer: Kafka grants every supported operation.

Metadata v8+ (`include_topic_authorized_operations`; v8-10 also
`include_cluster_authorized_operations`) and DescribeCluster
(`include_cluster_authorized_operations`). Kafka with no authorizer answers the bit field of
every operation the resource type supports (AuthHelper.authorizedOperations): for a topic
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS; for the
cluster CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
IDEMPOTENT_WRITE. Topics in error other than UNKNOWN_TOPIC_ID carry them too; not asked for,
both say -2^31. kafka-python decodes the bit field into the list of operation codes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kafka.protocol.admin import DescribeClusterRequest
from kafka.protocol.metadata import MetadataRequest

from .differential import Target, Targets, create_topic, metadata_request, unique

pytestmark = pytest.mark.timeout(120)

TOPIC_OPERATIONS = [3, 4, 5, 6, 7, 8, 10, 11]  # Kafka's AclOperation codes
CLUSTER_OPERATIONS = [5, 7, 8, 9, 10, 11, 12]


@pytest.mark.parametrize("version", [8, 10, 11, 12, 13])
def test_metadata_authorized_operations(targets: Targets, version: int) -> None:
    topic = unique(f"ops-v{version}")
    missing = unique("ops-missing")

    def ask(t: Target, topics: list[str] | None, topic_ops: bool, cluster_ops: bool) -> Any:
        request = metadata_request(topics, version=version)
        request.include_topic_authorized_operations = topic_ops
        if version <= 10:
            request.include_cluster_authorized_operations = cluster_ops
        answer = t.request(request).to_dict()
        if topics is None:
            answer["topics"] = [x for x in answer["topics"] if x["name"] == topic]
        return answer

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        asked = [topic, missing, "bad name!"]
        out = {
            f"topic {a}, cluster {b}": ask(t, asked, a, b)
            for a in (False, True)
            for b in (False, True)
        }
        out["all topics"] = ask(t, None, True, True)
        by_unknown_id = MetadataRequest[12](
            topics=[MetadataRequest.MetadataRequestTopic(name=None, topic_id=uuid.uuid4())],
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=True,
        )
        if version == 12:
            out["unknown id"] = t.request(by_unknown_id).to_dict()["topics"]
        return out

    answer = targets.compare(scenario, f"Metadata v{version} authorized operations")
    asked_both = answer["topic True, cluster True"]
    assert [x["authorized_operations"] for x in asked_both["topics"]] == [TOPIC_OPERATIONS] * 3
    if version <= 10:
        assert asked_both["authorized_operations"] == CLUSTER_OPERATIONS


@pytest.mark.parametrize("version", [0, 1, 2])
def test_describe_cluster_authorized_operations(targets: Targets, version: int) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        out = {}
        for asked in (False, True):
            request = DescribeClusterRequest[version](include_cluster_authorized_operations=asked)
            if version >= 1:
                request.endpoint_type = 1
            out[f"asked {asked}"] = t.request(request).to_dict()
        return out

    answer = targets.compare(scenario, f"DescribeCluster v{version} authorized operations")
    assert answer["asked True"]["authorized_operations"] == CLUSTER_OPERATIONS
    assert answer["asked False"]["authorized_operations"] is None
