"""Transaction states, their transition table, and one transactional id's metadata.

``TransactionMetadata`` is an immutable snapshot of what Kafka's TransactionMetadata holds;
every ``prepare_*`` function returns the next snapshot (Kafka's TxnTransitMetadata) after
checking the move against ``VALID_PREVIOUS_STATES``. The coordinator turns a snapshot into a
``__transaction_state`` record and applies it; replay rebuilds the same snapshot from the
record, except ``last_producer_epoch``, which Kafka keeps in memory only (a KIP-360 retry
that spans a coordinator reload is fenced, as in Kafka). Plain data, safe to share.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from metamorphostreams.protocol.errors import ErrorCode

from .records import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TransactionLogValue

TopicPartition = tuple[str, int]

SHORT_MAX = 2**15 - 1  # Java's Short.MAX_VALUE: producer epochs are int16
# Kafka never hands out Short.MAX_VALUE to a client, so the coordinator can always fence.
EPOCH_EXHAUSTED_AT = SHORT_MAX - 1
TV_0 = 0  # transaction.version feature levels: TV_0/TV_1 commit without bumping the epoch
TV_1 = 1
TV_2 = 2  # KIP-890 part 2: every EndTxn bumps the epoch


class TransactionState(enum.IntEnum):
    """Kafka's TransactionState; the value is the TransactionStatus id stored in the log."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name DescribeTransactions and ListTransactions use."""
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        return _BY_NAME.get(name)

    @property
    def expiration_allowed(self) -> bool:
        return self in _EXPIRATION_ALLOWED


_NAMES = {
    TransactionState.EMPTY: "Empty",
    TransactionState.ONGOING: "Ongoing",
    TransactionState.PREPARE_COMMIT: "PrepareCommit",
    TransactionState.PREPARE_ABORT: "PrepareAbort",
    TransactionState.COMPLETE_COMMIT: "CompleteCommit",
    TransactionState.COMPLETE_ABORT: "CompleteAbort",
    TransactionState.DEAD: "Dead",
    TransactionState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME = {name: state for state, name in _NAMES.items()}

S = TransactionState
_EXPIRATION_ALLOWED = frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT})

