"""Broker config views and the feature table, without a broker (Kafka's rules, by hand)."""

from __future__ import annotations

from metamorphostreams.protocol.features import (
    FEATURES,
    finalized_features,
    finalized_level,
    supported_features,
)
from metamorphostreams.server.broker_configs import (
    ConfigView,
    describe_broker_configs,
    describe_group_configs,
)

STATIC, DEFAULT = 4, 5


def _by_name(static: dict[str, str]) -> dict[str, ConfigView]:
    return {v.name: v for v in describe_broker_configs(static)}


def test_retention_synonyms_follow_kafkas_chain() -> None:
    views = _by_name({"log.retention.ms": "1000", "log.retention.minutes": "7"})
    ms = views["log.retention.ms"]
    assert ms.value == "1000" and ms.source == STATIC
    assert ms.synonyms == [
        ("log.retention.ms", "1000", STATIC),
        ("log.retention.minutes", "7", STATIC),
        ("log.retention.hours", "168", DEFAULT),
    ]
    hours = views["log.retention.hours"]
    assert hours.synonyms == [("log.retention.hours", "168", DEFAULT)]
    unset = _by_name({})["log.retention.ms"]
    assert unset.value is None and unset.synonyms == []


def test_passwords_are_sensitive_and_hidden() -> None:
    view = _by_name({"ssl.key.password": "secret"})["ssl.key.password"]
    assert view.sensitive and view.value is None
    assert view.synonyms == [("ssl.key.password", None, STATIC)]


def test_set_values_are_normalised_like_kafka() -> None:
    views = _by_name({"num.partitions": " 3", "auto.create.topics.enable": "TRUE"})
    assert views["num.partitions"].value == "3"
    assert views["auto.create.topics.enable"].value == "true"


def test_group_configs_default_to_the_broker_keys() -> None:
    views = {
        v.name: v for v in describe_group_configs({"group.consumer.session.timeout.ms": "50000"})
    }
    session = views["consumer.session.timeout.ms"]
    assert session.value == "50000" and session.source == STATIC
    assert views["consumer.heartbeat.interval.ms"].value == "5000"
    assert views["share.isolation.level"].synonyms == [
        ("share.isolation.level", "read_uncommitted", DEFAULT)
    ]


def test_feature_table() -> None:
    names = {f.name for f in FEATURES}
    assert not names & {"share.version", "streams.version"}
    assert finalized_level("transaction.version") == 2
    assert finalized_level("group.version") == 1
    assert "kraft.version" not in {f.name for f in finalized_features()}  # level 0
    assert {f.name for f in supported_features(3)} == {"metadata.version"}  # KIP-1022
    assert {f.name for f in supported_features(4)} == names
