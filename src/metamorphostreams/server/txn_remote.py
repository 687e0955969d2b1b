"""Transactions across the brokers of a cluster.

What Kafka's brokers send each other for a transaction, and what this module does for the
``TxnRuntime`` when the other end is another broker:

- the coordinator's COMMIT/ABORT markers: appended here for the partitions this broker
  leads and sent as WriteTxnMarkers to the leaders of the others; a marker counts as
  written once the partition's ISR has it (Kafka appends markers with acks=all), so a
  leader change cannot lose a marker of a transaction already completed;
- a partition leader's KIP-890 check of a transactional batch (and of the offsets
  partition of a TxnOffsetCommit): AddPartitionsToTxn v4 (verify only) or v5 (add, for
  transaction version 2) to the transaction's coordinator.

Answers that a later attempt may turn into a success (no leader yet, the leader moved, the
ISR too small, the peer unreachable) come back as errors that the runtime retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..client.errors import KafkaError
from ..coordinator.transaction import TxnMarkers
from ..protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from ..protocol._generated.write_txn_markers import (
    WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
)
from ..protocol.errors import ErrorCode
from .inter_broker import InterBrokerClient
from .replica_manager import Replication, leader_epoch_of

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["TxnPeers"]

TopicPartition = tuple[str, int]
WRITE_TXN_MARKERS_VERSION = 2  # carries the transaction version (KIP-890 part 2)
VERIFY_VERSION = 4  # brokers' batched AddPartitionsToTxn, verify only
ADD_VERSION = 5  # ... adding the partition for a transaction-version-2 producer
MARKER_TIMEOUT_S = 30.0

# Writes a marker into a local leader log: the runtime's own append path.
WriteLocal = Callable[[TxnMarkers, str, int, int], ErrorCode]


class TxnPeers:
    """The transaction side's requests to other brokers. Loop-owned."""

    def __init__(self, broker: Broker, write_local: WriteLocal) -> None:
        self.broker = broker
        self.write_local = write_local
        cluster = broker.cluster
        assert cluster is not None
        self.cluster = cluster
        self.client = InterBrokerClient(broker.broker_id, cluster.endpoint)

    def close(self) -> None:
        self.client.close()

    # -- markers --------------------------------------------------------------------------

    async def write_markers(self, markers: TxnMarkers) -> dict[TopicPartition, ErrorCode]:
        """Each partition's answer: local ones appended and replicated, remote ones asked of
        their leaders."""
        broker = self.broker
        replicas = broker.replicas
        now = broker.now_ms()
        errors: dict[TopicPartition, ErrorCode] = {}
        local: list[TopicPartition] = []
        waits: list[Replication] = []
        remote: dict[int, list[TopicPartition]] = {}
        for tp in markers.partitions:
            topic, partition = tp
            info = broker.metadata.topics.get(topic)
            if info is None or not 0 <= partition < info.partitions:
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION  # deleted: nothing to mark
                continue
            plog = replicas.get_log(topic, partition)
            if plog is not None:
                error = self.write_local(markers, topic, partition, now)
                if error == ErrorCode.NONE:
                    local.append(tp)
                    waits.append((topic, partition, plog.log_end_offset, leader_epoch_of(plog)))
                else:
                    errors[tp] = error
                continue
            leader, _ = self.cluster.leader_of(topic, partition)
            if leader < 0 or leader == broker.broker_id:
                errors[tp] = ErrorCode.NOT_LEADER_OR_FOLLOWER  # no leader yet: retried
            else:
                remote.setdefault(leader, []).append(tp)
        replicas.notify_append()
        sends = [self._send_markers(leader, markers, tps) for leader, tps in remote.items()]
        for answer in await asyncio.gather(self._replicated(local, waits), *sends):
            errors.update(answer)
        return errors

    async def _replicated(
        self, local: list[TopicPartition], waits: list[Replication]
    ) -> dict[TopicPartition, ErrorCode]:
        errors = await self.broker.replicas.await_replicated(waits, MARKER_TIMEOUT_S)
        return dict(zip(local, errors, strict=True))

    async def _send_markers(
        self, leader: int, markers: TxnMarkers, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        request = WriteTxnMarkersRequest(
            markers=[
                WriteTxnMarkersRequest.WritableTxnMarker(
                    producer_id=markers.producer_id,
                    producer_epoch=markers.producer_epoch,
                    transaction_result=markers.commit,
                    topics=[
                        WriteTxnMarkersRequest.WritableTxnMarkerTopic(name=t, partition_indexes=ps)
                        for t, ps in by_topic.items()
                    ],
                    coordinator_epoch=markers.coordinator_epoch,
                    transaction_version=markers.transaction_version,
                )
            ]
        )
        try:
            response: WriteTxnMarkersResponse = await self.client.request(
                leader, request, WRITE_TXN_MARKERS_VERSION
            )
        except KafkaError:
            return {tp: ErrorCode.NETWORK_EXCEPTION for tp in partitions}
        answers: dict[TopicPartition, ErrorCode] = {}
        for result in response.markers:
            for answered in result.topics:
                for p in answered.partitions:
                    error = ErrorCode(p.error_code)
                    if error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        # The topic exists (we checked): the leader has not caught up with
                        # the metadata yet. Kafka's marker channel retries too.
                        error = ErrorCode.NOT_LEADER_OR_FOLLOWER
                    answers[(answered.name, p.partition_index)] = error
        return {tp: answers.get(tp, ErrorCode.NETWORK_EXCEPTION) for tp in partitions}

    # -- KIP-890 checks -------------------------------------------------------------------

    async def check_partition(
        self,
        coordinator: int,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        topic: str,
        partition: int,
        *,
        add: bool,
    ) -> ErrorCode:
        """Ask broker ``coordinator`` whether the partition is in the producer's
        transaction (``add``: add it, transaction version 2)."""
        Txn = AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
        request = AddPartitionsToTxnRequest(
            transactions=[
                Txn(
                    transactional_id=transactional_id,
                    producer_id=producer_id,
                    producer_epoch=producer_epoch,
                    verify_only=not add,
                    topics=[
                        AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(
                            name=topic, partitions=[partition]
                        )
                    ],
                )
            ]
        )
        try:
            response: AddPartitionsToTxnResponse = await self.client.request(
                coordinator, request, ADD_VERSION if add else VERIFY_VERSION
            )
        except KafkaError:
            return ErrorCode.NETWORK_EXCEPTION
        if response.error_code != ErrorCode.NONE:
            return ErrorCode(response.error_code)
        for result in response.results_by_transaction:
            for t in result.topic_results:
                for p in t.results_by_partition:
                    if t.name == topic and p.partition_index == partition:
                        return ErrorCode(p.partition_error_code)
        return ErrorCode.NETWORK_EXCEPTION  # not answered: retried by the client
