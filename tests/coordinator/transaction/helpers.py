"""A fake-clock harness around ``TransactionCoordinator``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metamorphostreams.coordinator.transaction import (
    CoordinatorRecord,
    TransactionConfig,
    TransactionCoordinator,
    TransactionMetadata,
    TxnMarkers,
    TxnResult,
)
from metamorphostreams.protocol._generated.add_offsets_to_txn import AddOffsetsToTxnRequest
from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
)
from metamorphostreams.protocol._generated.end_txn import EndTxnRequest
from metamorphostreams.protocol._generated.init_producer_id import InitProducerIdRequest
from metamorphostreams.protocol.errors import ErrorCode

APR = AddPartitionsToTxnRequest
FIRST_PID = 1000
OFFSETS_PARTITION = 7
TIMEOUT = 60_000


def topics(partitions: list[tuple[str, int]]) -> list[APR.AddPartitionsToTxnTopic]:
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    return [APR.AddPartitionsToTxnTopic(name=t, partitions=ps) for t, ps in by_topic.items()]


@dataclass
class Harness:
    """A coordinator, its clock, the records it wrote and the markers it asked for."""

    config: TransactionConfig = field(default_factory=TransactionConfig)
    now: int = 1_000_000
    transaction_version: int = 1
    next_pid: int = FIRST_PID
    records: list[CoordinatorRecord] = field(default_factory=list)
    markers: list[TxnMarkers] = field(default_factory=list)
    coordinator: TransactionCoordinator = field(init=False)

    def __post_init__(self) -> None:
        self.coordinator = self._new()

    def _new(self) -> TransactionCoordinator:
        return TransactionCoordinator(
            self.config,
            self.config.transaction_state_log_num_partitions,
            allocate_producer_id=self._allocate,
            offsets_partition_for=lambda group: OFFSETS_PARTITION,
            transaction_version=self.transaction_version,
        )

    def _allocate(self) -> int:
        pid = self.next_pid
        self.next_pid += 1
        return pid

    def take(self, result: TxnResult) -> Any:
        self.records.extend(result.records)
        self.markers.extend(result.markers)
        return result.response

    def advance(self, ms: int) -> None:
        self.now += ms
        self.take(self.coordinator.poll(self.now))

    # -- requests ------------------------------------------------------------------------

    def init(
        self,
        tid: str | None = "txn",
        timeout: int = TIMEOUT,
        *,
        pid: int = -1,
        epoch: int = -1,
        version: int = 4,
    ) -> Any:
        req = InitProducerIdRequest(
            transactional_id=tid,
            transaction_timeout_ms=timeout,
            producer_id=pid,
            producer_epoch=epoch,
        )
        return self.take(self.coordinator.init_producer_id(self.now, req, version))

    def add(
        self,
        partitions: list[tuple[str, int]],
        pid: int,
        epoch: int,
        tid: str = "txn",
        version: int = 3,
    ) -> dict[tuple[str, int], ErrorCode]:
        req = APR(
            v3_and_below_transactional_id=tid,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=topics(partitions),
        )
        resp = self.take(self.coordinator.add_partitions_to_txn(self.now, req, version))
        return {
            (t.name, r.partition_index): ErrorCode(r.partition_error_code)
            for t in resp.results_by_topic_v3_and_below
            for r in t.results_by_partition
        }

    def add_error(
        self, partitions: list[tuple[str, int]], pid: int, epoch: int, **kw: Any
    ) -> ErrorCode:
        errors = set(self.add(partitions, pid, epoch, **kw).values())
        assert len(errors) == 1, errors
        return errors.pop()

    def add_offsets(self, pid: int, epoch: int, tid: str = "txn", version: int = 3) -> ErrorCode:
        req = AddOffsetsToTxnRequest(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id="g"
        )
        resp = self.take(self.coordinator.add_offsets_to_txn(self.now, req, version))
        return ErrorCode(resp.error_code)

    def end(
        self, pid: int, epoch: int, commit: bool = True, tid: str = "txn", version: int = 3
    ) -> Any:
        req = EndTxnRequest(
            transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit
        )
        return self.take(self.coordinator.end_txn(self.now, req, version))

    def deliver(self, error: ErrorCode = ErrorCode.NONE) -> None:
        """Write every outstanding marker with ``error`` for all its partitions."""
        while self.markers:
            m = self.markers.pop(0)
            errors = {tp: error for tp in m.partitions}
            self.take(self.coordinator.markers_written(self.now, m.marker_id, errors))
            if error != ErrorCode.NONE:
                break

    # -- state ---------------------------------------------------------------------------

    def meta(self, tid: str = "txn") -> TransactionMetadata:
        return self.coordinator.transactions[tid]

    def rebuilt(self) -> TransactionCoordinator:
        """A coordinator loaded from the records written so far (a restart)."""
        fresh = self._new()
        for record in self.records:
            fresh.replay(record)
        return fresh

    def restart(self, coordinator_epoch: int = 1) -> TxnResult:
        self.coordinator = self.rebuilt()
        self.markers.clear()
        result = self.coordinator.on_loaded(self.now, coordinator_epoch)
        self.take(result)
        return result


def started(h: Harness, partitions: list[tuple[str, int]] | None = None) -> tuple[int, int]:
    """InitProducerId then AddPartitionsToTxn: an Ongoing transaction; returns (pid, epoch)."""
    resp = h.init()
    assert resp.error_code == ErrorCode.NONE
    pid, epoch = resp.producer_id, resp.producer_epoch
    assert h.add_error(partitions or [("orders", 0), ("orders", 1)], pid, epoch) == ErrorCode.NONE
    return pid, epoch
