"""Runs the pure transaction coordinator on the event loop.

The coordinator (``coordinator/transaction/``) decides; this module does its I/O, as
``group_runtime`` does for groups: it appends the records of every decision to
``__transaction_state`` before the answer goes out, parks requests on futures until the
coordinator completes them, fires its timers (transaction timeouts, id expiration), replays
``__transaction_state`` at start-up, and writes the COMMIT/ABORT markers the coordinator asks
for. A standalone broker leads every partition, so the markers go straight into the partition
logs; in a cluster ``txn_remote`` appends those led here and sends the others to their
leaders (WriteTxnMarkers), and answers the KIP-890 checks of transactions coordinated by
another broker. A marker written to ``__consumer_offsets`` also completes the group
coordinator's pending transactional offsets.

In a cluster the coordinator epoch of a transaction is the leader epoch of its
``__transaction_state`` partition, so markers of a coordinator that lost the partition are
fenced by the next one's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..coordinator import CoordinatorRecord
from ..coordinator.transaction import (
    TransactionConfig,
    TransactionCoordinator,
    TxnMarkers,
    TxnResult,
)
from ..protocol.errors import DecodeError, ErrorCode
from ..protocol.features import finalized_level
from ..protocol.record_batch import BatchHeader
from ..protocol.records import Record, build_batch
from ._coordinator_io import (
    DeadlineTimer,
    await_coordinator_records,
    ensure_internal_topic,
    replay_partition,
)
from .connection import CloseConnection
from .group_runtime import OFFSETS_TOPIC
from .replica_manager import LEADER_EPOCH, Replication, leader_epoch_of

if TYPE_CHECKING:
    from .broker import Broker
    from .txn_remote import TxnPeers

log = logging.getLogger("metamorphostreams.server")

TRANSACTION_STATE_TOPIC = "__transaction_state"
STATE_REPLICATION_TIMEOUT_S = 30.0  # a cluster's coordinator waits for its records' ISR
MARKER_RETRY_S = 0.1  # a marker append that failed (disk full, ...) is retried, as Kafka does
COORDINATOR_EPOCH = LEADER_EPOCH  # the coordinator epoch is the state partition's leader epoch


class TxnRuntime:
    """Loop-owned driver of one ``TransactionCoordinator`` for all ``__transaction_state``
    partitions."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.config = TransactionConfig.from_properties(broker.config.props)
        self.num_partitions = self.config.state_log_num_partitions
        self.verification_enabled = self.config.transaction_partition_verification_enable
        self.coordinator = self._new_coordinator()
        self._timer = DeadlineTimer(self._on_timer)
        self._retry: asyncio.TimerHandle | None = None
        self._unwritten: list[TxnMarkers] = []
        self._written: dict[int, dict[tuple[str, int], ErrorCode]] = {}
        self._peers: TxnPeers | None = None
        self._appended: list[Replication] = []  # cluster: the current request's records
        if broker.cluster is not None:
            from .txn_remote import TxnPeers

            self._peers = TxnPeers(broker, self._write_marker)

    def _new_coordinator(self) -> TransactionCoordinator:
        return TransactionCoordinator(
            self.config,
            self.num_partitions,
            allocate_producer_id=self.broker.metadata.allocate_producer_id,
            offsets_partition_for=self.broker.groups.coordinator.partition_for,
            offsets_topic=OFFSETS_TOPIC,
            partition_exists=self._partition_exists,
            transaction_version=finalized_level("transaction.version"),
            coordinator_epoch_of=None if self.broker.cluster is None else self._state_epoch,
        )

    def _state_epoch(self, partition: int) -> int:
        """The leader epoch of a ``__transaction_state`` partition led here."""
        state = self.broker.replicas.leader_state(TRANSACTION_STATE_TOPIC, partition)
        return COORDINATOR_EPOCH if state is None else state.leader_epoch

    def _partition_exists(self, topic: str, partition: int) -> bool:
        info = self.broker.metadata.topics.get(topic)
        return info is not None and 0 <= partition < info.partitions

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Replay ``__transaction_state`` if it exists (it is created on first use), then
        finish what was being committed or aborted when the broker stopped."""
        count = self._load()
        if count:
            log.info("loaded %d records from %s", count, TRANSACTION_STATE_TOPIC)
        self._apply(self.coordinator.on_loaded(self.broker.now_ms(), COORDINATOR_EPOCH))

    def _load(self) -> int:
        info = self.broker.metadata.topics.get(TRANSACTION_STATE_TOPIC)
        if info is None:
            return 0
        return sum(self._replay_partition(partition) for partition in range(info.partitions))

    def reload(self) -> None:
        """The set of ``__transaction_state`` partitions led here changed."""
        self._reload()

    def _reload(self) -> None:
        """Forget what is in memory and replay what is on disk: after a record could not be
        appended, the coordinator goes back to the last state it persisted (Kafka reverts
        the transaction's pending state the same way), and retried requests meet that."""
        self._stop_timers()
        self._unwritten.clear()
        self._written.clear()
        self.coordinator = self._new_coordinator()
        self._load()
        self._apply(self.coordinator.on_loaded(self.broker.now_ms(), COORDINATOR_EPOCH))

    def _replay_partition(self, partition: int) -> int:
        plog = self.broker.replicas.get_log(TRANSACTION_STATE_TOPIC, partition)
        if plog is None:
            return 0
        count = 0

        def visit(header: BatchHeader, records: list[Record]) -> None:
            nonlocal count
            if header.is_control:
                return
            for record in records:
                if record.key is not None:
                    self.coordinator.replay(CoordinatorRecord(partition, record.key, record.value))
                    count += 1

        replay_partition(plog, visit)
        return count

    def stop(self) -> None:
        """Stop the timers and forget the transactions (nothing is parked here)."""
        self._stop_timers()
        if self._peers is not None:
            self._peers.close()
        self.coordinator.unload(self.broker.now_ms())

    def _stop_timers(self) -> None:
        self._timer.cancel()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    # -- requests ------------------------------------------------------------------------

    def ensure_state_topic(self) -> None:
        """Create ``__transaction_state`` on first use, as Kafka does on FindCoordinator."""
        ensure_internal_topic(
            self.broker,
            TRANSACTION_STATE_TOPIC,
            self.num_partitions,
            self.config.state_log_segment_bytes,
        )

    async def call(
        self, handler: Callable[[int, Any, int], TxnResult], request: Any, version: int
    ) -> Any:
        """Run one coordinator handler; its records are written before it is answered."""
        self.ensure_state_topic()
        self._appended = []
        result = handler(self.broker.now_ms(), request, version)
        self._apply(result)
        if self._appended:
            waits, self._appended = self._appended, []
            await await_coordinator_records(self.broker, waits, STATE_REPLICATION_TIMEOUT_S)
        return result.response

    async def check_partition(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        topic: str,
        partition: int,
        *,
        add: bool,
    ) -> ErrorCode:
        """KIP-890 for a partition leader: verify (part 1) or add (``add``, part 2) the
        partition in the producer's transaction, here or at its coordinator."""
        cluster = self.broker.cluster
        if cluster is None or cluster.coordinates_transaction(transactional_id):
            check = self.add_partition if add else self.verify_partition
            return check(transactional_id, producer_id, producer_epoch, topic, partition)
        if TRANSACTION_STATE_TOPIC not in self.broker.metadata.topics:
            return ErrorCode.INVALID_TXN_STATE  # no transaction was ever started
        coordinator, _ = cluster.leader_of(
            TRANSACTION_STATE_TOPIC, self.coordinator.partition_for(transactional_id)
        )
        if coordinator < 0 or self._peers is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return await self._peers.check_partition(
            coordinator,
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
            add=add,
        )

    def verify_partition(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        topic: str,
        partition: int,
    ) -> ErrorCode:
        """KIP-890 part 1: is ``topic-partition`` part of the producer's ongoing transaction?"""
        if TRANSACTION_STATE_TOPIC not in self.broker.metadata.topics:
            return ErrorCode.INVALID_TXN_STATE  # no transaction was ever started here
        errors = self.coordinator.verify_partitions(
            transactional_id, producer_id, producer_epoch, [(topic, partition)]
        )
        return errors.get((topic, partition), ErrorCode.NONE)

    def add_partition(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        topic: str,
        partition: int,
    ) -> ErrorCode:
        """KIP-890 part 2: add ``topic-partition`` to a TV_2 producer's transaction (what
        Kafka's brokers do with AddPartitionsToTxn v5, VerifyOnly false); its record, if
        any, is appended before this returns."""
        if TRANSACTION_STATE_TOPIC not in self.broker.metadata.topics:
            return ErrorCode.INVALID_TXN_STATE  # no transaction was ever started here
        tp = (topic, partition)
        result = self.coordinator.add_partitions_implicitly(
            self.broker.now_ms(), transactional_id, producer_id, producer_epoch, [tp]
        )
        self._apply(result)
        errors: dict[tuple[str, int], ErrorCode] = result.response or {}
        return errors.get(tp, ErrorCode.NONE)

    # -- internals -----------------------------------------------------------------------

    def _apply(self, result: TxnResult) -> None:
        """Make one decision happen: its records first, then its answers and markers."""
        markers = list(result.markers)
        while True:
            if result.records:
                self._append(result.records)
            if not markers:
                break
            # Markers complete synchronously here; what their completion decides is applied
            # in turn (its Complete record, or markers to retry).
            result = self._write_markers(markers.pop(0))
            markers.extend(result.markers)
        self._reschedule()

    def _append(self, records: list[CoordinatorRecord]) -> None:
        by_partition: dict[int, list[CoordinatorRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        now = self.broker.now_ms()
        for partition, batch_records in by_partition.items():
            plog = self.broker.replicas.get_log(TRANSACTION_STATE_TOPIC, partition)
            if plog is None:
                raise RuntimeError(f"{TRANSACTION_STATE_TOPIC}-{partition} is missing")
            batch = build_batch([(r.key, r.value, [], now) for r in batch_records])
            try:
                error = plog.append_as_leader(
                    bytearray(batch), leader_epoch=leader_epoch_of(plog), now_ms=now
                ).error
            except OSError:
                error = ErrorCode.KAFKA_STORAGE_ERROR
            if error != ErrorCode.NONE:
                # The decision is in memory but not on disk: undo it and close the client's
                # connection (it retries, as after any lost connection), never answering as
                # if the change were persisted.
                log.error(
                    "cannot append to %s-%d (%s); reloading the transaction state",
                    TRANSACTION_STATE_TOPIC,
                    partition,
                    error.name,
                )
                self._reload()
                raise CloseConnection(
                    f"transaction state not persisted: {TRANSACTION_STATE_TOPIC}-{partition} "
                    f"{error.name}"
                )
            self.broker.replicas.appended(plog)
            if self._peers is not None:
                self._appended.append(
                    (plog.topic, plog.partition, plog.log_end_offset, leader_epoch_of(plog))
                )
        self.broker.replicas.notify_append()

    def _write_markers(self, markers: TxnMarkers) -> TxnResult:
        """Append one transaction's COMMIT/ABORT marker to each of its partitions; report
        them to the coordinator once every partition has its marker (in a cluster, once
        every leader answered: later, on the loop)."""
        if self._peers is not None:
            asyncio.get_running_loop().create_task(self._write_markers_in_cluster(markers))
            return TxnResult()
        now = self.broker.now_ms()
        errors = {tp: self._write_marker(markers, *tp, now) for tp in markers.partitions}
        self.broker.replicas.notify_append()
        return self._settle_markers(markers, errors)

    async def _write_markers_in_cluster(self, markers: TxnMarkers) -> None:
        assert self._peers is not None
        coordinator = self.coordinator
        try:
            errors = await self._peers.write_markers(markers)
        except Exception:
            log.exception("transaction %s: markers failed", markers.transactional_id)
            errors = {tp: ErrorCode.NETWORK_EXCEPTION for tp in markers.partitions}
        if self.coordinator is not coordinator:
            return  # reloaded meanwhile: the new coordinator sends its own markers
        try:
            self._apply(self._settle_markers(markers, errors))
        except Exception:
            log.exception("transaction %s: markers not settled", markers.transactional_id)

    def _settle_markers(
        self, markers: TxnMarkers, errors: dict[tuple[str, int], ErrorCode]
    ) -> TxnResult:
        now = self.broker.now_ms()
        written = self._written.setdefault(markers.marker_id, {})
        failed: list[tuple[tuple[str, int], ErrorCode]] = []
        for tp, error in errors.items():
            if error in _MARKER_RETRIED:
                failed.append((tp, error))
            else:
                written[tp] = error
        if failed:
            log.warning(
                "transaction %s: markers not written to %s; retrying",
                markers.transactional_id,
                ", ".join(f"{t}-{p} ({e.name})" for (t, p), e in failed),
            )
            self._unwritten.append(
                dataclasses.replace(markers, partitions=tuple(tp for tp, _ in failed))
            )
            self._schedule_retry()
            return TxnResult()
        del self._written[markers.marker_id]
        return self.coordinator.markers_written(now, markers.marker_id, written)

    def _write_marker(self, markers: TxnMarkers, topic: str, partition: int, now: int) -> ErrorCode:
        plog = self.broker.replicas.get_log(topic, partition)
        if plog is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION  # deleted: Kafka drops its marker
        try:
            error = plog.append_control_marker(
                markers.producer_id,
                markers.producer_epoch,
                commit=markers.commit,
                coordinator_epoch=markers.coordinator_epoch,
                leader_epoch=leader_epoch_of(plog),
                now_ms=now,
                transaction_version=markers.transaction_version,
            ).error
        except (OSError, DecodeError) as e:
            log.error("cannot write a transaction marker to %s-%d: %s", topic, partition, e)
            return ErrorCode.KAFKA_STORAGE_ERROR
        if error == ErrorCode.NONE:
            self.broker.replicas.appended(plog)
        if error == ErrorCode.NONE and topic == OFFSETS_TOPIC:
            self.broker.groups.complete_transaction(partition, markers.producer_id, markers.commit)
        elif error not in (ErrorCode.NONE, *_MARKER_RETRIED):
            # A newer epoch or coordinator already wrote here: this marker is obsolete, as
            # Kafka's marker channel treats these answers.
            log.warning(
                "transaction %s: marker for %s-%d refused: %s",
                markers.transactional_id,
                topic,
                partition,
                error.name,
            )
        return error

    def _schedule_retry(self) -> None:
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(MARKER_RETRY_S, self._on_retry)

    def _on_retry(self) -> None:
        self._retry = None
        unwritten, self._unwritten = self._unwritten, []
        try:
            self._apply(TxnResult(markers=unwritten))
        except Exception:
            log.exception("transaction marker retry failed")

    def _reschedule(self) -> None:
        self._timer.reschedule(self.coordinator.next_deadline_ms(), self.broker.now_ms())

    def _on_timer(self) -> None:
        try:
            self._apply(self.coordinator.poll(self.broker.now_ms()))
        except Exception:
            log.exception("transaction coordinator timer failed")
            self._reschedule()


# Marker appends that are tried again later (the disk may come back); any other answer ends
# the partition's marker: written, the partition gone, or a newer epoch already there.
_MARKER_RETRIED = frozenset(
    {
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NETWORK_EXCEPTION,
    }
)
