"""Transaction markers in flight: which ``TxnMarkers`` each prepared transaction awaits.

In memory only: at load every PrepareCommit/PrepareAbort transaction gets its markers
issued afresh. Not task-safe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from metamorphostreams.protocol.errors import ErrorCode

from .state import TopicPartition, TransactionMetadata, TransactionState

# Marker answers that settle a partition: written, the partition is gone, or the partition
# cannot hold markers (the producer could never have written there).
MARKER_DONE = frozenset(
    {
        ErrorCode.NONE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        ErrorCode.UNSUPPORTED_VERSION,
    }
)
# A newer producer epoch or coordinator owns the partition: Kafka stops sending this
# transaction's markers and leaves it in its Prepare state until the partition is reloaded.
MARKER_ABANDON = frozenset(
    {ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED}
)


@dataclass(frozen=True)
class TxnMarkers:
    """COMMIT (``commit``) or ABORT markers to append to ``partitions`` for one transaction."""

    marker_id: int
    transactional_id: str
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: tuple[tuple[str, int], ...]
    # The transaction's client version: with TV_2 a marker must carry an epoch above the
    # producer's (the bumped one), as Kafka's WriteTxnMarkers v2 tells the partition.
    transaction_version: int = 0


class Settled(enum.Enum):
    OBSOLETE = "obsolete"  # unknown marker id, or the transaction moved on
    ABANDONED = "abandoned"  # fenced: stop sending, leave the transaction prepared
    RETRY = "retry"  # some partitions still need their marker
    DONE = "done"  # every partition has its marker


class MarkerTracker:
    """One outstanding ``TxnMarkers`` per prepared transactional id, by marker id."""

    def __init__(self) -> None:
        self._sends: dict[str, TxnMarkers] = {}
        self._owner: dict[int, str] = {}
        self._next_id = 0

    def issue(self, meta: TransactionMetadata, coordinator_epoch: int) -> TxnMarkers:
        tid = meta.transactional_id
        self.cancel(tid)
        self._next_id += 1
        markers = TxnMarkers(
            marker_id=self._next_id,
            transactional_id=tid,
            producer_id=meta.producer_id,
            producer_epoch=meta.producer_epoch,
            coordinator_epoch=coordinator_epoch,
            commit=meta.state is TransactionState.PREPARE_COMMIT,
            partitions=tuple(sorted(meta.topic_partitions)),
            transaction_version=meta.client_transaction_version,
        )
        self._sends[tid] = markers
        self._owner[markers.marker_id] = tid
        return markers

    def cancel(self, tid: str) -> None:
        markers = self._sends.pop(tid, None)
        if markers is not None:
            self._owner.pop(markers.marker_id, None)

    def clear(self) -> None:
        self._sends.clear()
        self._owner.clear()

    def owner(self, marker_id: int) -> str | None:
        return self._owner.get(marker_id)

    def settle(
        self,
        marker_id: int,
        meta: TransactionMetadata | None,
        coordinator_epoch: int,
        errors: dict[TopicPartition, ErrorCode],
    ) -> tuple[Settled, frozenset[TopicPartition]]:
        """Close ``marker_id`` given the server's per-partition answers; returns the outcome
        and the partitions of ``meta`` still without a marker."""
        tid = self._owner.get(marker_id)
        markers = None if tid is None else self._sends.get(tid)
        if (
            tid is None
            or markers is None
            or meta is None
            or markers.coordinator_epoch != coordinator_epoch
            or meta.state not in (TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT)
        ):
            if tid is not None:
                self.cancel(tid)
            return Settled.OBSOLETE, frozenset()
        self.cancel(tid)
        remaining = set(meta.topic_partitions)
        retry = False
        for tp in markers.partitions:
            error = errors.get(tp)
            if error in MARKER_DONE:
                remaining.discard(tp)
            elif error in MARKER_ABANDON:
                return Settled.ABANDONED, frozenset(remaining)
            else:
                retry = True  # not written (or not reported): send again
        return (Settled.RETRY if retry else Settled.DONE), frozenset(remaining)
