"""Runs the pure group coordinator on the event loop.

The coordinator (``coordinator/``) decides; this module does its I/O: it appends the records
of every decision to ``__consumer_offsets`` before the answer goes out, parks JoinGroup and
SyncGroup requests on futures until the coordinator completes them, fires the coordinator's
timers, and replays ``__consumer_offsets`` at start-up.

TxnOffsetCommit records go out as one transactional batch of the request's producer
(base sequence -1, as Kafka's coordinator runtime writes them); a COMMIT/ABORT marker the
transaction side appended to ``__consumer_offsets-N`` is reported to ``complete_transaction``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..coordinator import CoordinatorRecord, GroupCoordinator, GroupCoordinatorConfig, Result
from ..protocol.errors import DecodeError, ErrorCode
from ..protocol.record_batch import BatchHeader
from ..protocol.records import ControlRecordType, Record, build_batch, parse_control_key
from ..storage import AppendOrigin, PartitionLog
from ._coordinator_io import (
    DeadlineTimer,
    await_coordinator_records,
    ensure_internal_topic,
    replay_partition,
)
from .replica_manager import Replication, leader_epoch_of

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("metamorphostreams.server")

OFFSETS_TOPIC = "__consumer_offsets"
NO_PRODUCER_ID = -1
TXN_BASE_SEQUENCE = -1  # the coordinator's transactional batches carry no sequence


class GroupRuntime:
    """Loop-owned driver of one ``GroupCoordinator`` for all ``__consumer_offsets`` partitions."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        props = broker.config.props
        self.num_partitions = int(broker.config["offsets.topic.num.partitions"])
        self._config = GroupCoordinatorConfig.from_properties(props)
        self.coordinator = self._new_coordinator()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # In a cluster: what the current request appended, answered once the ISR has it.
        self._appended: list[Replication] = []
        self._timer = DeadlineTimer(self._on_timer)

    def _new_coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(self._config, self.num_partitions, metadata=self._topics)

    def _topics(self) -> Mapping[str, tuple[uuid.UUID, int]]:
        return {
            t.name: (t.topic_id, t.partitions)
            for t in self.broker.metadata.topics.values()
            if not t.is_internal
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Replay ``__consumer_offsets`` if it exists (it is created on first use)."""
        info = self.broker.metadata.topics.get(OFFSETS_TOPIC)
        if info is None:
            return
        count = 0
        for partition in range(info.partitions):
            count += self._replay_partition(partition)
        if count:
            log.info("loaded %d records from %s", count, OFFSETS_TOPIC)
        self._apply(self.coordinator.on_loaded(self.broker.now_ms()))

    def _replay_partition(self, partition: int) -> int:
        plog = self.broker.replicas.get_log(OFFSETS_TOPIC, partition)
        if plog is None:
            return 0
        count = 0

        def visit(header: BatchHeader, records: list[Record]) -> None:
            nonlocal count
            if header.is_control:
                self._replay_markers(partition, header.producer_id, records)
                return
            producer = header.producer_id if header.is_transactional else NO_PRODUCER_ID
            for record in records:
                if record.key is not None:
                    self.coordinator.replay(
                        CoordinatorRecord(partition, record.key, record.value),
                        producer_id=producer,
                    )
                    count += 1

        replay_partition(plog, visit)
        return count

    def _replay_markers(self, partition: int, producer_id: int, records: list[Any]) -> None:
        for record in records:
            try:
                kind = parse_control_key(record.key)
            except DecodeError:
                continue  # an unknown control record: Kafka's loader skips it too
            if kind in (ControlRecordType.COMMIT, ControlRecordType.ABORT):
                self.coordinator.complete_transaction(
                    self.broker.now_ms(), partition, producer_id, kind == ControlRecordType.COMMIT
                )

    def reload(self) -> None:
        """The set of ``__consumer_offsets`` partitions led here changed (a cluster's
        leadership moved): unload everything, answering parked requests NOT_COORDINATOR,
        and replay the partitions led now."""
        self.stop()
        self.coordinator = self._new_coordinator()
        self.start()

    def stop(self) -> None:
        """Answer parked requests (NOT_COORDINATOR, as Kafka does on unload) and stop timers."""
        self._timer.cancel()
        try:
            result = self.coordinator.unload(self.broker.now_ms())
        except Exception:
            log.exception("group coordinator unload failed")
            return
        for pending_id, response in result.completions:
            future = self._pending.pop(pending_id, None)
            if future is not None and not future.done():
                future.set_result(response)

    # -- requests ------------------------------------------------------------------------

    def ensure_offsets_topic(self) -> None:
        """Create ``__consumer_offsets`` on first use, as Kafka does on FindCoordinator."""
        ensure_internal_topic(
            self.broker,
            OFFSETS_TOPIC,
            self.num_partitions,
            self.coordinator.config.offsets_topic_segment_bytes,
        )

    async def call(
        self, handler: Callable[[int, Any, int], Result], request: Any, version: int
    ) -> Any:
        """Run one coordinator handler; wait for the answer if the request was parked."""
        self.ensure_offsets_topic()
        self._appended = []
        result = handler(self.broker.now_ms(), request, version)
        response = self._apply(result)
        if self._appended:
            waits, self._appended = self._appended, []
            timeout_s = int(self.broker.config.props.get("offsets.commit.timeout.ms", 5000)) / 1000
            await await_coordinator_records(self.broker, waits, timeout_s)
        if result.pending is None:
            return response
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[result.pending] = future
        try:
            return await future
        except asyncio.CancelledError:
            self._pending.pop(result.pending, None)
            self.coordinator.cancel(result.pending)
            raise

    def topics_deleted(self, topics: list[str]) -> None:
        self._apply(self.coordinator.on_topics_deleted(self.broker.now_ms(), topics))

    def complete_transaction(self, partition: int, producer_id: int, committed: bool) -> None:
        """A COMMIT (``committed``) or ABORT marker of ``producer_id`` was appended to
        ``__consumer_offsets-<partition>``: its pending offsets there become visible or go."""
        self._apply(
            self.coordinator.complete_transaction(
                self.broker.now_ms(), partition, producer_id, committed
            )
        )

    # -- internals -----------------------------------------------------------------------

    def _apply(self, result: Result) -> Any:
        """Append the Result's records and deliver its completions; returns the response to
        send (a transactional write that could not be appended is reverted and answered
        with the coordinator's error instead)."""
        response = result.response
        if result.records:
            if result.producer is None:
                self._append(result.records)
            else:
                error = self._append_transactional(result.records, *result.producer)
                if error != ErrorCode.NONE and result.revert is not None:
                    response = result.revert(error)
        for pending_id, completion in result.completions:
            future = self._pending.pop(pending_id, None)
            if future is not None and not future.done():
                future.set_result(completion)
        self._reschedule()
        return response

    def _append_transactional(
        self, records: list[CoordinatorRecord], producer_id: int, producer_epoch: int
    ) -> ErrorCode:
        """Append one transactional batch of the producer (all records are of one
        partition); the append's error, NONE when it is written."""
        partition = records[0].partition
        plog = self.broker.replicas.get_log(OFFSETS_TOPIC, partition)
        if plog is None:
            log.error("%s-%d is missing; refusing transactional offsets", OFFSETS_TOPIC, partition)
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        now = self.broker.now_ms()
        batch = build_batch(
            [(r.key, r.value, [], now) for r in records],
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=TXN_BASE_SEQUENCE,
            is_transactional=True,
        )
        try:
            result = plog.append_as_leader(
                bytearray(batch),
                leader_epoch=leader_epoch_of(plog),
                now_ms=now,
                origin=AppendOrigin.COORDINATOR,
            )
        except (OSError, DecodeError) as e:
            log.error("cannot append group records to %s-%d: %s", OFFSETS_TOPIC, partition, e)
            return ErrorCode.KAFKA_STORAGE_ERROR
        if result.error != ErrorCode.NONE:
            log.warning(
                "transactional offsets of producer %d refused by %s-%d: %s",
                producer_id,
                OFFSETS_TOPIC,
                partition,
                result.error.name,
            )
        else:
            self._written(plog)
            self.broker.replicas.notify_append()
        return result.error

    def _append(self, records: list[CoordinatorRecord]) -> None:
        by_partition: dict[int, list[CoordinatorRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        now = self.broker.now_ms()
        for partition, batch_records in by_partition.items():
            plog = self.broker.replicas.get_log(OFFSETS_TOPIC, partition)
            if plog is None:
                log.error("%s-%d is missing; dropping group records", OFFSETS_TOPIC, partition)
                continue
            batch = build_batch([(r.key, r.value, [], now) for r in batch_records])
            try:
                result = plog.append_as_leader(
                    bytearray(batch), leader_epoch=leader_epoch_of(plog), now_ms=now
                )
            except (OSError, DecodeError) as e:
                log.error("cannot append group records to %s-%d: %s", OFFSETS_TOPIC, partition, e)
                continue
            if result.error != ErrorCode.NONE:
                log.error(
                    "cannot append group records to %s-%d: %s",
                    OFFSETS_TOPIC,
                    partition,
                    result.error.name,
                )
            else:
                self._written(plog)
        self.broker.replicas.notify_append()

    def _written(self, plog: PartitionLog) -> None:
        self.broker.replicas.appended(plog)
        if self.broker.cluster is not None:
            self._appended.append(
                (plog.topic, plog.partition, plog.log_end_offset, leader_epoch_of(plog))
            )

    def _reschedule(self) -> None:
        self._timer.reschedule(self.coordinator.next_deadline_ms(), self.broker.now_ms())

    def _on_timer(self) -> None:
        try:
            self._apply(self.coordinator.poll(self.broker.now_ms()))
        except Exception:
            log.exception("group coordinator timer failed")
            self._reschedule()
