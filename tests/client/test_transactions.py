"""Transactions in our clients: the transactional producer and read_committed consumers.

Each scenario is a function of a bootstrap address. ``test_reference_kafka`` runs them
against Apache Kafka (the session's one reference JVM; skipped without Java or the jars,
failed with CI=true), which tells whether the client is right; ``test_our_broker`` runs the
same against our broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from helpers.reference_kafka import ReferenceKafka, reference_kafka

from metamorphostreams.client import (
    Admin,
    AsyncConsumer,
    AsyncProducer,
    ConfigError,
    Consumer,
    ConsumerRecord,
    NewTopic,
    Producer,
    ProducerFencedError,
    TopicPartition,
    TransactionAbortedError,
    TransactionStateError,
)
from metamorphostreams.client.admin import OffsetSpec
from metamorphostreams.client.consumer import _PartitionState
from metamorphostreams.protocol.records import build_batch, build_end_txn_marker

from .conftest import serves_api

__all__ = ["reference_kafka"]


END_TXN = 26  # EndTxn: a broker with transactions advertises it
READ_LIMIT_S = 30.0
MAX_BLOCK_MS = 30000  # a first FindCoordinator makes Kafka create __transaction_state


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _topic(bootstrap: str, prefix: str, partitions: int = 2) -> str:
    name = _unique(prefix)
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(name, partitions, 1)])
    return name


def _producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "max.block.ms": MAX_BLOCK_MS,
            **extra,
        }
    )


def _settle(bootstrap: str, tps: list[TopicPartition]) -> None:
    """Wait for the transaction markers: EndTxn returns once the coordinator has decided,
    and the markers (and with them the last stable offset) follow."""
    deadline = time.monotonic() + READ_LIMIT_S
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        specs: dict[TopicPartition, OffsetSpec] = dict.fromkeys(tps, "latest")
        while admin.list_offsets(specs, read_committed=True) != admin.list_offsets(specs):
            assert time.monotonic() < deadline, "transaction markers never arrived"
            time.sleep(0.05)


def _read_all(
    bootstrap: str, topic: str, partitions: int, isolation: str, *, settle: bool = True
) -> list[ConsumerRecord]:
    """Every record up to the end (the last stable offset for read_committed); asserts the
    positions reach it, i.e. that the consumer moves past control and aborted batches.
    ``settle``: first wait until no transaction is open on the partitions."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    if settle:
        _settle(bootstrap, tps)
    config = {
        "bootstrap.servers": bootstrap,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
    }
    got: list[ConsumerRecord] = []
    with Consumer(config) as consumer:
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + READ_LIMIT_S
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{isolation}: positions never reached {ends}"
            got += consumer.poll(0.2)
        got += consumer.poll(0.2)  # nothing beyond the end may show up
        assert {tp: consumer.position(tp) for tp in tps} == ends
    return got


def _values(records: Iterable[ConsumerRecord]) -> list[bytes]:
    return sorted(r.value or b"" for r in records)


# --------------------------------------------------------------------------- scenarios


def commit_makes_records_visible(bootstrap: str) -> None:
    """Records of an open transaction are invisible to read_committed, visible to
    read_uncommitted; once committed, read_committed sees them all, exactly once."""
    topic = _topic(bootstrap, "txn-commit")
    sent = [b"v%02d" % i for i in range(20)]
    with _producer(bootstrap, _unique("tx")) as producer:
        producer.init_transactions()
        producer.begin_transaction()
        futures = [producer.produce(topic, v, key=b"k%d" % i) for i, v in enumerate(sent)]
        producer.flush()
        assert all(f.result().offset >= 0 for f in futures)
        assert _read_all(bootstrap, topic, 2, "read_committed", settle=False) == []
        uncommitted = _read_all(bootstrap, topic, 2, "read_uncommitted", settle=False)
        assert _values(uncommitted) == sent
        producer.commit_transaction()
    assert _values(_read_all(bootstrap, topic, 2, "read_committed")) == sent


def abort_hides_records(bootstrap: str) -> None:
    """An aborted transaction's records are skipped by read_committed, delivered by
    read_uncommitted; control records are never delivered; records not sent yet when the
    abort comes fail with TransactionAbortedError; the producer goes on afterwards."""
    topic = _topic(bootstrap, "txn-abort")
    aborted = [b"a%02d" % i for i in range(10)]
    committed = [b"c%02d" % i for i in range(10)]
    with _producer(bootstrap, _unique("tx"), **{"linger.ms": 2000}) as producer:
        producer.init_transactions()
        producer.begin_transaction()
        for i, v in enumerate(aborted):
            producer.produce(topic, v, key=b"k%d" % i)
        producer.flush()
        producer.abort_transaction()

        producer.begin_transaction()
        unsent = producer.produce(topic, b"never")
        producer.abort_transaction()  # before linger.ms lets the batch go
        with pytest.raises(TransactionAbortedError):
            unsent.result(5)

        producer.begin_transaction()
        for i, v in enumerate(committed):
            producer.produce(topic, v, key=b"k%d" % i)
        producer.commit_transaction()
    assert _values(_read_all(bootstrap, topic, 2, "read_committed")) == committed
    uncommitted = _read_all(bootstrap, topic, 2, "read_uncommitted")
    assert _values(uncommitted) == sorted(aborted + committed)  # and no control records


