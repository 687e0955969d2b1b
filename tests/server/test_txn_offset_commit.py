"""TxnOffsetCommit through an in-process broker: refusals, the transactional batch in
``__consumer_offsets``, offsets pending until the marker, and replay after a restart.

Markers are written here by hand (``append_control_marker``, then the group runtime's
``complete_transaction``, as the transaction side does); end-to-end transactions are in
tests/e2e/test_transactions.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from metamorphostreams.protocol._generated.offset_fetch import OffsetFetchRequest
from metamorphostreams.protocol._generated.txn_offset_commit import TxnOffsetCommitRequest
from metamorphostreams.protocol.api_versions import served_range
from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.records import iter_batches
from metamorphostreams.server.broker import Broker
from metamorphostreams.server.group_runtime import OFFSETS_TOPIC
from metamorphostreams.server.replica_manager import LEADER_EPOCH

from .ourwire import WireClient
from .test_apis import create

PID, EPOCH = 7, 5
# These producers have no transaction at the transaction coordinator (the markers are written
# by hand): Kafka's switch for the KIP-890 check lets the group side be tested alone. The check
# itself is compared with Kafka's in tests/reference/test_transactions.py.
NO_VERIFICATION = {"transaction.partition.verification.enable": "false"}
OTHER_PID = 8


def txn_request(
    group: str,
    offsets: dict[tuple[str, int], int],
    *,
    producer: tuple[int, int] = (PID, EPOCH),
    generation: int = -1,
    member_id: str = "",
) -> TxnOffsetCommitRequest:
    P = TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition
    by_topic: dict[str, list[Any]] = {}
    for (topic, p), offset in offsets.items():
        by_topic.setdefault(topic, []).append(P(partition_index=p, committed_offset=offset))
    return TxnOffsetCommitRequest(
        transactional_id="tx",
        group_id=group,
        producer_id=producer[0],
        producer_epoch=producer[1],
        generation_id=generation,
        member_id=member_id,
        topics=[
            TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=t, partitions=ps)
            for t, ps in by_topic.items()
        ],
    )


async def txn_commit(
    client: WireClient, req: TxnOffsetCommitRequest, version: int = 4
) -> dict[tuple[str, int], int]:
    """v4 by default: v5 (transaction version 2) adds the offsets partition to the producer's
    transaction whatever verification says, so the group coordinator alone is v4's."""
    resp = await client.request(req, version)
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


async def fetch(
    client: WireClient, group: str, partitions: list[int], *, stable: bool
) -> dict[int, tuple[int, int]]:
    req = OffsetFetchRequest(
        require_stable=stable,
        groups=[
            OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id=group,
                topics=[
                    OffsetFetchRequest.OffsetFetchRequestTopics(
                        name="orders", partition_indexes=partitions
                    )
                ],
            )
        ],
    )
    resp = await client.request(req, 8)
    return {
        p.partition_index: (p.committed_offset, p.error_code)
        for p in resp.groups[0].topics[0].partitions
    }


def batches_of(broker: Broker, partition: int) -> list[Any]:
    plog = broker.replicas.get_log(OFFSETS_TOPIC, partition)
    assert plog is not None
    data = plog.read(
        plog.log_start_offset, 1 << 20, max_offset=plog.log_end_offset, min_one_message=True
    ).read_bytes()
    return [header for header, _ in iter_batches(data)]


UNSTABLE = ErrorCode.UNSTABLE_OFFSET_COMMIT


def test_txn_offset_commit_through_the_broker(tmp_path: Path) -> None:
    served = served_range(28)
    assert served is not None and (served.served_min, served.max_version) == (0, 5)

    async def first_run() -> None:
        async with Broker(tmp_path / "data", port=0, props=NO_VERIFICATION) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            try:
                await create(client, "orders", 2)
                # Refusals: unknown topic or partition, empty group id, an unknown group
                # with a generation (v3+).
                unknown = txn_request("g", {("nope", 0): 1, ("orders", 9): 1})
                assert await txn_commit(client, unknown) == {
                    ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    ("orders", 9): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                }
                assert await txn_commit(client, txn_request("", {("orders", 0): 1})) == {
                    ("orders", 0): ErrorCode.INVALID_GROUP_ID
                }
                assert await txn_commit(
                    client, txn_request("g", {("orders", 0): 1}, generation=1, member_id="m")
                ) == {("orders", 0): ErrorCode.ILLEGAL_GENERATION}

                # Accepted (v0: no member fields): pending until the marker.
                req = txn_request("g", {("orders", 0): 10, ("orders", 1): 11})
                assert await txn_commit(client, req, version=0) == {
                    ("orders", 0): 0,
                    ("orders", 1): 0,
                }
                assert await fetch(client, "g", [0, 1], stable=False) == {0: (-1, 0), 1: (-1, 0)}
                assert await fetch(client, "g", [0, 1], stable=True) == {
                    0: (-1, UNSTABLE),
                    1: (-1, UNSTABLE),
                }
                partition = broker.groups.coordinator.partition_for("g")
                txn_batches = [h for h in batches_of(broker, partition) if h.is_transactional]
                assert [
                    (h.producer_id, h.producer_epoch, h.base_sequence) for h in txn_batches
                ] == [(PID, EPOCH, -1)]
                assert txn_batches[0].records_count == 2

                # A stale epoch is refused by the log: the write is reverted.
                stale = txn_request("g", {("orders", 1): 99}, producer=(PID, EPOCH - 1))
                assert await txn_commit(client, stale) == {
                    ("orders", 1): ErrorCode.INVALID_PRODUCER_EPOCH
                }

                # The COMMIT marker, as the transaction side writes and reports it.
                plog = broker.replicas.get_log(OFFSETS_TOPIC, partition)
                assert plog is not None
                marker = plog.append_control_marker(
                    PID,
                    EPOCH,
                    commit=True,
                    coordinator_epoch=0,
                    leader_epoch=LEADER_EPOCH,
                    now_ms=broker.now_ms(),
                )
                assert marker.error == ErrorCode.NONE
                broker.groups.complete_transaction(partition, PID, True)
                assert await fetch(client, "g", [0, 1], stable=True) == {
                    0: (10, 0),
                    1: (11, 0),
                }

                # Another transaction, left open across the restart.
                other = txn_request("g", {("orders", 0): 500}, producer=(OTHER_PID, 0))
                assert await txn_commit(client, other) == {("orders", 0): 0}
            finally:
                await client.close()

    async def second_run() -> None:
        async with Broker(tmp_path / "data", port=0, props=NO_VERIFICATION) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            try:
                # Replayed: the committed transaction's offsets, the open one still pending.
                assert await fetch(client, "g", [0, 1], stable=False) == {0: (10, 0), 1: (11, 0)}
                assert await fetch(client, "g", [0, 1], stable=True) == {
                    0: (-1, UNSTABLE),
                    1: (11, 0),
                }
                partition = broker.groups.coordinator.partition_for("g")
                broker.groups.complete_transaction(partition, OTHER_PID, False)
                assert await fetch(client, "g", [0], stable=True) == {0: (10, 0)}
            finally:
                await client.close()

    asyncio.run(first_run())
    asyncio.run(second_run())
