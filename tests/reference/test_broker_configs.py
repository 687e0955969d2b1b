"""DescribeConfigs for the broker, its loggers and groups (`kafka-configs --describe
--entity-type brokers|broker-loggers|groups`), raw, against a Kafka started with settings.

Both brokers run with the same server.properties (the reference's base settings plus
SETTINGS), so every broker config must come back alike: the same ~340 names, types, read-only
flags, sensitivity, values, sources and synonyms (Kafka's ConfigHelper: for each synonym
name the static value, then the defaults, from the key itself on). The keys naming the
instance (its listener, data dir, quorum) are checked to be ours. Known differences
(KNOWN_DIFFERENCES.md): Kafka's cluster-wide `min.insync.replicas` (DYNAMIC_DEFAULT), the
documentation text, `group.coordinator.rebalance.protocols` without streams, and the loggers
each broker has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.reference_kafka import BASE_PROPERTIES, ReferenceKafka, require_reference_kafka
from kafka.protocol.admin import DescribeConfigsRequest

from .differential import INVALID_REQUEST, NONE, Target, Targets, by_name, compare_answers

pytestmark = pytest.mark.timeout(180)

BROKER = 4  # ConfigResource.Type
BROKER_LOGGER = 8
GROUP = 32
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
DYNAMIC_BROKER_LOGGER_CONFIG = 6

# Set on both brokers, to see sources and synonym chains (log.retention.ms <- minutes <- hours).
SETTINGS = {
    "log.retention.minutes": "5",
    "log.roll.ms": "3600000",
    "log.segment.bytes": "2097152",
    "num.partitions": " 2",
    "auto.create.topics.enable": "TRUE",
    "group.consumer.session.timeout.ms": "50000",
    "group.consumer.heartbeat.interval.ms": "6000",
}
# The instance's own addresses and paths; each checked against what our broker binds.
INSTANCE = frozenset({"listeners", "advertised.listeners", "log.dirs", "controller.quorum.voters"})
# Known differences: Kafka's formatted store sets min.insync.replicas cluster-wide; we have
# no streams groups.
SOURCE_DIFFERS = frozenset({"min.insync.replicas"})
VALUE_DIFFERS = {"group.coordinator.rebalance.protocols": "classic,consumer"}
GROUP_CONFIGS = 17  # KIP-848, KIP-932 and KIP-1071 group configs in Kafka 4.3


@pytest.fixture(scope="module")
def configured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceKafka]:
    """A Kafka of its own for this module: the shared one runs with the defaults only."""
    require_reference_kafka()
    kafka = ReferenceKafka(tmp_path_factory.mktemp("configured-kafka"), settings=SETTINGS)
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()
        kafka.close()


@pytest.fixture
def ours(broker_factory: BrokerFactory) -> BrokerProcess:
    return broker_factory({**BASE_PROPERTIES, **SETTINGS})


@pytest.fixture
def targets(configured_kafka: ReferenceKafka, ours: BrokerProcess) -> Targets:
    return Targets(
        kafka=Target("kafka", configured_kafka.bootstrap), ours=Target("ours", ours.bootstrap)
    )


def _describe(
    t: Target,
    rtype: int,
    name: str,
    keys: list[str] | None = None,
    *,
    synonyms: bool = True,
    documentation: bool = False,
    version: int = 4,
) -> dict[str, Any]:
    resource = DescribeConfigsRequest.DescribeConfigsResource(
        resource_type=rtype, resource_name=name, configuration_keys=keys
    )
    request = DescribeConfigsRequest[version](resources=[resource], include_synonyms=synonyms)
    if version >= 3:
        request.include_documentation = documentation
    (result,) = t.request(request).results
    answer: dict[str, Any] = result.to_dict()
    answer["configs"] = by_name(answer["configs"])
    return answer


def _known_differences(configs: dict[str, Any]) -> None:
    for name in SOURCE_DIFFERS:
        entry = configs.get(name)
        if entry is not None:
            entry.pop("config_source")
            entry["synonyms"] = [s for s in entry.get("synonyms", []) if s["source"] == 5]


@pytest.mark.parametrize("version", [1, 4])
def test_every_broker_config(targets: Targets, ours: BrokerProcess, version: int) -> None:
    kafka_answer, our_answer = targets.run(lambda t: _describe(t, BROKER, "0", version=version))
    kafka, mine = kafka_answer["configs"], our_answer["configs"]
    assert sorted(mine) == sorted(kafka), (
        f"only Kafka: {sorted(set(kafka) - set(mine))}, only ours: {sorted(set(mine) - set(kafka))}"
    )
    assert len(kafka) > 300
    for name in INSTANCE:
        k, o = kafka.pop(name), mine.pop(name)
        assert {f: o[f] for f in ("read_only", "is_sensitive")} == {
            f: k[f] for f in ("read_only", "is_sensitive")
        }, name
    for name, value in VALUE_DIFFERS.items():
        assert mine[name]["value"] == value
        kafka.pop(name), mine.pop(name)
    _known_differences(kafka)
    _known_differences(mine)
    compare_answers(kafka_answer, our_answer, f"DescribeConfigs v{version}, every broker config")

    described = _describe(Target("ours", ours.bootstrap), BROKER, "0")["configs"]
    assert described["listeners"]["value"] == f"PLAINTEXT://{ours.bootstrap}"
    assert Path(described["log.dirs"]["value"]).resolve() == ours.data_dir.resolve()
    assert described["node.id"]["value"] == described["broker.id"]["value"] == "0"
    assert described["node.id"]["config_source"] == STATIC_BROKER_CONFIG


def test_synonyms_and_selected_keys(targets: Targets) -> None:
    keys = [
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
        "log.roll.ms",
        "log.roll.hours",
        "log.flush.interval.ms",
        "num.partitions",
        "auto.create.topics.enable",
        "ssl.key.password",
        "message.max.bytes",
        "no.such.config",
    ]

    def scenario(t: Target) -> dict[str, Any]:
        return {
            "with synonyms": _describe(t, BROKER, "0", keys),
            "without": _describe(t, BROKER, "0", keys, synonyms=False),
            "v2": _describe(t, BROKER, "0", keys, version=2),
        }

    answer = targets.compare(scenario, "DescribeConfigs of selected broker configs")
    minutes = answer["with synonyms"]["configs"]["log.retention.minutes"]
    assert [(s["name"], s["source"]) for s in minutes["synonyms"]] == [
        ("log.retention.minutes", STATIC_BROKER_CONFIG),
        ("log.retention.hours", DEFAULT_CONFIG),
    ]


def test_documentation_when_asked(targets: Targets) -> None:
    keys = ["num.partitions", "log.retention.hours"]

    def scenario(t: Target) -> dict[str, Any]:
        configs = _describe(t, BROKER, "0", keys, documentation=True)["configs"]
        # Kafka's prose is not ours to copy (KNOWN_DIFFERENCES.md): compare the rest.
        return {n: {k: v for k, v in c.items() if k != "documentation"} for n, c in configs.items()}

    targets.compare(scenario, "DescribeConfigs with documentation")


def test_cluster_default_and_other_brokers(targets: Targets) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        cluster = _describe(t, BROKER, "")
        _known_differences(cluster["configs"])
        # Kafka lists only dynamic cluster defaults there: its formatted store's
        # min.insync.replicas, which we do not have (KNOWN_DIFFERENCES.md).
        cluster["configs"].pop("min.insync.replicas", None)
        return {
            "cluster default": cluster,
            "another broker": _describe(t, BROKER, "1", ["num.partitions"]),
        }

    answer = targets.compare(scenario, "DescribeConfigs of the cluster default, broker 1")
    assert answer["cluster default"]["error_code"] == NONE
    assert answer["another broker"]["error_code"] == INVALID_REQUEST


def test_broker_loggers(targets: Targets) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        every = _describe(t, BROKER_LOGGER, "0")
        root = every["configs"].pop("root")
        levels = root.pop("value")
        every["configs"] = {}  # which loggers each broker configures is its own
        return {
            "root": root,
            "root level is a log4j level": levels in {"ALL", "TRACE", "DEBUG", "INFO", "WARN"},
            "every logger, root aside": every,
            "selected": {
                n: {k: v for k, v in c.items() if k != "value"}
                for n, c in _describe(
                    t, BROKER_LOGGER, "0", ["root", "no.such.logger"], documentation=True
                )["configs"].items()
            },
            "v1": _describe(t, BROKER_LOGGER, "0", ["root"], version=1)["error_code"],
            "empty name": _describe(t, BROKER_LOGGER, ""),
            "another broker": _describe(t, BROKER_LOGGER, "1"),
        }

    answer = targets.compare(scenario, "DescribeConfigs of broker loggers")
    assert answer["root"]["config_source"] == DYNAMIC_BROKER_LOGGER_CONFIG
    assert answer["empty name"]["error_code"] == INVALID_REQUEST


@pytest.mark.parametrize("synonyms", [False, True])
def test_group_configs(targets: Targets, synonyms: bool) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        return {
            "any group": _describe(t, GROUP, "some-group", synonyms=synonyms),
            "selected": _describe(
                t, GROUP, "g", ["consumer.session.timeout.ms", "nope"], synonyms=synonyms
            ),
            "v1": _describe(t, GROUP, "g", ["share.isolation.level"], version=1),
            "empty name": _describe(t, GROUP, ""),
        }

    answer = targets.compare(scenario, "DescribeConfigs of a group")
    configs = answer["any group"]["configs"]
    assert len(configs) == GROUP_CONFIGS
    assert configs["consumer.session.timeout.ms"]["value"] == "50000"
    assert answer["empty name"]["error_code"] == INVALID_REQUEST
