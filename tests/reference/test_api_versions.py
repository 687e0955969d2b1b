"""ApiVersions: what we advertise, checked against Kafka's ranges and our own version plan.

For every API we advertise: Kafka must serve it too, with the same min; our max may not
exceed Kafka's (a client would pick a version Kafka never spoke), and must lie within the
range that ../shared/kafka-protocol/client_versions.md says the broker should implement,
for the APIs that table lists (OffsetDelete, for one, it does not).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import kafka_wire as wire
from kafka.protocol.metadata import ApiVersionsRequest

from .differential import NONE, UNSUPPORTED_VERSION, Target, Targets

pytestmark = pytest.mark.timeout(120)

API_VERSIONS = 18
CLIENT_VERSIONS = Path(__file__).resolve().parents[3] / "shared/kafka-protocol/client_versions.md"
PLAN_COLUMN = "Broker should implement"


def _advertised(t: Target, version: int) -> dict[str, Any]:
    request = ApiVersionsRequest[version]()
    if version >= 3:
        request.client_software_name = "mms-reference"
        request.client_software_version = "1.0"
    answer: dict[str, Any] = t.request(request).to_dict()
    answer["api_keys"] = {
        a["api_key"]: (a["min_version"], a["max_version"]) for a in answer["api_keys"]
    }
    return answer


def _plan() -> dict[int, tuple[int, int]]:
    """{api key: (min, max)} from the "Broker should implement" column."""
    if not CLIENT_VERSIONS.exists():
        pytest.skip(f"{CLIENT_VERSIONS} is not here (shared/ sits beside the repository)")
    plan: dict[int, tuple[int, int]] = {}
    column = None
    for line in CLIENT_VERSIONS.read_text().splitlines():
        if column is not None and not line.startswith("|"):
            break  # the end of that table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if PLAN_COLUMN in cells:
            column = cells.index(PLAN_COLUMN)
            continue
        if column is None or len(cells) <= column:
            continue
        keys = [int(k) for k in re.findall(r"\d+", re.sub(r"^[^(]*", "", cells[0])[:12])]
        bounds = re.match(r"\s*(\d+)(?:-(\d+))?", cells[column])
        if not keys or bounds is None:
            continue
        low = int(bounds.group(1))
        high = int(bounds.group(2) or low)
        if len(keys) == 2 and "-" in cells[0]:  # "(29-31)": a family of keys
            keys = list(range(keys[0], keys[1] + 1))
        for key in keys:
            plan[key] = (low, high)
    assert plan, f"no '{PLAN_COLUMN}' table found in {CLIENT_VERSIONS}"
    return plan


def test_advertised_ranges_against_kafka_and_the_plan(targets: Targets) -> None:
    kafka = _advertised(targets.kafka, 3)["api_keys"]
    ours = _advertised(targets.ours, 3)["api_keys"]
    plan = _plan()
    problems = []
    for key, (low, high) in sorted(ours.items()):
        if key not in kafka:
            problems.append(f"api {key}: we advertise {low}-{high}, Kafka does not serve it")
            continue
        k_low, k_high = kafka[key]
        if high > k_high:
            problems.append(f"api {key}: our max {high} is above Kafka's {k_high}")
        if low != k_low:
            problems.append(f"api {key}: our min {low}, Kafka's {k_low}")
        if key not in plan:
            continue  # the plan names the APIs clients need; Kafka's bounds still apply
        # The plan is what today's clients need, a floor: above it, up to Kafka's own maximum,
        # is where every version Kafka serves is headed (issue 16).
        _p_low, p_high = plan[key]
        if high < p_high:
            problems.append(f"api {key}: our max {high} is below the plan's {p_high}")
    assert not problems, "ApiVersions ranges:\n  " + "\n  ".join(problems)
    assert {0, 1, 2, 3, API_VERSIONS} <= set(ours)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_every_version_answers_alike(targets: Targets, version: int) -> None:
    """Same error and same shape at every version (the ranges are compared above)."""

    def scenario(t: Target) -> dict[str, Any]:
        answer = _advertised(t, version)
        answer["api_keys"] = sorted(answer["api_keys"])
        if t is targets.kafka:
            answer["api_keys"] = sorted(set(answer["api_keys"]) & set(_our_keys(targets)))
        # Features are KRaft's (metadata.version, group.version, ...): KNOWN_DIFFERENCES.md.
        for features in ("supported_features", "finalized_features", "finalized_features_epoch"):
            answer.pop(features, None)
        return answer

    answer = targets.compare(scenario, f"ApiVersions v{version}")
    assert answer["error_code"] == NONE


def _our_keys(targets: Targets) -> list[int]:
    return sorted(_advertised(targets.ours, 0)["api_keys"])


def test_unknown_version_answers_unsupported_with_our_range(targets: Targets) -> None:
    """KIP-511: a version the broker does not know gets UNSUPPORTED_VERSION in a v0 body."""

    def scenario(t: Target) -> dict[str, Any]:
        with t.connect() as conn:
            correlation_id = wire.next_correlation_id()
            header = wire.request_header(
                API_VERSIONS, 127, correlation_id, "mms-reference", flexible=True
            )
            # A v3-shaped body: two compact strings and no tagged fields.
            body = b"\x04mms\x041.0\x00"
            payload = conn.roundtrip_raw(header + body)
            got_id, error_code, versions = wire.parse_api_versions_v0(payload)
            still_served = wire.parse_api_versions_v0(
                conn.roundtrip_raw(wire.api_versions_v0_payload(wire.next_correlation_id()))
            )[1]
        return {
            "correlation id echoed": got_id == correlation_id,
            "error": error_code,
            "ApiVersions range": versions.get(API_VERSIONS),
            "connection still served": still_served,
        }

    answer = targets.compare(scenario, "ApiVersions at version 127")
    assert answer["error"] == UNSUPPORTED_VERSION


# Issue 16: every version Kafka 4.3 serves, for these APIs (names as in Kafka's schemas).
AT_KAFKAS_MAXIMUM = {
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    15: "DescribeGroups",
    60: "DescribeCluster",
}


def test_newest_versions_served(targets: Targets) -> None:
    kafka = _advertised(targets.kafka, 3)["api_keys"]
    ours = _advertised(targets.ours, 3)["api_keys"]
    differing = {
        f"{name} ({key})": {"kafka": kafka.get(key), "ours": ours.get(key)}
        for key, name in AT_KAFKAS_MAXIMUM.items()
        if kafka.get(key) != ours.get(key)
    }
    assert not differing, f"ranges that differ from Kafka's: {differing}"
