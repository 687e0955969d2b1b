"""ApiVersions v3+ features (KIP-584): what `kafka-features describe` and clients read.

Against Kafka 4.3: the features we implement are advertised as Kafka advertises them
(`metadata.version` 7-30 finalized at 30 = 4.3-IV0, `group.version` 0-1 at 1,
`transaction.version` 0-2 at 2 (KIP-890 part 2), `kraft.version` 0-1 not finalized), v3
leaving out the features whose minimum is 0 (KIP-1022); `share.version`, `streams.version`
and `eligible.leader.replicas.version`, which we do not implement, are not advertised
(KNOWN_DIFFERENCES.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from kafka.protocol.metadata import ApiVersionsRequest

from .differential import NONE, Target, Targets

pytestmark = pytest.mark.timeout(120)

SAME_AS_KAFKA = ("metadata.version", "group.version", "transaction.version", "kraft.version")
NOT_OURS = ("share.version", "streams.version", "eligible.leader.replicas.version")


def _features(t: Target, version: int) -> dict[str, Any]:
    request = ApiVersionsRequest[version](
        client_software_name="mms-reference", client_software_version="1.0"
    )
    answer = t.request(request).to_dict()
    assert answer["error_code"] == NONE, f"{t}: {answer['error_code']}"
    return {
        "supported": {
            f["name"]: (f["min_version"], f["max_version"]) for f in answer["supported_features"]
        },
        "finalized": {
            f["name"]: (f["min_version_level"], f["max_version_level"])
            for f in answer["finalized_features"]
        },
        "epoch": answer["finalized_features_epoch"],
        "zk_migration_ready": answer["zk_migration_ready"],
    }


@pytest.mark.parametrize("version", [3, 4])
def test_features(targets: Targets, version: int) -> None:
    kafka, ours = targets.run(lambda t: _features(t, version))
    problems = []
    for name in SAME_AS_KAFKA:
        for part in ("supported", "finalized"):
            if kafka[part].get(name) != ours[part].get(name):
                problems.append(
                    f"{part} {name}: Kafka {kafka[part].get(name)}, ours {ours[part].get(name)}"
                )
    for name in NOT_OURS:
        for part in ("supported", "finalized"):
            if name in ours[part]:
                problems.append(f"{part} {name}: advertised, but we do not implement it")
    extra = set(ours["supported"]) - set(kafka["supported"])
    if extra:
        problems.append(f"features Kafka does not have: {sorted(extra)}")
    if ours["zk_migration_ready"] != kafka["zk_migration_ready"]:
        problems.append(f"zk_migration_ready: Kafka {kafka['zk_migration_ready']}, ours True")
    if not (kafka["epoch"] >= 0 and ours["epoch"] >= 0):
        problems.append(f"finalized epochs: Kafka {kafka['epoch']}, ours {ours['epoch']}")
    assert not problems, f"ApiVersions v{version} features:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_no_features_before_v3(targets: Targets, version: int) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        answer = t.request(ApiVersionsRequest[version]()).to_dict()
        return {k: v for k, v in answer.items() if k != "api_keys"}

    targets.compare(scenario, f"ApiVersions v{version} without features")
