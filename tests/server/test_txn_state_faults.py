"""The transaction coordinator when ``__transaction_state`` cannot take a record.

A decision that is not persisted must not be answered: the client's connection closes (it
retries, as after any lost connection) and the coordinator goes back to what is on disk, so
the retry is decided afresh and the transaction still completes. The failure is injected into
the state partition's log of a real in-process broker; everything else is the real path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
)
from metamorphostreams.protocol._generated.end_txn import EndTxnRequest
from metamorphostreams.protocol._generated.init_producer_id import InitProducerIdRequest
from metamorphostreams.protocol._generated.produce import ProduceRequest
from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.server.broker import Broker
from metamorphostreams.server.txn_runtime import TRANSACTION_STATE_TOPIC
from metamorphostreams.storage import AppendResult

from .ourwire import WireClient
from .test_apis import batch, create, fetch_request

TID = "faulty"


async def _produce_txn(client: WireClient, pid: int, epoch: int) -> Any:
    records = batch([b"a", b"b"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                    is_transactional=True)  # fmt: skip
    req = ProduceRequest(
        transactional_id=TID,
        acks=-1,
        timeout_ms=5000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="t",
                partition_data=[ProduceRequest.PartitionProduceData(index=0, records=records)],
            )
        ],
    )
    return (await client.request(req, 9)).responses[0].partition_responses[0]


def test_end_txn_not_persisted_closes_the_connection_and_is_decided_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with Broker(tmp_path / "data", port=0) as broker:
            client = await WireClient.connect(broker.host, broker.port)
            await create(client, "t")
            ids = await client.request(
                InitProducerIdRequest(transactional_id=TID, transaction_timeout_ms=60_000), 4
            )
            assert ids.error_code == ErrorCode.NONE
            pid, epoch = ids.producer_id, ids.producer_epoch
            added = await client.request(
                AddPartitionsToTxnRequest(
                    v3_and_below_transactional_id=TID,
                    v3_and_below_producer_id=pid,
                    v3_and_below_producer_epoch=epoch,
                    v3_and_below_topics=[
                        AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(name="t", partitions=[0])
                    ],
                ),
                3,
            )
            assert (
                added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
                == 0
            )
            assert (await _produce_txn(client, pid, epoch)).error_code == ErrorCode.NONE

            # The PrepareCommit record cannot be written once.
            state_log = broker.replicas.get_log(
                TRANSACTION_STATE_TOPIC, broker.transactions.coordinator.partition_for(TID)
            )
            assert state_log is not None
            real_append = state_log.append_as_leader
            failures = []

            def failing_append(*args: Any, **kwargs: Any) -> AppendResult:
                if not failures:
                    failures.append(1)
                    return AppendResult(ErrorCode.KAFKA_STORAGE_ERROR, log_start_offset=0)
                return real_append(*args, **kwargs)

            state_log.append_as_leader = failing_append  # type: ignore[method-assign]
            end = EndTxnRequest(
                transactional_id=TID, producer_id=pid, producer_epoch=epoch, committed=True
            )
            try:
                answer = await client.request(end, 3)
            except (asyncio.IncompleteReadError, ConnectionError):
                answer = None
            assert answer is None, f"answered {answer} without persisting the decision"
            assert failures == [1]
            await client.close()

            # Nothing was decided: the transaction is still open and the retry commits it.
            client = await WireClient.connect(broker.host, broker.port)
            data_log = broker.replicas.get_log("t", 0)
            assert data_log is not None and data_log.last_stable_offset == 0
            assert (await client.request(end, 3)).error_code == ErrorCode.NONE
            for _ in range(100):
                if data_log.last_stable_offset == 3:  # two records and the COMMIT marker
                    break
                await asyncio.sleep(0.05)
            assert data_log.last_stable_offset == 3
            req = fetch_request("t", {0: 0})
            req.isolation_level = 1
            response = await client.request(req, 12)
            part = response.responses[0].partitions[0]
            assert (part.error_code, part.last_stable_offset, part.aborted_transactions) == (
                0,
                3,
                [],
            )
            await client.close()

    asyncio.run(main())
