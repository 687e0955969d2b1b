"""Kafka's ZooKeeper-era znode layout and the JSON in each znode, as Kafka 3.x wrote them.

Pure: paths and bytes in, values out; no ZooKeeper client here. An engineer who knows Kafka's
ZooKeeper layout reads ours with ``zkCli.sh``:

    /cluster/id                              {"version":"1","id":"<base64 uuid>"}
    /controller (ephemeral)                  {"version":2,"brokerid":1,"timestamp":"...",
                                              "kraftControllerEpoch":-1}
    /controller_epoch                        1            (plain decimal; its znode version is
                                                           what controller writes check)
    /brokers/ids/N (ephemeral)               version 5 registration (BrokerRegistration)
    /brokers/topics/T                        {"removing_replicas":{},"partitions":{"0":[1,2]},
                                              "topic_id":"...","adding_replicas":{},"version":3}
    /brokers/topics/T/partitions/P/state     {"controller_epoch":1,"leader":1,"version":1,
                                              "leader_epoch":0,"isr":[1,2]}
    /config/topics/T                         {"version":1,"config":{"retention.ms":"1000"}}
    /config/changes/config_change_0000000000 {"version":2,"entity_path":"topics/T"}
    /admin/delete_topics/T                   (no data: a deletion request)
    /latest_producer_id_block                {"version":1,"broker":1,"block_start":"0",
                                              "block_end":"999"}

Kafka serialises with Jackson, compact, non-ASCII unescaped; the key order of its maps is a
hash map's, so we write the order Kafka 3.x brokers were seen writing and never depend on order
when reading. Decoders accept every version Kafka 3.x could read.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .metadata import uuid_to_kafka

# -- paths ----------------------------------------------------------------------------------

CONTROLLER_PATH = "/controller"
CONTROLLER_EPOCH_PATH = "/controller_epoch"
BROKERS_PATH = "/brokers"
BROKER_IDS_PATH = "/brokers/ids"
BROKER_SEQID_PATH = "/brokers/seqid"
TOPICS_PATH = "/brokers/topics"
CONFIG_PATH = "/config"
CONFIG_CHANGES_PATH = "/config/changes"
CONFIG_CHANGE_PREFIX = "config_change_"  # + a 10-digit ZooKeeper sequence number
ADMIN_PATH = "/admin"
DELETE_TOPICS_PATH = "/admin/delete_topics"
CLUSTER_PATH = "/cluster"
CLUSTER_ID_PATH = "/cluster/id"
PRODUCER_ID_BLOCK_PATH = "/latest_producer_id_block"
ISR_CHANGE_NOTIFICATION_PATH = "/isr_change_notification"
LOG_DIR_EVENT_NOTIFICATION_PATH = "/log_dir_event_notification"
CONSUMERS_PATH = "/consumers"  # the old consumer's root; Kafka still creates it

CONFIG_TYPE_TOPIC = "topics"
CONFIG_TYPES = ("topics", "clients", "users", "brokers", "ips")  # Kafka's ConfigType.ALL

# Kafka's ZkData.PersistentZkPaths: created (empty) by every broker at start-up.
PERSISTENT_PATHS: tuple[str, ...] = (
    CONSUMERS_PATH,
    BROKER_IDS_PATH,
    TOPICS_PATH,
    CONFIG_CHANGES_PATH,
    DELETE_TOPICS_PATH,
    BROKER_SEQID_PATH,
    ISR_CHANGE_NOTIFICATION_PATH,
    PRODUCER_ID_BLOCK_PATH,
    LOG_DIR_EVENT_NOTIFICATION_PATH,
    *(f"{CONFIG_PATH}/{t}" for t in CONFIG_TYPES),
)

INITIAL_CONTROLLER_EPOCH = 0  # KafkaController.InitialControllerEpoch: the first controller is 1
MATCH_ANY_VERSION = -1  # ZooKeeper's "any version" in a conditional write


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS_PATH}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS_PATH}/{topic}"


def topic_partitions_path(topic: str) -> str:
    return f"{TOPICS_PATH}/{topic}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{TOPICS_PATH}/{topic}/partitions/{partition}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{TOPICS_PATH}/{topic}/partitions/{partition}/state"


def config_entity_path(entity_type: str, name: str) -> str:
    return f"{CONFIG_PATH}/{entity_type}/{name}"


def topic_config_path(topic: str) -> str:
    return config_entity_path(CONFIG_TYPE_TOPIC, topic)


def delete_topic_path(topic: str) -> str:
    return f"{DELETE_TOPICS_PATH}/{topic}"


def config_change_create_path() -> str:
    """The prefix a sequential create completes: /config/changes/config_change_0000000042."""
    return f"{CONFIG_CHANGES_PATH}/{CONFIG_CHANGE_PREFIX}"


# -- JSON -----------------------------------------------------------------------------------


class ZkDataError(ValueError):
    """A znode's bytes are not what Kafka writes there."""


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(data: bytes | None, what: str) -> dict[str, Any]:
    if not data:
        raise ZkDataError(f"Failed to parse {what}: empty znode")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZkDataError(f"Failed to parse {what}: {data!r}") from e
    if not isinstance(doc, dict):
        raise ZkDataError(f"Failed to parse {what}: not a JSON object: {data!r}")
    return doc