def consume_transform_produce(bootstrap: str) -> None:
    """Input offsets committed with send_offsets_to_transaction count only when the
    transaction commits: after an aborted round the group's offsets are unchanged, after a
    committed one they are the input's end, and the output holds one copy of each result."""
    source = _topic(bootstrap, "txn-in")
    sink = _topic(bootstrap, "txn-out")
    group = _unique("txn-group")
    inputs = [b"in-%02d" % i for i in range(10)]
    with Producer({"bootstrap.servers": bootstrap}) as plain:
        for i, v in enumerate(inputs):
            plain.produce(source, v, key=b"k%d" % i)
        plain.flush()
    tps = [TopicPartition(source, p) for p in range(2)]
    consumer_config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    with (
        Consumer(consumer_config) as consumer,
        _producer(bootstrap, _unique("tx")) as producer,
    ):
        consumer.subscribe([source])
        producer.init_transactions()

        def one_round(commit: bool) -> None:
            records: list[ConsumerRecord] = []
            deadline = time.monotonic() + READ_LIMIT_S
            while len(records) < len(inputs):
                assert time.monotonic() < deadline, f"read {len(records)} of {len(inputs)}"
                records += consumer.poll(0.2)
            meta = consumer.group_metadata()
            assert meta.group_id == group and meta.generation >= 1 and meta.member_id
            producer.begin_transaction()
            for r in records:
                producer.produce(sink, (r.value or b"").upper(), key=r.key)
            offsets: dict[TopicPartition, int] = {}
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
            producer.send_offsets_to_transaction(offsets, meta)
            if commit:
                producer.commit_transaction()
            else:
                producer.flush()  # written, so read_uncommitted sees them after the abort
                producer.abort_transaction()

        one_round(commit=False)
        assert consumer.committed(tps) == dict.fromkeys(tps)
        for tp in tps:
            consumer.seek_to_beginning(tp)  # back to the (absent) committed offsets
        one_round(commit=True)
        ends = consumer.end_offsets(tps)
        assert consumer.committed(tps) == ends
    assert _values(_read_all(bootstrap, sink, 2, "read_committed")) == sorted(
        v.upper() for v in inputs
    )
    assert len(_read_all(bootstrap, sink, 2, "read_uncommitted")) == 2 * len(inputs)


def second_producer_fences_the_first(bootstrap: str) -> None:
    """init_transactions() with the same transactional id fences the older producer: its
    next operation raises ProducerFencedError, it refuses further work, and the records of
    its open transaction never become visible to read_committed."""
    topic = _topic(bootstrap, "txn-fence")
    transactional_id = _unique("tx")
    with _producer(bootstrap, transactional_id) as old:
        old.init_transactions()
        old.begin_transaction()
        for i in range(5):
            old.produce(topic, b"old-%d" % i, key=b"k%d" % i)
        old.flush()
        with _producer(bootstrap, transactional_id) as new:
            new.init_transactions()
            with pytest.raises(ProducerFencedError):
                old.commit_transaction()
            with pytest.raises(ProducerFencedError):
                old.produce(topic, b"late")
            with pytest.raises(ProducerFencedError):
                old.begin_transaction()
            with pytest.raises(ProducerFencedError):
                old.abort_transaction()
            new.begin_transaction()
            for i in range(3):
                new.produce(topic, b"new-%d" % i, key=b"k%d" % i)
            new.commit_transaction()
    assert _values(_read_all(bootstrap, topic, 2, "read_committed")) == [
        b"new-0",
        b"new-1",
        b"new-2",
    ]
    assert len(_read_all(bootstrap, topic, 2, "read_uncommitted")) == 8


def async_clients(bootstrap: str) -> None:
    """The asyncio producer and consumer: abort, then commit with offsets, from one loop."""
    topic = _topic(bootstrap, "txn-async")
    group = _unique("txn-async-group")

    async def run() -> None:
        config = {"bootstrap.servers": bootstrap, "max.block.ms": MAX_BLOCK_MS}
        async with (
            AsyncProducer(config, transactional_id=_unique("tx")) as producer,
            AsyncConsumer(
                {"bootstrap.servers": bootstrap, "group.id": group},
                isolation_level="read_committed",
            ) as consumer,
        ):
            await producer.init_transactions()
            producer.begin_transaction()
            aborted = await producer.send(topic, b"gone", partition=0)
            await producer.flush()
            assert (await aborted).offset == 0
            await producer.abort_transaction()
            producer.begin_transaction()
            await producer.send(topic, b"kept", partition=0)
            tp = TopicPartition(topic, 0)
            await producer.send_offsets_to_transaction({tp: 7}, consumer.group_metadata())
            await producer.commit_transaction()
            assert await consumer.committed([tp]) == {tp: 7}

    asyncio.run(run())
    records = _read_all(bootstrap, topic, 2, "read_committed")
    assert [(r.value, r.offset) for r in records] == [(b"kept", 2)]  # 1: the abort marker