VALID_PREVIOUS_STATES: dict[TransactionState, frozenset[TransactionState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    # Empty and Complete* -> PrepareAbort only for TV2 clients (an abort without partitions).
    S.PREPARE_ABORT: frozenset(
        {S.ONGOING, S.PREPARE_EPOCH_FENCE, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}
    ),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_ABORT, S.COMPLETE_COMMIT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}
"""Kafka's ``validPreviousStates``: the states each state may be entered from."""


class IllegalTransition(RuntimeError):
    """A transition the table forbids: a coordinator bug, never a client's fault."""


class TxnError(Exception):
    """A request the coordinator refuses with Kafka's error code."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


def is_epoch_exhausted(epoch: int) -> bool:
    return epoch >= EPOCH_EXHAUSTED_AT


@dataclass(frozen=True)
class TransactionMetadata:
    """One transactional id: producer id and epoch, timeout, state, partitions, timestamps."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    txn_timeout_ms: int
    state: TransactionState
    topic_partitions: frozenset[TopicPartition] = frozenset()
    txn_start_timestamp: int = -1
    txn_last_update_timestamp: int = -1
    prev_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    last_producer_epoch: int = NO_PRODUCER_EPOCH  # in memory only, as in Kafka
    next_producer_epoch: int = NO_PRODUCER_EPOCH
    client_transaction_version: int = TV_0

    @property
    def is_epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    def to_value(self) -> TransactionLogValue:
        if self.state is S.EMPTY and self.topic_partitions:
            raise IllegalTransition(f"{self.transactional_id}: Empty with partitions")
        partitions = None
        if self.state is not S.EMPTY:
            by_topic: dict[str, list[int]] = {}
            for topic, p in sorted(self.topic_partitions):
                by_topic.setdefault(topic, []).append(p)
            partitions = tuple((t, tuple(ps)) for t, ps in by_topic.items())
        return TransactionLogValue(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            transaction_timeout_ms=self.txn_timeout_ms,
            transaction_status=int(self.state),
            transaction_partitions=partitions,
            transaction_last_update_timestamp_ms=self.txn_last_update_timestamp,
            transaction_start_timestamp_ms=self.txn_start_timestamp,
            previous_producer_id=self.prev_producer_id,
            next_producer_id=self.next_producer_id,
            next_producer_epoch=self.next_producer_epoch,
            client_transaction_version=self.client_transaction_version,
        )

    @classmethod
    def from_value(cls, transactional_id: str, value: TransactionLogValue) -> TransactionMetadata:
        state = TransactionState(value.transaction_status)
        partitions: frozenset[TopicPartition] = frozenset()
        if state is not S.EMPTY and value.transaction_partitions:
            partitions = frozenset(
                (topic, p) for topic, ids in value.transaction_partitions for p in ids
            )
        return cls(
            transactional_id,
            value.producer_id,
            value.producer_epoch,
            value.transaction_timeout_ms,
            state,
            partitions,
            value.transaction_start_timestamp_ms,
            value.transaction_last_update_timestamp_ms,
            prev_producer_id=value.previous_producer_id,
            next_producer_id=value.next_producer_id,
            next_producer_epoch=value.next_producer_epoch,
            client_transaction_version=value.client_transaction_version,
        )

    # -- transitions (Kafka's prepare* methods) ---------------------------------------------

    def transit(self, state: TransactionState, **changes: object) -> TransactionMetadata:
        """The snapshot after moving to ``state``; the previous producer id becomes the
        current one, as Kafka records it on every transition."""
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise IllegalTransition(
                f"{self.transactional_id}: {self.state.kafka_name} -> {state.kafka_name}"
            )
        new = dataclasses.replace(self, state=state, prev_producer_id=self.producer_id, **changes)  # type: ignore[arg-type]
        if new.producer_id < 0:
            raise IllegalTransition(f"{self.transactional_id}: producer id {new.producer_id}")
        if state is not S.DEAD and new.producer_epoch < 0:
            raise IllegalTransition(f"{self.transactional_id}: epoch {new.producer_epoch}")
        return new

    def prepare_increment_epoch(
        self, timeout_ms: int, expected_epoch: int | None, now_ms: int
    ) -> TransactionMetadata:
        """InitProducerId on a finished transaction: bump the epoch (KIP-360 rules)."""
        if self.is_epoch_exhausted:
            raise IllegalTransition(
                f"{self.transactional_id}: epochs of {self.producer_id} used up"
            )
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            # A retry of a bump whose answer was lost: hand out the same epoch again.
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            raise TxnError(ErrorCode.PRODUCER_FENCED)
        return self.transit(
            S.EMPTY,
            producer_epoch=epoch,
            last_producer_epoch=last,
            txn_timeout_ms=timeout_ms,
            topic_partitions=frozenset(),
            txn_start_timestamp=-1,
            txn_last_update_timestamp=now_ms,
        )

    def prepare_producer_id_rotation(
        self, new_producer_id: int, timeout_ms: int, now_ms: int, record_last_epoch: bool
    ) -> TransactionMetadata:
        """InitProducerId when the epochs are used up: a new producer id at epoch 0."""
        if self.state in (S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT):
            raise IllegalTransition(f"{self.transactional_id}: rotation with a pending txn")
        return self.transit(
            S.EMPTY,
            producer_id=new_producer_id,
            producer_epoch=0,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            txn_timeout_ms=timeout_ms,
            topic_partitions=frozenset(),
            txn_start_timestamp=-1,
            txn_last_update_timestamp=now_ms,
        )

    def prepare_add_partitions(
        self, partitions: frozenset[TopicPartition], now_ms: int, client_tv: int
    ) -> TransactionMetadata:
        starting = self.state in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
        return self.transit(
            S.ONGOING,
            topic_partitions=self.topic_partitions | partitions,
            txn_start_timestamp=now_ms if starting else self.txn_start_timestamp,
            txn_last_update_timestamp=now_ms,
            client_transaction_version=client_tv,
        )

    def prepare_fence_epoch(self) -> TransactionMetadata:
        """Bump the epoch to fence the producer before aborting its transaction (never
        persisted: the PrepareAbort that follows carries the bumped epoch)."""
        epoch = self.producer_epoch if self.producer_epoch == SHORT_MAX else self.producer_epoch + 1
        return self.transit(S.PREPARE_EPOCH_FENCE, producer_epoch=epoch)

    def prepare_abort_or_commit(
        self,
        state: TransactionState,
        client_tv: int,
        now_ms: int,
        next_producer_id: int = NO_PRODUCER_ID,
        no_partition_added: bool = False,
    ) -> TransactionMetadata:
        """EndTxn, or a coordinator abort: PrepareCommit/PrepareAbort.

        Before TV_2 the epoch stays (a fencing abort keeps the fenced epoch and forgets the
        last one). With TV_2 the epoch is bumped and the old one becomes the last epoch;
        ``next_producer_id`` is the id the transaction moves to once complete when this
        bump uses the epochs up. An abort without partitions (TV_2 only) starts now."""
        if client_tv >= TV_2:
            if self.producer_epoch == SHORT_MAX and state is S.PREPARE_ABORT:
                epoch = self.producer_epoch  # Kafka logs this as a bug and does not bump
            else:
                epoch = self.producer_epoch + 1
            last = self.producer_epoch
        else:
            fenced = self.state is S.PREPARE_EPOCH_FENCE
            epoch = self.producer_epoch
            last = NO_PRODUCER_EPOCH if fenced else self.last_producer_epoch
        if epoch > SHORT_MAX:
            raise IllegalTransition(f"{self.transactional_id}: epoch {epoch} overflows")
        return self.transit(
            state,
            producer_epoch=epoch,
            last_producer_epoch=last,
            next_producer_id=next_producer_id,
            txn_start_timestamp=now_ms if no_partition_added else self.txn_start_timestamp,
            txn_last_update_timestamp=now_ms,
            client_transaction_version=client_tv,
        )

    def prepare_complete(self, now_ms: int) -> TransactionMetadata:
        """All markers written: CompleteCommit or CompleteAbort, partitions cleared; a TV_2
        transaction whose bump used the epochs up moves to its next producer id, epoch 0."""
        state = S.COMPLETE_COMMIT if self.state is S.PREPARE_COMMIT else S.COMPLETE_ABORT
        rotate = self.client_transaction_version >= TV_2 and self.next_producer_id != NO_PRODUCER_ID
        return self.transit(
            state,
            producer_id=self.next_producer_id if rotate else self.producer_id,
            producer_epoch=0 if rotate else self.producer_epoch,
            next_producer_id=NO_PRODUCER_ID,
            topic_partitions=frozenset(),
            txn_last_update_timestamp=now_ms,
        )

    def prepare_dead(self) -> TransactionMetadata:
        return self.transit(S.DEAD, topic_partitions=frozenset())