def kafka_uuid_from_string(text: str) -> uuid.UUID:
    """Kafka's Uuid.fromString: URL-safe base64 of the 16 bytes, without padding."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise ZkDataError(f"Invalid Kafka Uuid {text!r}") from e
    if len(raw) != 16:
        raise ZkDataError(f"Invalid Kafka Uuid {text!r}: {len(raw)} bytes, not 16")
    return uuid.UUID(bytes=raw)


# -- /controller and /controller_epoch ------------------------------------------------------


@dataclass(frozen=True)
class ControllerRegistration:
    """/controller: which broker is the controller. Version 2 adds kraftControllerEpoch
    (-1: a ZooKeeper-mode controller, always ours)."""

    broker_id: int
    timestamp_ms: int
    kraft_controller_epoch: int = -1

    def encode(self) -> bytes:
        return _dumps(
            {
                "version": 2,
                "brokerid": self.broker_id,
                "timestamp": str(self.timestamp_ms),
                "kraftControllerEpoch": self.kraft_controller_epoch,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ControllerRegistration:
        doc = _loads(data, "the controller registration")
        try:
            return cls(
                int(doc["brokerid"]),
                int(doc.get("timestamp", 0)),
                int(doc.get("kraftControllerEpoch", -1)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ZkDataError(f"Failed to parse the controller registration: {data!r}") from e


def encode_controller_epoch(epoch: int) -> bytes:
    return str(epoch).encode("ascii")


def decode_controller_epoch(data: bytes) -> int:
    try:
        return int(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ZkDataError(f"Failed to parse the controller epoch: {data!r}") from e


# -- /brokers/ids/N -------------------------------------------------------------------------

_ENDPOINT = re.compile(r"^(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)$")
_SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
BROKER_REGISTRATION_VERSION = 5  # what Kafka writes since 2.7 (KIP-584 features)


@dataclass(frozen=True)
class Endpoint:
    """One advertised listener: ``NAME://host:port`` plus its security protocol."""

    listener_name: str
    host: str | None
    port: int
    security_protocol: str = "PLAINTEXT"

    @property
    def connection_string(self) -> str:
        if self.host is None:
            return f"{self.listener_name}://:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.listener_name}://{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, protocol_map: dict[str, str] | None) -> Endpoint:
        m = _ENDPOINT.match(text)
        if m is None:
            raise ZkDataError(f"Unable to parse {text} to a broker endpoint")
        name, host, port = m.group(1), m.group(2), int(m.group(3))
        if protocol_map is not None:
            if name not in protocol_map:
                raise ZkDataError(f"No security protocol defined for listener {name}")
            protocol = protocol_map[name]
        elif name.upper() in _SECURITY_PROTOCOLS:
            protocol = name.upper()  # old registrations: the listener is named by its protocol
        else:
            raise ZkDataError(f"No security protocol defined for listener {name}")
        return cls(name, host or None, port, protocol)