SCENARIOS: list[Callable[[str], None]] = [
    commit_makes_records_visible,
    abort_hides_records,
    consume_transform_produce,
    second_producer_fences_the_first,
    async_clients,
]
IDS = [s.__name__ for s in SCENARIOS]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_reference_kafka(reference_kafka: ReferenceKafka, scenario: Callable[[str], None]) -> None:
    scenario(reference_kafka.bootstrap)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_our_broker(bootstrap: str, scenario: Callable[[str], None]) -> None:
    assert serves_api(bootstrap, END_TXN), "the broker does not advertise EndTxn"
    scenario(bootstrap)


# --------------------------------------------------------------------------- no broker needed


def test_transactional_id_needs_idempotence() -> None:
    base = {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "t"}
    with pytest.raises(ConfigError, match=r"enable\.idempotence"):
        AsyncProducer({**base, "enable.idempotence": False})
    with pytest.raises(ConfigError, match="acks=all"):
        AsyncProducer({**base, "acks": 1})
    producer = AsyncProducer(base, transaction_timeout_ms=5000)
    assert producer.transactional_id == "t"
    assert producer.config["transaction.timeout.ms"] == 5000


def test_methods_out_of_order(bootstrap: str) -> None:
    """The state checks happen before any transactional request (our broker suffices)."""
    with _producer(bootstrap, _unique("tx")) as producer:
        with pytest.raises(TransactionStateError, match="init_transactions"):
            producer.begin_transaction()
        with pytest.raises(TransactionStateError, match="init_transactions"):
            producer.produce("t", b"x")
        with pytest.raises(TransactionStateError):
            producer.commit_transaction()
    with Producer({"bootstrap.servers": bootstrap}) as plain:
        with pytest.raises(TransactionStateError, match=r"transactional\.id"):
            plain.begin_transaction()


def _decode(isolation: str, data: bytes, aborted: list[tuple[int, int]]) -> tuple[list[int], int]:
    consumer = AsyncConsumer({"bootstrap.servers": "127.0.0.1:1", "isolation.level": isolation})
    state = _PartitionState(position=0)
    entries = [SimpleNamespace(producer_id=p, first_offset=o) for p, o in aborted]
    consumer._decode(TopicPartition("t", 0), state, 0, data, entries)
    assert state.next_fetch is not None
    return [r.offset for r in state.records], state.next_fetch


def test_read_committed_skips_aborted_batches_as_kafka() -> None:
    """Kafka's CompletedFetch rules on a hand-built log: producer 7's transaction at 0-1 is
    aborted (marker at 4), producer 8's at 2-3 commits (marker at 5), 6 is not transactional,
    producer 7's next transaction (7) is not in the aborted list."""

    def txn(pid: int, base: int, count: int) -> bytes:
        rows: list[Any] = [(None, b"%d" % (base + i), [], 1000) for i in range(count)]
        return build_batch(
            rows,
            base_offset=base,
            producer_id=pid,
            producer_epoch=0,
            base_sequence=base,
            is_transactional=True,
        )

    def marker(pid: int, base: int, commit: bool) -> bytes:
        return build_end_txn_marker(
            commit=commit,
            producer_id=pid,
            producer_epoch=0,
            coordinator_epoch=0,
            timestamp=1000,
            base_offset=base,
        )

    log = b"".join(
        [
            txn(7, 0, 2),
            txn(8, 2, 2),
            marker(7, 4, commit=False),
            marker(8, 5, commit=True),
            build_batch([(None, b"6", [], 1000)], base_offset=6),
            txn(7, 7, 1),
        ]
    )
    assert _decode("read_committed", log, [(7, 0)]) == ([2, 3, 6, 7], 8)
    assert _decode("read_uncommitted", log, [(7, 0)]) == ([0, 1, 2, 3, 6, 7], 8)
    # An aborted transaction listed from offset 2 on leaves producer 7's earlier batch alone.
    assert _decode("read_committed", log, [(7, 7)]) == ([0, 1, 2, 3, 6], 8)
    # Only control and aborted batches: nothing delivered, the position still moves on.
    only = txn(7, 0, 2) + marker(7, 2, commit=False)
    assert _decode("read_committed", only, [(7, 0)]) == ([], 3)
