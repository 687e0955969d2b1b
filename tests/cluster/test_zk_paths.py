"""Kafka's znode JSON: our encoders against what Kafka 3.x brokers wrote, and round trips."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metamorphostreams.cluster import zk_paths as zp
from metamorphostreams.cluster.metadata import uuid_to_kafka

# Znode contents as a Kafka 3.x cluster shows them with `zkCli.sh get` (typed from those dumps).
KAFKA_BROKER_V5 = (
    b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
    b'"endpoints":["PLAINTEXT://localhost:9091"],"jmx_port":-1,"port":9091,'
    b'"host":"localhost","version":5,"timestamp":"1707276552023"}'
)
KAFKA_BROKER_V5_MULTI = (
    b'{"features":{},"listener_security_protocol_map":{"CONTROLPLANE-9090":"SSL",'
    b'"REPLICATION-9091":"SSL","PLAIN-9092":"PLAINTEXT","TLS-9093":"SSL"},'
    b'"endpoints":["CONTROLPLANE-9090://kafka-0.brokers.svc:9090",'
    b'"REPLICATION-9091://kafka-0.brokers.svc:9091","PLAIN-9092://kafka-0.brokers.svc:9092",'
    b'"TLS-9093://kafka-0.brokers.svc:9093"],"jmx_port":-1,"port":9092,'
    b'"host":"kafka-0.brokers.svc","version":5,"timestamp":"1710691902130"}'
)
KAFKA_TOPIC = (
    b'{"removing_replicas":{},"partitions":{"0":[0]},"topic_id":"ZOLr9CLNQjSW70hyIHx6BQ",'
    b'"adding_replicas":{},"version":3}'
)
KAFKA_CONTROLLER = (
    b'{"version":2,"brokerid":0,"timestamp":"1719917952299","kraftControllerEpoch":-1}'
)
KAFKA_CLUSTER_ID = b'{"version":"1","id":"Sfr7YvlkRHSHrmSrwq9mug"}'
KAFKA_PARTITION_STATE = b'{"controller_epoch":1,"leader":0,"version":1,"leader_epoch":0,"isr":[0]}'
KAFKA_TOPIC_CONFIG = b'{"version":1,"config":{"retention.ms":"100000"}}'
KAFKA_PRODUCER_ID_BLOCK = b'{"version":1,"broker":0,"block_start":"0","block_end":"999"}'
KAFKA_CONFIG_CHANGE = b'{"version":2,"entity_path":"topics/my-topic"}'


def test_paths() -> None:
    assert zp.broker_path(3) == "/brokers/ids/3"
    assert zp.topic_path("t") == "/brokers/topics/t"
    assert zp.partition_state_path("t", 2) == "/brokers/topics/t/partitions/2/state"
    assert zp.topic_config_path("t") == "/config/topics/t"
    assert zp.delete_topic_path("t") == "/admin/delete_topics/t"
    assert zp.config_change_create_path() == "/config/changes/config_change_"
    assert "/latest_producer_id_block" in zp.PERSISTENT_PATHS
    assert "/config/topics" in zp.PERSISTENT_PATHS


def test_broker_registration_is_kafkas_bytes() -> None:
    reg = zp.BrokerRegistration.decode(101, KAFKA_BROKER_V5)
    assert reg.endpoints == (zp.Endpoint("PLAINTEXT", "localhost", 9091, "PLAINTEXT"),)
    assert (reg.rack, reg.jmx_port, reg.timestamp_ms, reg.version) == (None, -1, 1707276552023, 5)
    assert reg.encode() == KAFKA_BROKER_V5


def test_broker_registration_many_listeners() -> None:
    reg = zp.BrokerRegistration.decode(0, KAFKA_BROKER_V5_MULTI)
    assert [e.security_protocol for e in reg.endpoints] == ["SSL", "SSL", "PLAINTEXT", "SSL"]
    tls = reg.endpoint("TLS-9093")
    assert tls is not None and (tls.host, tls.port) == ("kafka-0.brokers.svc", 9093)
    assert reg.encode() == KAFKA_BROKER_V5_MULTI


def test_broker_registration_rack_ipv6_and_no_plaintext() -> None:
    reg = zp.BrokerRegistration(
        7, (zp.Endpoint("SECURE", "::1", 9093, "SSL"),), rack="dc1", timestamp_ms=5
    )
    doc = json.loads(reg.encode())
    assert doc["endpoints"] == ["SECURE://[::1]:9093"]
    assert (doc["host"], doc["port"], doc["rack"]) == (None, -1, "dc1")
    assert zp.BrokerRegistration.decode(7, reg.encode()) == reg


def test_broker_registration_old_versions() -> None:
    v1 = b'{"version":1,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"2233345666"}'
    assert zp.BrokerRegistration.decode(1, v1).endpoints == (
        zp.Endpoint("PLAINTEXT", "localhost", 9092, "PLAINTEXT"),
    )
    v3 = (
        b'{"version":3,"host":"localhost","port":9092,"jmx_port":9999,"timestamp":"2233345666",'
        b'"endpoints":["PLAINTEXT://host1:9092", "SSL://host1:9093"],"rack":"dc1"}'
    )
    reg = zp.BrokerRegistration.decode(1, v3)
    assert [e.security_protocol for e in reg.endpoints] == ["PLAINTEXT", "SSL"]
    assert reg.rack == "dc1"
    with pytest.raises(zp.ZkDataError, match="ZooKeeper registration for broker 1"):
        zp.BrokerRegistration.decode(1, b"{not json")


def test_topic_assignment_is_kafkas_bytes() -> None:
    a = zp.TopicAssignment.decode("test", KAFKA_TOPIC)
    assert a.partitions == {0: [0]}
    assert a.topic_id is not None and uuid_to_kafka(a.topic_id) == "ZOLr9CLNQjSW70hyIHx6BQ"
    assert a.encode() == KAFKA_TOPIC


def test_topic_assignment_reassignment_and_no_id() -> None:
    a = zp.TopicAssignment(
        uuid.uuid4(), {1: [2, 3], 0: [1, 2]}, adding_replicas={1: [3]}, removing_replicas={1: []}
    )
    doc = json.loads(a.encode())
    assert list(doc["partitions"]) == ["0", "1"]
    assert doc["adding_replicas"] == {"1": [3]} and doc["removing_replicas"] == {}
    assert zp.TopicAssignment.decode("t", a.encode()).partitions == a.partitions
    legacy = b'{"version":1,"partitions":{"0":[1,2],"1":[2,1]}}'
    old = zp.TopicAssignment.decode("t", legacy)
    assert old.topic_id is None and old.partitions == {0: [1, 2], 1: [2, 1]}


def test_partition_state_is_kafkas_bytes() -> None:
    s = zp.PartitionState.decode(KAFKA_PARTITION_STATE, zk_version=4)
    assert (s.leader, s.leader_epoch, s.isr, s.controller_epoch, s.zk_version) == (
        0,
        0,
        (0,),
        1,
        4,
    )
    assert s.encode() == KAFKA_PARTITION_STATE
    recovering = zp.PartitionState(2, 5, (2,), 3, zp.LEADER_RECOVERY_RECOVERING)
    assert json.loads(recovering.encode())["leader_recovery_state"] == 1
    assert zp.PartitionState.decode(recovering.encode()) == recovering


def test_controller_and_epoch() -> None:
    c = zp.ControllerRegistration.decode(KAFKA_CONTROLLER)
    assert c == zp.ControllerRegistration(0, 1719917952299, -1)
    assert c.encode() == KAFKA_CONTROLLER
    v1 = b'{"version":1,"brokerid":2,"timestamp":"1"}'
    assert zp.ControllerRegistration.decode(v1).broker_id == 2
    assert zp.encode_controller_epoch(12) == b"12"
    assert zp.decode_controller_epoch(b"12") == 12
    with pytest.raises(zp.ZkDataError):
        zp.decode_controller_epoch(b"x")


def test_configs_and_notifications() -> None:
    assert zp.decode_entity_config(KAFKA_TOPIC_CONFIG) == {"retention.ms": "100000"}
    assert zp.encode_entity_config({"retention.ms": "100000"}) == KAFKA_TOPIC_CONFIG
    assert zp.decode_entity_config(None) == {}
    assert zp.encode_config_change("topics", "my-topic") == KAFKA_CONFIG_CHANGE
    assert zp.decode_config_change(KAFKA_CONFIG_CHANGE) == ("topics", "my-topic")


def test_cluster_id_and_producer_id_block() -> None:
    assert zp.decode_cluster_id(KAFKA_CLUSTER_ID) == "Sfr7YvlkRHSHrmSrwq9mug"
    assert zp.encode_cluster_id("Sfr7YvlkRHSHrmSrwq9mug") == KAFKA_CLUSTER_ID
    block = zp.ProducerIdBlock.decode(KAFKA_PRODUCER_ID_BLOCK)
    assert block == zp.ProducerIdBlock(0, 0, 999) and block.size == 1000
    assert block.encode() == KAFKA_PRODUCER_ID_BLOCK
    assert zp.ProducerIdBlock.next_after(None, 3, 1000) == zp.ProducerIdBlock(3, 0, 999)
    assert zp.ProducerIdBlock.next_after(block, 1, 1000) == zp.ProducerIdBlock(1, 1000, 1999)
    with pytest.raises(zp.ZkDataError, match="Exhausted"):
        zp.ProducerIdBlock.next_after(zp.ProducerIdBlock(0, 0, zp.MAX_PRODUCER_ID - 10), 0, 1000)


_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
_ids = st.integers(0, 2**31 - 1)


@given(
    st.builds(
        zp.TopicAssignment,
        st.uuids(),
        st.dictionaries(st.integers(0, 999), st.lists(_ids, min_size=1, max_size=5)),
        st.dictionaries(st.integers(0, 999), st.lists(_ids, min_size=1, max_size=3)),
        st.dictionaries(st.integers(0, 999), st.lists(_ids, min_size=1, max_size=3)),
    )
)
def test_topic_assignment_round_trip(a: zp.TopicAssignment) -> None:
    assert zp.TopicAssignment.decode("t", a.encode()) == a


@given(
    st.builds(
        zp.PartitionState,
        st.integers(-1, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.lists(_ids, max_size=5).map(tuple),
        st.integers(0, 2**31 - 1),
        st.sampled_from([0, 1]),
    )
)
def test_partition_state_round_trip(s: zp.PartitionState) -> None:
    assert zp.PartitionState.decode(s.encode()) == s


@given(st.dictionaries(_names, st.text(max_size=20), max_size=5))
def test_entity_config_round_trip(config: dict[str, str]) -> None:
    assert zp.decode_entity_config(zp.encode_entity_config(config)) == config


@given(st.uuids())
def test_kafka_uuid_round_trip(u: uuid.UUID) -> None:
    assert zp.kafka_uuid_from_string(uuid_to_kafka(u)) == u