@dataclass(frozen=True)
class BrokerRegistration:
    """/brokers/ids/N, ephemeral: the broker's advertised endpoints, rack and features.

    Top-level host/port repeat the first PLAINTEXT endpoint (null/-1 without one) for clients
    older than 0.10; timestamp is the registration time in ms, as a string.
    """

    broker_id: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None
    timestamp_ms: int = 0
    jmx_port: int = -1
    features: dict[str, dict[str, int]] = field(default_factory=dict)
    version: int = BROKER_REGISTRATION_VERSION

    def endpoint(self, listener_name: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.listener_name == listener_name:
                return ep
        return None

    def encode(self) -> bytes:
        plaintext = next((e for e in self.endpoints if e.security_protocol == "PLAINTEXT"), None)
        doc: dict[str, Any] = {}
        if self.version >= 5:
            doc["features"] = self.features
        if self.version >= 4:
            doc["listener_security_protocol_map"] = {
                e.listener_name: e.security_protocol for e in self.endpoints
            }
        doc["endpoints"] = [e.connection_string for e in self.endpoints]
        if self.rack is not None and self.version >= 3:
            doc["rack"] = self.rack
        doc["jmx_port"] = self.jmx_port
        doc["port"] = plaintext.port if plaintext is not None else -1
        doc["host"] = plaintext.host if plaintext is not None else None
        doc["version"] = self.version
        doc["timestamp"] = str(self.timestamp_ms)
        return _dumps(doc)

    @classmethod
    def decode(cls, broker_id: int, data: bytes) -> BrokerRegistration:
        what = f"ZooKeeper registration for broker {broker_id}"
        doc = _loads(data, what)
        try:
            version = int(doc["version"])
            jmx_port = int(doc.get("jmx_port", -1))
            if version < 1:
                raise ZkDataError(f"Unsupported version of broker registration: {data!r}")
            if version == 1:
                endpoints: tuple[Endpoint, ...] = (
                    Endpoint("PLAINTEXT", doc["host"], int(doc["port"]), "PLAINTEXT"),
                )
            else:
                protocol_map = doc.get("listener_security_protocol_map")
                endpoints = tuple(
                    Endpoint.parse(str(text), protocol_map) for text in doc["endpoints"]
                )
            rack = doc.get("rack")
            features = {
                str(name): {str(k): int(v) for k, v in ranges.items()}
                for name, ranges in (doc.get("features") or {}).items()
            }
            return cls(
                broker_id,
                endpoints,
                None if rack is None else str(rack),
                int(doc.get("timestamp", 0)),
                jmx_port,
                features,
                version,
            )
        except ZkDataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ZkDataError(f"Failed to parse {what}: {data!r}") from e


# -- /brokers/topics/T ----------------------------------------------------------------------

TOPIC_ASSIGNMENT_VERSION = 3  # version 3: topic ids (KIP-516) are always there


@dataclass(frozen=True)
class TopicAssignment:
    """/brokers/topics/T: the replicas of each partition (preferred leader first), the topic
    id, and the replicas an ongoing reassignment adds and removes (only non-empty lists)."""

    topic_id: uuid.UUID | None
    partitions: dict[int, list[int]]
    adding_replicas: dict[int, list[int]] = field(default_factory=dict)
    removing_replicas: dict[int, list[int]] = field(default_factory=dict)

    def encode(self) -> bytes:
        def by_partition(m: dict[int, list[int]]) -> dict[str, list[int]]:
            return {str(p): list(r) for p, r in sorted(m.items()) if r}

        doc: dict[str, Any] = {
            "removing_replicas": by_partition(self.removing_replicas),
            "partitions": {str(p): list(r) for p, r in sorted(self.partitions.items())},
        }
        if self.topic_id is not None:
            doc["topic_id"] = uuid_to_kafka(self.topic_id)
        doc["adding_replicas"] = by_partition(self.adding_replicas)
        doc["version"] = TOPIC_ASSIGNMENT_VERSION
        return _dumps(doc)

    @classmethod
    def decode(cls, topic: str, data: bytes) -> TopicAssignment:
        what = f"the replica assignment of topic {topic}"
        doc = _loads(data, what)
        try:
            raw_id = doc.get("topic_id")
            topic_id = None if raw_id is None else kafka_uuid_from_string(str(raw_id))

            def ints(m: Any) -> dict[int, list[int]]:
                return {int(p): [int(b) for b in r] for p, r in (m or {}).items()}

            return cls(
                topic_id,
                ints(doc.get("partitions")),
                ints(doc.get("adding_replicas")),
                ints(doc.get("removing_replicas")),
            )
        except ZkDataError:
            raise
        except (TypeError, ValueError, AttributeError) as e:
            raise ZkDataError(f"Failed to parse {what}: {data!r}") from e


# -- /brokers/topics/T/partitions/P/state ---------------------------------------------------

LEADER_RECOVERY_RECOVERED = 0  # Kafka's LeaderRecoveryState.RECOVERED: not written
LEADER_RECOVERY_RECOVERING = 1
NO_LEADER = -1  # LeaderAndIsr.NoLeader


@dataclass(frozen=True)
class PartitionState:
    """/brokers/topics/T/partitions/P/state: leader, leader epoch, ISR and the epoch of the
    controller that wrote it. The znode's version is the partition epoch (``zk_version``),
    which every ISR or leader change checks."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    leader_recovery_state: int = LEADER_RECOVERY_RECOVERED
    zk_version: int = 0

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "controller_epoch": self.controller_epoch,
            "leader": self.leader,
            "version": 1,
            "leader_epoch": self.leader_epoch,
            "isr": list(self.isr),
        }
        if self.leader_recovery_state != LEADER_RECOVERY_RECOVERED:
            doc["leader_recovery_state"] = self.leader_recovery_state
        return _dumps(doc)

    @classmethod
    def decode(cls, data: bytes, zk_version: int = 0) -> PartitionState:
        doc = _loads(data, "a partition state")
        try:
            return cls(
                int(doc["leader"]),
                int(doc["leader_epoch"]),
                tuple(int(b) for b in doc["isr"]),
                int(doc["controller_epoch"]),
                int(doc.get("leader_recovery_state", LEADER_RECOVERY_RECOVERED)),
                zk_version,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ZkDataError(f"Failed to parse a partition state: {data!r}") from e


# -- /config/<type>/<name> and /config/changes ----------------------------------------------


def encode_entity_config(config: dict[str, str]) -> bytes:
    return _dumps({"version": 1, "config": dict(config)})


def decode_entity_config(data: bytes | None) -> dict[str, str]:
    """The config map; an empty or config-less znode is no overrides (as Kafka reads it)."""
    if not data:
        return {}
    doc = _loads(data, "an entity config")
    config = doc.get("config")
    if not isinstance(config, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def encode_config_change(entity_type: str, name: str) -> bytes:
    """A change notification, version 2: the changed entity as '<type>/<name>'."""
    return _dumps({"version": 2, "entity_path": f"{entity_type}/{name}"})


def decode_config_change(data: bytes) -> tuple[str, str]:
    """(entity type, name) of a version-2 notification."""
    doc = _loads(data, "a config change notification")
    entity_path = doc.get("entity_path")
    if doc.get("version") != 2 or not isinstance(entity_path, str) or "/" not in entity_path:
        raise ZkDataError(f"Unsupported config change notification: {data!r}")
    entity_type, _, name = entity_path.partition("/")
    return entity_type, name


# -- /cluster/id ----------------------------------------------------------------------------


def encode_cluster_id(cluster_id: str) -> bytes:
    return _dumps({"version": "1", "id": cluster_id})  # Kafka writes the version as a string


def decode_cluster_id(data: bytes) -> str:
    doc = _loads(data, "the cluster id json")
    cluster_id = doc.get("id")
    if not isinstance(cluster_id, str):
        raise ZkDataError(f"Failed to parse the cluster id json {data!r}")
    return cluster_id


# -- /latest_producer_id_block --------------------------------------------------------------

PRODUCER_ID_BLOCK_VERSION = 1
MAX_PRODUCER_ID = 2**63 - 1


@dataclass(frozen=True)
class ProducerIdBlock:
    """The last block of producer ids handed to a broker: [block_start, block_end], inclusive,
    both written as decimal strings (they are longs)."""

    broker: int
    block_start: int
    block_end: int

    @property
    def size(self) -> int:
        return self.block_end - self.block_start + 1

    def encode(self) -> bytes:
        return _dumps(
            {
                "version": PRODUCER_ID_BLOCK_VERSION,
                "broker": self.broker,
                "block_start": str(self.block_start),
                "block_end": str(self.block_end),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ProducerIdBlock:
        doc = _loads(data, "the producerId block json")
        try:
            return cls(int(doc["broker"]), int(doc["block_start"]), int(doc["block_end"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ZkDataError(f"Failed to parse the producerId block json {data!r}") from e

    @staticmethod
    def next_after(previous: ProducerIdBlock | None, broker: int, size: int) -> ProducerIdBlock:
        """The block that follows ``previous`` (or the first one, from 0), for ``broker``."""
        start = 0 if previous is None else previous.block_end + 1
        if start > MAX_PRODUCER_ID - size:
            raise ZkDataError(
                "Exhausted all producerIds as the next block's end producerId has exceeded "
                f"long type limit (current block end producerId is {start - 1})"
            )
        return ProducerIdBlock(broker, start, start + size - 1)
