"""Configuration by Kafka's names, typed errors, and the partitioner's hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from metamorphostreams.client import (
    AsyncProducer,
    ClientConfig,
    ConfigError,
    KafkaError,
    UnknownTopicOrPartitionError,
    error_for,
    murmur2,
    partition_for_key,
)
from metamorphostreams.client.config import load_properties
from metamorphostreams.client.errors import (
    NotLeaderOrFollowerError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)
from metamorphostreams.protocol.errors import ErrorCode

BOOT = {"bootstrap.servers": "127.0.0.1:9092"}


def test_defaults_are_kafkas() -> None:
    cfg = ClientConfig.for_role("producer", BOOT)
    assert cfg["acks"] == -1
    assert cfg["enable.idempotence"] is True
    assert cfg["batch.size"] == 16384
    assert cfg["linger.ms"] == 5
    assert cfg["delivery.timeout.ms"] == 120000
    consumer = ClientConfig.for_role("consumer", BOOT)
    assert consumer["auto.offset.reset"] == "latest"
    assert consumer["max.poll.records"] == 500
    assert consumer["isolation.level"] == "read_uncommitted"


def test_string_values_are_converted() -> None:
    cfg = ClientConfig.for_role(
        "producer",
        {**BOOT, "acks": "all", "linger.ms": "20", "enable.idempotence": "false"},
    )
    assert (cfg["acks"], cfg["linger.ms"], cfg["enable.idempotence"]) == (-1, 20, False)
    assert ClientConfig.for_role("producer", {**BOOT, "acks": "1"})["acks"] == 1
    assert cfg.bootstrap_servers == [("127.0.0.1", 9092)]


@pytest.mark.parametrize(
    ("role", "key", "message"),
    [
        (
            "producer",
            "lingr.ms",
            "unknown producer configuration 'lingr.ms' (did you mean 'linger.ms'?)",
        ),
        ("producer", "group.id", "'group.id' is a consumer setting, not a producer one"),
        ("consumer", "acks", "'acks' is a producer setting, not a consumer one"),
        ("admin", "nonsense.key", "unknown admin configuration 'nonsense.key'"),
    ],
)
def test_unknown_keys_are_rejected_clearly(role: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClientConfig.for_role(role, {**BOOT, key: "1"})  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("acks", "2"),
        ("linger.ms", "soon"),
        ("compression.type", "brotli"),
        ("batch.size", "-1"),
        ("enable.idempotence", "maybe"),
    ],
)
def test_bad_values_are_rejected(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ClientConfig.for_role("producer", {**BOOT, key: value})


def test_bootstrap_servers_required_and_checked() -> None:
    with pytest.raises(ConfigError, match=r"bootstrap\.servers"):
        ClientConfig.for_role("admin", {})
    with pytest.raises(ConfigError, match="host:port"):
        ClientConfig.for_role("admin", {"bootstrap.servers": "localhost"})


def test_idempotence_needs_acks_all_when_asked_for() -> None:
    with pytest.raises(ConfigError, match="acks=all"):
        AsyncProducer({**BOOT, "acks": "1", "enable.idempotence": "true"})
    assert not AsyncProducer({**BOOT, "acks": "1"}).idempotent


def test_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# comment\n! also\nclient.id = abc\nlinger.ms: 7\n\n")
    assert load_properties(path) == {"client.id": "abc", "linger.ms": "7"}
    with pytest.raises(ConfigError, match="cannot read"):
        load_properties(tmp_path / "missing")


def test_errors_are_typed_with_codes_and_retriable_flag() -> None:
    err = error_for(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    assert isinstance(err, UnknownTopicOrPartitionError)
    assert err.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and err.retriable
    assert isinstance(error_for(6), NotLeaderOrFollowerError) and error_for(6).invalid_metadata
    assert isinstance(error_for(36), TopicAlreadyExistsError) and not error_for(36).retriable
    assert isinstance(error_for(35), UnsupportedVersionError)
    assert not error_for(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER).retriable
    assert error_for(ErrorCode.NOT_ENOUGH_REPLICAS).retriable
    unknown = error_for(9999)
    assert type(unknown) is KafkaError and unknown.code == 9999
    assert "TOPIC_ALREADY_EXISTS" in str(error_for(36, "topic 'x' exists"))


def test_murmur2_matches_kafkas_java_vectors() -> None:
    # Values from Kafka's UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107
    # toPositive, not abs(): a hash of -2**31 would overflow abs() in Java.
    assert all(0 <= partition_for_key(bytes([i]), 10) < 10 for i in range(256))
