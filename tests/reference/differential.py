"""The differential harness: run one scenario against Kafka and against us, compare answers.

A scenario is a function of a `Target` (a name and a bootstrap address) returning plain data
(dicts, lists, ints, strings): usually a response turned into a dict by kafka-python's codec
(`to_dict()`), which is independent of ours. `Targets.compare` runs it on both brokers,
`normalise`s both answers (drops what legitimately differs: throttle times, cluster and topic
ids, error message texts, ports) and fails with every differing path when they disagree.

Kafka is shared by the whole session, so scenarios name their topics with `unique()`.
Requests are sent on a fresh connection each (`Target.request`) unless a scenario needs one
connection for several (`Target.connect()`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from helpers import kafka_wire as wire
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest

T = TypeVar("T")

READY_LIMIT_S = 30.0  # a new Kafka partition gets its leader in well under a second

# Kafka's error codes the scenarios name (org.apache.kafka.common.protocol.Errors), kept here
# so that expectations never come from the code under test.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
MESSAGE_TOO_LARGE = 10
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
INVALID_TOPIC_EXCEPTION = 17
RECORD_LIST_TOO_LARGE = 18
INVALID_REQUIRED_ACKS = 21
INVALID_TIMESTAMP = 32
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
UNKNOWN_TOPIC_ID = 100

# Retried while a fresh Kafka partition settles; answered at once by us.
SETTLING = {UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER}
COORDINATOR_SETTLING = {COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE}

# What differs between any two Kafka clusters, let alone Kafka and us.
VOLATILE = frozenset(
    {
        "throttle_time_ms",
        "error_message",  # texts are ours to word; codes are compared
        "batch_index_error_message",
        "cluster_id",
        "topic_id",
        "port",
        "session_id",
    }
)


@dataclass(frozen=True)
class Target:
    """One broker under test: 'kafka' (the reference) or 'ours'."""

    name: str
    bootstrap: str

    def connect(self) -> wire.WireConnection:
        return wire.WireConnection(self.bootstrap)

    def request(self, request: Any) -> Any:
        """One request on a fresh connection; the decoded kafka-python response."""
        with self.connect() as conn:
            return conn.request(request, client_id="mms-reference")

    def __str__(self) -> str:
        return f"{self.name}@{self.bootstrap}"


@dataclass(frozen=True)
class Targets:
    kafka: Target
    ours: Target

    def __iter__(self) -> Iterator[Target]:
        return iter((self.kafka, self.ours))

    def run(self, scenario: Callable[[Target], T]) -> tuple[T, T]:
        """(Kafka's answer, ours), Kafka first so a broken scenario fails on the reference."""
        return scenario(self.kafka), scenario(self.ours)

    def compare(
        self,
        scenario: Callable[[Target], Any],
        what: str,
        *,
        drop: Iterable[str] = VOLATILE,
    ) -> Any:
        """Run on both, normalise both, assert they are equal; returns Kafka's normalised answer."""
        kafka, ours = self.run(scenario)
        return compare_answers(kafka, ours, what, drop=drop)

    def compare_each(
        self,
        cases: Mapping[str, Callable[[Target], Any]],
        what: str,
        *,
        drop: Iterable[str] = VOLATILE,
    ) -> dict[str, Any]:
        """`compare` for several cases, reporting every differing case, not just the first."""
        dropped = frozenset(drop)
        found: list[str] = []
        answers: dict[str, Any] = {}
        for case, scenario in cases.items():
            kafka, ours = self.run(scenario)
            answers[case] = kafka_n = normalise(kafka, dropped)
            found += [f"[{case}] {d}" for d in differences(kafka_n, normalise(ours, dropped))]
        if found:
            raise AssertionError(
                f"{what}: our broker's answers differ from Kafka's:\n  " + "\n  ".join(found)
            )
        return answers


# --------------------------------------------------------------------------- comparing


def unique(prefix: str) -> str:
    """A topic name no other test of this session (on the shared Kafka) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def normalise(value: Any, drop: frozenset[str] = VOLATILE) -> Any:
    """Plain data with the `drop` keys removed at every depth (kafka-python objects: dicts)."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {k: normalise(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list | tuple):
        return [normalise(v, drop) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return value


def compare_answers(kafka: Any, ours: Any, what: str, *, drop: Iterable[str] = VOLATILE) -> Any:
    """`Targets.compare` for answers already in hand (for scenarios that post-process them)."""
    dropped = frozenset(drop)
    kafka_n, ours_n = normalise(kafka, dropped), normalise(ours, dropped)
    assert_same(kafka_n, ours_n, what)
    return kafka_n


def differences(kafka: Any, ours: Any, path: str = "") -> list[str]:
    """Every path at which the two answers differ, with both values."""
    if isinstance(kafka, Mapping) and isinstance(ours, Mapping):
        out: list[str] = []
        for key in list(kafka) + [k for k in ours if k not in kafka]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in ours:
                out.append(f"{sub}: only Kafka has it ({kafka[key]!r})")
            elif key not in kafka:
                out.append(f"{sub}: only ours has it ({ours[key]!r})")
            else:
                out += differences(kafka[key], ours[key], sub)
        return out
    if isinstance(kafka, list) and isinstance(ours, list) and len(kafka) == len(ours):
        out = []
        for i, (k, o) in enumerate(zip(kafka, ours, strict=True)):
            out += differences(k, o, f"{path}[{i}]")
        return out
    if kafka != ours:
        return [f"{path or '(answer)'}: Kafka {_short(kafka)}, ours {_short(ours)}"]
    return []


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def assert_same(kafka: Any, ours: Any, what: str) -> None:
    found = differences(kafka, ours)
    if found:
        raise AssertionError(
            f"{what}: our broker's answer differs from Kafka's:\n  " + "\n  ".join(found)
        )


def by_name(items: Sequence[Mapping[str, Any]], key: str = "name") -> dict[Any, Any]:
    """A list of named entries as a dict (answers whose order Kafka does not define)."""
    return {item[key]: item for item in items}


# --------------------------------------------------------------------------- requests


def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = READY_LIMIT_S) -> None:
    """A liveness bound, not a timing assertion."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def create_topics_request(
    topics: Mapping[str, int],
    *,
    configs: Mapping[str, str] | None = None,
    replication_factor: int = 1,
    validate_only: bool = False,
    version: int = 7,
) -> Any:
    creatable = CreateTopicsRequest.CreatableTopic
    return CreateTopicsRequest[version](
        topics=[
            creatable(
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                assignments=[],
                configs=[
                    creatable.CreatableTopicConfig(name=k, value=v)
                    for k, v in (configs or {}).items()
                ],
            )
            for name, partitions in topics.items()
        ],
        timeout_ms=10_000,
        validate_only=validate_only,
    )


def create_topic(
    target: Target, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None
) -> None:
    """CreateTopics, then wait until every partition answers ListOffsets (it has a leader)."""
    response = target.request(create_topics_request({name: partitions}, configs=configs))
    (topic,) = response.topics
    assert topic.error_code == NONE, f"{target}: CreateTopics {name}: {topic}"
    wait_partitions_ready(target, name, partitions)


def wait_partitions_ready(target: Target, name: str, partitions: int) -> None:
    def ready() -> bool:
        return all(
            list_offsets(target, name, p, -1)["error_code"] == NONE for p in range(partitions)
        )

    wait_until(ready, f"{target}: the {partitions} partitions of {name} to get a leader")


def metadata_request(
    topics: Sequence[str] | None, *, version: int = 12, auto_create: bool = False
) -> Any:
    request = MetadataRequest[version](
        topics=None
        if topics is None
        else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics]
    )
    if version >= 4:
        request.allow_auto_topic_creation = auto_create
    if 8 <= version <= 10:
        request.include_cluster_authorized_operations = False
    if version >= 8:
        request.include_topic_authorized_operations = False
    return request


def produce(
    target: Target,
    topic: str,
    partition: int,
    batch: bytes,
    *,
    acks: int = -1,
    version: int = 9,
    conn: wire.WireConnection | None = None,
) -> dict[str, Any]:
    """One batch, one partition: that partition's response as a dict."""
    request = wire.produce_request(topic, partition, batch, acks=acks, version=version)
    response = conn.request(request) if conn is not None else target.request(request)
    return wire.produce_partition_response(response).to_dict()


def produce_request_of(parts: Sequence[tuple[str, int, bytes]], *, acks: int = -1) -> Any:
    """A Produce v9 carrying several (topic, partition, batch)."""
    topic_data = ProduceRequest.TopicProduceData
    by_topic: dict[str, list[Any]] = {}
    for topic, partition, batch in parts:
        by_topic.setdefault(topic, []).append(
            topic_data.PartitionProduceData(index=partition, records=batch)
        )
    return ProduceRequest[9](
        transactional_id=None,
        acks=acks,
        timeout_ms=10_000,
        topic_data=[topic_data(name=t, partition_data=p) for t, p in by_topic.items()],
    )


def fetch(
    target: Target,
    topic: str,
    partition: int,
    offset: int,
    *,
    max_bytes: int = 1 << 20,
    version: int = 12,
) -> dict[str, Any]:
    """Fetch (no wait): the partition's response as a dict; `records` as bytes (b"" if none)."""
    response = target.request(
        wire.fetch_request(topic, partition, offset, version=version, max_bytes=max_bytes)
    )
    assert response.error_code == NONE, f"{target}: Fetch top-level error {response.error_code}"
    (topic_response,) = response.responses
    (partition_response,) = topic_response.partitions
    out: dict[str, Any] = partition_response.to_dict()
    out["records"] = bytes(partition_response.records or b"")
    return out


def fetch_request_many(
    parts: Sequence[tuple[str, int, int]], *, version: int = 12, max_bytes: int = 1 << 20
) -> Any:
    fetch_topic = FetchRequest.FetchTopic
    by_topic: dict[str, list[Any]] = {}
    for topic, partition, offset in parts:
        by_topic.setdefault(topic, []).append(
            fetch_topic.FetchPartition(
                partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes
            )
        )
    return FetchRequest[version](
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        topics=[fetch_topic(topic=t, partitions=p) for t, p in by_topic.items()],
    )


def list_offsets_request(
    topic: str, partitions: Mapping[int, int], *, version: int = 7, isolation_level: int = 0
) -> Any:
    lo_topic = ListOffsetsRequest.ListOffsetsTopic
    request = ListOffsetsRequest[version](
        replica_id=-1,
        topics=[
            lo_topic(
                name=topic,
                partitions=[
                    lo_topic.ListOffsetsPartition(partition_index=p, timestamp=ts)
                    for p, ts in partitions.items()
                ],
            )
        ],
    )
    if version >= 2:
        request.isolation_level = isolation_level
    return request


def list_offsets(
    target: Target, topic: str, partition: int, timestamp: int, *, version: int = 7
) -> dict[str, Any]:
    response = target.request(list_offsets_request(topic, {partition: timestamp}, version=version))
    (topic_response,) = response.topics
    (partition_response,) = topic_response.partitions
    out: dict[str, Any] = partition_response.to_dict()
    return out


def init_producer_id(target: Target, *, version: int = 4) -> tuple[int, int]:
    """(producer id, epoch) for an idempotent (non-transactional) producer."""
    request = InitProducerIdRequest[version](
        transactional_id=None, transaction_timeout_ms=-1, producer_id=-1, producer_epoch=-1
    )
    deadline = time.monotonic() + READY_LIMIT_S
    response = target.request(request)
    # Kafka's first InitProducerId waits for a block of ids from its controller; clients retry.
    while response.error_code in COORDINATOR_SETTLING and time.monotonic() < deadline:
        time.sleep(0.1)
        response = target.request(request)
    assert response.error_code == NONE, f"{target}: InitProducerId: {response}"
    return int(response.producer_id), int(response.producer_epoch)


# --------------------------------------------------------------------------- our codec
# Scenarios of APIs kafka-python does not know (the transaction APIs among them) speak
# through our generated classes (protocol/_generated). Both brokers get the same bytes, so a
# codec bug would show as a difference from Kafka, never as agreement.


def call(
    target: Target, request: Any, version: int, *, conn: wire.WireConnection | None = None
) -> Any:
    """One request of our generated codec at `version`; the decoded response object."""
    from metamorphostreams.protocol._generated import RESPONSE_CLASSES
    from metamorphostreams.protocol._generated.headers import RequestHeader, ResponseHeader
    from metamorphostreams.protocol._primitives import Reader
    from metamorphostreams.protocol.headers import (
        request_header_version,
        response_header_version,
    )

    api_key = request.API_KEY
    correlation_id = wire.next_correlation_id()
    header = RequestHeader(
        request_api_key=api_key,
        request_api_version=version,
        correlation_id=correlation_id,
        client_id="mms-reference",
    ).to_bytes(request_header_version(api_key, version))
    payload = header + request.to_bytes(version)
    if conn is None:
        with target.connect() as fresh:
            data = fresh.roundtrip_raw(payload)
    else:
        data = conn.roundtrip_raw(payload)
    reader = Reader(data)
    got = ResponseHeader.read(reader, response_header_version(api_key, version)).correlation_id
    assert got == correlation_id, f"{target}: correlation id {got}, expected {correlation_id}"
    return RESPONSE_CLASSES[api_key].read(reader, version)


def plain(value: Any) -> Any:
    """A generated message as plain data: dicts by field name, lists, bytes."""
    slots = getattr(type(value), "__slots__", None)
    if slots is not None and hasattr(value, "to_bytes"):
        return {name: plain(getattr(value, name)) for name in slots}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return value


# --------------------------------------------------------------------------- transactions
# Kafka's transaction error codes (org.apache.kafka.common.protocol.Errors).
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
OPERATION_NOT_ATTEMPTED = 55
UNSTABLE_OFFSET_COMMIT = 88
PRODUCER_FENCED = 90
TRANSACTIONAL_ID_NOT_FOUND = 105
TRANSACTION_ABORTABLE = 120

NOT_COORDINATOR = 16
TXN_COORDINATOR_SETTLING = COORDINATOR_SETTLING | {NOT_COORDINATOR}
TXN_TIMEOUT_MS = 60_000
# How often both brokers look for timed-out transactions in these tests (conftest.py).
TXN_ABORT_CHECK_INTERVAL_MS = 1_000
PRODUCER_ID_KEYS = frozenset({"producer_id", "producer_id_filters"})


def mask_producer_ids(value: Any, names: Mapping[int, str]) -> Any:
    """Producer ids (the values of `PRODUCER_ID_KEYS` at any depth) as the scenario's names
    for them: each broker hands out its own ids, but which producer an answer names is
    compared. An id the scenario did not name becomes '<other>'; -1 stays."""

    def one(v: Any) -> Any:
        if isinstance(v, int) and v >= 0:
            return names.get(v, "<other>")
        if isinstance(v, list):
            return [one(x) for x in v]
        return v

    if isinstance(value, Mapping):
        return {
            k: one(v) if k in PRODUCER_ID_KEYS else mask_producer_ids(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_producer_ids(v, names) for v in value]
    return value


def find_transaction_coordinator(target: Target, transactional_id: str, *, version: int = 3) -> Any:
    """FindCoordinator(key_type 1), retried while Kafka creates `__transaction_state`."""
    from metamorphostreams.protocol._generated.find_coordinator import FindCoordinatorRequest

    request = FindCoordinatorRequest(key=transactional_id, key_type=1)
    deadline = time.monotonic() + READY_LIMIT_S
    response = call(target, request, version)
    while response.error_code in COORDINATOR_SETTLING and time.monotonic() < deadline:
        time.sleep(0.1)
        response = call(target, request, version)
    return response


def init_transactional(
    target: Target,
    transactional_id: str,
    *,
    timeout_ms: int = TXN_TIMEOUT_MS,
    producer_id: int = -1,
    producer_epoch: int = -1,
    version: int = 4,
) -> Any:
    """InitProducerId for a transactional id, after FindCoordinator as clients do; retried
    while the coordinator settles (Kafka's first answers), not on any other error."""
    from metamorphostreams.protocol._generated.init_producer_id import InitProducerIdRequest

    find_transaction_coordinator(target, transactional_id or "x")
    request = InitProducerIdRequest(
        transactional_id=transactional_id,
        transaction_timeout_ms=timeout_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )
    deadline = time.monotonic() + READY_LIMIT_S
    response = call(target, request, version)
    # NOT_COORDINATOR: Kafka names itself before its state partition has loaded.
    while response.error_code in TXN_COORDINATOR_SETTLING and time.monotonic() < deadline:
        time.sleep(0.1)
        response = call(target, request, version)
    return response


def describe_transaction(target: Target, transactional_id: str) -> Any:
    """DescribeTransactions v0 of one id: its TransactionState entry."""
    from metamorphostreams.protocol._generated.describe_transactions import (
        DescribeTransactionsRequest,
    )

    response = call(target, DescribeTransactionsRequest(transactional_ids=[transactional_id]), 0)
    (state,) = response.transaction_states
    return state


def wait_transaction_state(
    target: Target, transactional_id: str, states: Iterable[str], what: str = ""
) -> None:
    """Until DescribeTransactions shows one of `states` (Kafka writes markers after EndTxn
    has answered, so a commit is complete a moment later)."""
    wanted = set(states)
    wait_until(
        lambda: describe_transaction(target, transactional_id).transaction_state in wanted,
        what or f"{target}: {transactional_id} to reach {sorted(wanted)}",
    )
