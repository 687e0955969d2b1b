"""``TransactionCoordinator``: Kafka's transaction coordinator as a pure state machine.

Every entry point takes ``now_ms`` and a decoded request and returns a ``TxnResult``:
records to append to ``__transaction_state`` (in order, before the response of the same
result is sent), the response, and ``markers``: COMMIT/ABORT markers to write to the
partitions of a transaction whose PrepareCommit/PrepareAbort the records hold. The server
reports each ``TxnMarkers`` back through ``markers_written``; when every partition has its
marker the coordinator writes CompleteCommit/CompleteAbort. EndTxn is answered once the
Prepare record is written, before the markers, as Kafka does.

Nothing waits in this coordinator: where Kafka makes a client wait (an InitProducerId that
must first abort an ongoing transaction, an EndTxn retried while markers are being written)
it answers CONCURRENT_TRANSACTIONS and the client retries, so every call has its answer.

Timers (Kafka's periodic abort of timed-out transactions and expiry of idle transactional
ids) run from ``poll`` and before every request; ``next_deadline_ms`` says when. At
start-up the server feeds every ``__transaction_state`` record to ``replay`` and then
calls ``on_loaded``, which re-issues the markers of transactions left in a Prepare state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metamorphostreams.protocol._generated.add_offsets_to_txn import (
    AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse,
)
from metamorphostreams.protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from metamorphostreams.protocol._generated.describe_transactions import (
    DescribeTransactionsRequest,
)
from metamorphostreams.protocol._generated.end_txn import EndTxnRequest, EndTxnResponse
from metamorphostreams.protocol._generated.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from metamorphostreams.protocol._generated.list_transactions import ListTransactionsRequest
from metamorphostreams.protocol.errors import ErrorCode

from .._shard import java_string_hash, kafka_abs
from ..timers import Timers
from . import _admin
from ._markers import MarkerTracker, Settled, TxnMarkers
from ._requests import partitions_of, refuse_partitions, topic_results
from .config import TransactionConfig
from .records import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    VALUE_VERSION_V0,
    VALUE_VERSION_V1,
    CoordinatorRecord,
    TransactionLogValue,
    decode_key,
    encode_key,
)
from .state import (
    EPOCH_EXHAUSTED_AT,
    TV_0,
    TV_1,
    TV_2,
    IllegalTransition,
    TopicPartition,
    TransactionMetadata,
    TransactionState,
    TxnError,
    is_epoch_exhausted,
)

S = TransactionState
ABORT_TIMER = ("transaction-abort",)
EXPIRE_TIMER = ("transactional-id-expiration",)

# Versions below these cannot read PRODUCER_FENCED: they get INVALID_PRODUCER_EPOCH.
INIT_PRODUCER_ID_FENCED_VERSION = 4
TXN_API_FENCED_VERSION = 2  # AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
INIT_PRODUCER_ID_EXPECTED_VERSION = 3  # KIP-360: ProducerId and ProducerEpoch in the request
ADD_PARTITIONS_BATCHED_VERSION = 4  # broker-to-broker batches with VerifyOnly (KIP-890 part 1)
END_TXN_EPOCH_BUMP_VERSION = 5  # KIP-890 part 2: the client runs transaction version 2


@dataclass
class TxnResult:
    """What one call produced: records first, then the response, then markers to write."""

    records: list[CoordinatorRecord] = field(default_factory=list)
    response: Any | None = None
    markers: list[TxnMarkers] = field(default_factory=list)


class TransactionCoordinator:
    """The transaction coordinator for all ``__transaction_state`` partitions of a broker.

    ``allocate_producer_id`` hands out a new producer id; ``offsets_partition_for`` maps a
    group id to its ``offsets_topic`` partition (AddOffsetsToTxn). ``partition_exists``
    (optional) says whether a topic partition exists; without it every partition is taken to
    exist. ``transaction_version`` is the cluster's finalized ``transaction.version``: 0
    writes TransactionLogValue v0, 1 and 2 write v1; it is the version of the coordinator's
    own aborts (timeouts, fencing), as Kafka takes the server's level for them. A client's
    version comes with its requests: EndTxn v5 and AddPartitionsToTxn v4+ (the brokers'
    implicit adds of KIP-890 part 2) are TV_2, older versions TV_0.
    Not task-safe: the server calls it from one task.
    """

    def __init__(
        self,
        config: TransactionConfig,
        num_partitions: int,
        *,
        allocate_producer_id: Callable[[], int],
        offsets_partition_for: Callable[[str], int],
        offsets_topic: str = "__consumer_offsets",
        partition_exists: Callable[[str, int], bool] | None = None,
        transaction_version: int = TV_1,
        coordinator_epoch_of: Callable[[int], int] | None = None,
    ) -> None:
        if transaction_version not in (TV_0, TV_1, TV_2):
            raise ValueError(f"transaction.version {transaction_version} is not supported")
        self.config = config
        self.num_partitions = num_partitions
        self.transaction_version = transaction_version
        self._value_version = VALUE_VERSION_V1 if transaction_version >= TV_1 else VALUE_VERSION_V0
        self._allocate_producer_id = allocate_producer_id
        self._offsets_partition_for = offsets_partition_for
        self._offsets_topic = offsets_topic
        self._partition_exists = partition_exists
        self._txns: dict[str, TransactionMetadata] = {}
        self._inflight = MarkerTracker()
        self._timers = Timers()
        self._now = 0
        self._loaded = False
        self._coordinator_epoch = 0
        # In a cluster each __transaction_state partition has its own coordinator epoch
        # (its leader epoch); otherwise the one given to on_loaded.
        self._coordinator_epoch_of = coordinator_epoch_of
        self._records: list[CoordinatorRecord] = []
        self._markers: list[TxnMarkers] = []

    @property
    def transactions(self) -> dict[str, TransactionMetadata]:
        """The transaction table (read-only use: tests, tools)."""
        return self._txns

    def partition_for(self, transactional_id: str) -> int:
        """Kafka's mapping: abs(transactionalId.hashCode()) % the state topic's partitions."""
        return kafka_abs(java_string_hash(transactional_id)) % self.num_partitions

    # -- plumbing ------------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        self._now = now_ms
        if not self._loaded:
            self._load()
        self._run_timers()  # what expired before this request happens before it

    def _end(self, response: Any = None) -> TxnResult:
        records, markers = self._records, self._markers
        self._records, self._markers = [], []
        return TxnResult(records=records, response=response, markers=markers)

    def _run_timers(self) -> None:
        # A task runs at its deadline, as if polled on time: it judges timeouts by then.
        now = self._now
        while (due := self._timers.pop_expired(now)) is not None:
            self._now = due[0]
            try:
                due[1]()
            finally:
                self._now = now

    def _load(self) -> None:
        self._loaded = True
        cfg = self.config
        interval = cfg.transaction_abort_timed_out_transaction_cleanup_interval_ms
        self._timers.schedule(ABORT_TIMER, self._now + interval, self._abort_timed_out)
        interval = cfg.transaction_remove_expired_transaction_cleanup_interval_ms
        self._timers.schedule(EXPIRE_TIMER, self._now + interval, self._expire_transactional_ids)
        for meta in list(self._txns.values()):
            if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                self._send_markers(meta)

    def _write(self, meta: TransactionMetadata) -> None:
        tid = meta.transactional_id
        value = meta.to_value().encode(self._value_version)
        self._records.append(CoordinatorRecord(self.partition_for(tid), encode_key(tid), value))
        self._txns[tid] = meta

    def _write_tombstone(self, tid: str) -> None:
        self._records.append(CoordinatorRecord(self.partition_for(tid), encode_key(tid), None))
        self._forget(tid)

    def _forget(self, tid: str) -> None:
        self._txns.pop(tid, None)
        self._inflight.cancel(tid)

    # -- load ----------------------------------------------------------------------------

    def replay(self, record: CoordinatorRecord) -> None:
        """Apply one ``__transaction_state`` record (start-up load)."""
        tid = decode_key(record.key)
        if tid is None:
            return
        if record.value is None:
            self._forget(tid)
        else:
            value = TransactionLogValue.decode(record.value)
            self._txns[tid] = TransactionMetadata.from_value(tid, value)

    def on_loaded(self, now_ms: int, coordinator_epoch: int = 0) -> TxnResult:
        """Start the timers and re-issue the markers of every PrepareCommit/PrepareAbort
        transaction (with ``coordinator_epoch``, the state partition's leader epoch)."""
        self._coordinator_epoch = coordinator_epoch
        self._inflight.clear()
        self._loaded = False
        self._begin(now_ms)
        return self._end()

    def unload(self, now_ms: int) -> TxnResult:
        """Give everything up (shutdown, or the partitions moved); markers in flight are
        forgotten, and nothing is parked to answer."""
        self._now = now_ms
        self._txns.clear()
        self._inflight.clear()
        self._timers = Timers()
        self._loaded = False
        return self._end()

    def poll(self, now_ms: int) -> TxnResult:
        """Run the timers due at ``now_ms``."""
        self._begin(now_ms)
        return self._end()

    def next_deadline_ms(self) -> int | None:
        return self._timers.next_deadline()

    # -- InitProducerId ------------------------------------------------------------------

    def init_producer_id(
        self, now_ms: int, request: InitProducerIdRequest, version: int
    ) -> TxnResult:
        self._begin(now_ms)
        error, producer_id, epoch = self._init_producer_id(request, version)
        if error == ErrorCode.PRODUCER_FENCED and version < INIT_PRODUCER_ID_FENCED_VERSION:
            error = ErrorCode.INVALID_PRODUCER_EPOCH
        if error != ErrorCode.NONE:
            producer_id, epoch = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        return self._end(
            InitProducerIdResponse(error_code=error, producer_id=producer_id, producer_epoch=epoch)
        )

    def _init_producer_id(
        self, request: InitProducerIdRequest, version: int
    ) -> tuple[ErrorCode, int, int]:
        expected: tuple[int, int] | None = None
        if version >= INIT_PRODUCER_ID_EXPECTED_VERSION:
            pair = (request.producer_id, request.producer_epoch)
            if pair != (NO_PRODUCER_ID, NO_PRODUCER_EPOCH):
                if NO_PRODUCER_ID == pair[0] or NO_PRODUCER_EPOCH == pair[1]:
                    return ErrorCode.INVALID_REQUEST, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
                expected = pair
        tid = request.transactional_id
        if tid is None:  # idempotent producer: a fresh producer id, nothing to remember
            return ErrorCode.NONE, self._allocate_producer_id(), 0
        if request.enable2_pc:  # KIP-939 two-phase commit is not enabled on this broker
            return (
                ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                NO_PRODUCER_ID,
                NO_PRODUCER_EPOCH,
            )
        if not tid:
            return ErrorCode.INVALID_REQUEST, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        timeout = request.transaction_timeout_ms
        if not 0 < timeout <= self.config.transaction_max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        meta = self._txns.get(tid)
        if meta is None:
            meta = TransactionMetadata(
                tid,
                self._allocate_producer_id(),
                NO_PRODUCER_EPOCH,
                timeout,
                S.EMPTY,
                txn_last_update_timestamp=self._now,
            )
        if expected is not None and not (
            meta.producer_epoch == NO_PRODUCER_EPOCH
            or expected[0] == meta.producer_id
            # a retry of a bump that moved to a new producer id; its answer was lost
            or (expected[0] == meta.prev_producer_id and is_epoch_exhausted(expected[1]))
        ):
            return ErrorCode.PRODUCER_FENCED, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        state = meta.state
        if state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            return ErrorCode.CONCURRENT_TRANSACTIONS, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if state is S.ONGOING:
            # Fence the producer and abort its transaction; the client retries and gets the
            # epoch bumped once more (or a new producer id if this bump used the epochs up).
            fenced = meta.prepare_fence_epoch()
            error, _, _ = self._end_transaction(
                tid, fenced.producer_id, fenced.producer_epoch, False, False, fence=fenced
            )
            if error == ErrorCode.NONE:
                error = ErrorCode.CONCURRENT_TRANSACTIONS  # retry once the abort is complete
            return error, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if state not in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
            raise IllegalTransition(f"{tid}: InitProducerId in state {state.kafka_name}")
        try:
            if meta.is_epoch_exhausted and (expected is None or expected[1] == meta.producer_epoch):
                new = meta.prepare_producer_id_rotation(
                    self._allocate_producer_id(), timeout, self._now, expected is not None
                )
            else:
                new = meta.prepare_increment_epoch(
                    timeout, None if expected is None else expected[1], self._now
                )
        except TxnError as e:
            return e.code, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        except IllegalTransition:
            # Kafka throws here (a KIP-360 retry with an old epoch once the epochs are used
            # up) and the request fails with UNKNOWN_SERVER_ERROR.
            return ErrorCode.UNKNOWN_SERVER_ERROR, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        self._write(new)
        return ErrorCode.NONE, new.producer_id, new.producer_epoch

    # -- AddPartitionsToTxn / AddOffsetsToTxn --------------------------------------------

    def add_partitions_to_txn(
        self, now_ms: int, request: AddPartitionsToTxnRequest, version: int
    ) -> TxnResult:
        self._begin(now_ms)
        R = AddPartitionsToTxnResponse
        if version < ADD_PARTITIONS_BATCHED_VERSION:
            errors = self._add_one(
                request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id,
                request.v3_and_below_producer_epoch,
                partitions_of(request.v3_and_below_topics),
                False,
                version,
            )
            return self._end(R(results_by_topic_v3_and_below=topic_results(errors)))
        results = []
        for txn in request.transactions or ():
            errors = self._add_one(
                txn.transactional_id,
                txn.producer_id,
                txn.producer_epoch,
                partitions_of(txn.topics),
                txn.verify_only,
                version,
            )
            results.append(
                R.AddPartitionsToTxnResult(
                    transactional_id=txn.transactional_id, topic_results=topic_results(errors)
                )
            )
        return self._end(R(results_by_transaction=results))

    def _add_one(
        self,
        tid: str,
        producer_id: int,
        producer_epoch: int,
        partitions: list[TopicPartition],
        verify_only: bool,
        version: int,
    ) -> dict[TopicPartition, ErrorCode]:
        refused = refuse_partitions(
            partitions, version < ADD_PARTITIONS_BATCHED_VERSION, self._partition_exists
        )
        if refused:
            return refused
        if verify_only:
            return self.verify_partitions(tid, producer_id, producer_epoch, partitions)
        client_tv = TV_2 if version >= ADD_PARTITIONS_BATCHED_VERSION else TV_0
        error = self._add_partitions(
            tid, producer_id, producer_epoch, frozenset(partitions), client_tv
        )
        if error == ErrorCode.PRODUCER_FENCED and version < TXN_API_FENCED_VERSION:
            error = ErrorCode.INVALID_PRODUCER_EPOCH
        return {tp: error for tp in partitions}

    def _add_partitions(
        self,
        tid: str,
        producer_id: int,
        producer_epoch: int,
        partitions: frozenset[TopicPartition],
        client_tv: int = TV_0,
    ) -> ErrorCode:
        if not tid:
            return ErrorCode.INVALID_REQUEST
        meta = self._txns.get(tid)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if meta.state is S.ONGOING and partitions <= meta.topic_partitions:
            return ErrorCode.NONE  # already part of the transaction: nothing to write
        self._write(meta.prepare_add_partitions(partitions, self._now, client_tv))
        return ErrorCode.NONE

    def add_partitions_implicitly(
        self,
        now_ms: int,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: list[TopicPartition],
    ) -> TxnResult:
        """KIP-890 part 2: a TV_2 producer's first transactional batch to a partition (Produce
        v12+) or its TxnOffsetCommit v5+ adds the partition itself, as Kafka's brokers send
        AddPartitionsToTxn v5 with VerifyOnly false. The response is the error per
        partition."""
        self._begin(now_ms)
        errors = self._add_one(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            False,
            ADD_PARTITIONS_BATCHED_VERSION + 1,
        )
        return self._end(errors)

    def verify_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: list[tuple[str, int]],
    ) -> dict[tuple[str, int], ErrorCode]:
        """KIP-890 part 1: is each partition part of the producer's ongoing transaction?
        NONE if so, TRANSACTION_ABORTABLE if not; the whole set fails alike for an unknown
        id or producer id (INVALID_PRODUCER_ID_MAPPING), another epoch (PRODUCER_FENCED) or
        a transaction being completed (CONCURRENT_TRANSACTIONS)."""
        meta = self._txns.get(transactional_id)
        error: ErrorCode | None = None
        if not transactional_id:
            error = ErrorCode.INVALID_REQUEST
        elif meta is None or meta.producer_id != producer_id:
            error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
        elif meta.producer_epoch != producer_epoch:
            error = ErrorCode.PRODUCER_FENCED
        elif meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            error = ErrorCode.CONCURRENT_TRANSACTIONS
        if error is not None or meta is None:
            return {tp: error or ErrorCode.INVALID_REQUEST for tp in partitions}
        return {
            tp: ErrorCode.NONE if tp in meta.topic_partitions else ErrorCode.TRANSACTION_ABORTABLE
            for tp in partitions
        }

    def add_offsets_to_txn(
        self, now_ms: int, request: AddOffsetsToTxnRequest, version: int
    ) -> TxnResult:
        self._begin(now_ms)
        tp = (self._offsets_topic, self._offsets_partition_for(request.group_id))
        error = self._add_partitions(
            request.transactional_id, request.producer_id, request.producer_epoch, frozenset({tp})
        )
        if error == ErrorCode.PRODUCER_FENCED and version < TXN_API_FENCED_VERSION:
            error = ErrorCode.INVALID_PRODUCER_EPOCH
        return self._end(AddOffsetsToTxnResponse(error_code=error))

    # -- EndTxn and markers --------------------------------------------------------------

    def end_txn(self, now_ms: int, request: EndTxnRequest, version: int) -> TxnResult:
        self._begin(now_ms)
        error, producer_id, epoch = self._end_transaction(
            request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            request.committed,
            True,
            client_tv=TV_2 if version >= END_TXN_EPOCH_BUMP_VERSION else TV_0,
        )
        if error == ErrorCode.PRODUCER_FENCED and version < TXN_API_FENCED_VERSION:
            error = ErrorCode.INVALID_PRODUCER_EPOCH
        return self._end(
            EndTxnResponse(error_code=error, producer_id=producer_id, producer_epoch=epoch)
        )

    def _end_transaction(
        self,
        tid: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        from_client: bool,
        fence: TransactionMetadata | None = None,
        client_tv: int = TV_0,
    ) -> tuple[ErrorCode, int, int]:
        """Kafka's endTransaction: (error, producer id, epoch) for the answer.

        ``fence`` is the coordinator's own abort: the snapshot with the fencing epoch; it
        runs at the cluster's transaction version, a client's EndTxn at ``client_tv``."""
        if not from_client:
            client_tv = self.transaction_version
        if client_tv >= TV_2:
            return self._end_transaction_v2(
                tid, producer_id, producer_epoch, commit, from_client, fence is not None
            )
        failed = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if not tid:
            return (ErrorCode.INVALID_REQUEST, *failed)
        meta = self._txns.get(tid) if fence is None else fence
        if meta is None or meta.producer_id != producer_id:
            return (ErrorCode.INVALID_PRODUCER_ID_MAPPING, *failed)
        valid_epoch = (not from_client or producer_epoch == meta.producer_epoch) and (
            producer_epoch >= meta.producer_epoch
        )
        if not valid_epoch:
            return (ErrorCode.PRODUCER_FENCED, *failed)
        state = meta.state
        if state in (S.ONGOING, S.PREPARE_EPOCH_FENCE):
            if state is S.PREPARE_EPOCH_FENCE and commit:
                raise IllegalTransition(f"{tid}: commit while fencing")
            target = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
            new = meta.prepare_abort_or_commit(target, client_tv, self._now)
            self._write(new)
            self._send_markers(new)
            return ErrorCode.NONE, new.producer_id, new.producer_epoch
        if state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
            if commit == (state is S.COMPLETE_COMMIT):
                return ErrorCode.NONE, meta.producer_id, meta.producer_epoch  # a retry
            return (ErrorCode.INVALID_TXN_STATE, *failed)
        if state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            if commit == (state is S.PREPARE_COMMIT):
                return (ErrorCode.CONCURRENT_TRANSACTIONS, *failed)  # markers still going out
            return (ErrorCode.INVALID_TXN_STATE, *failed)
        if state is S.EMPTY:
            return (ErrorCode.INVALID_TXN_STATE, *failed)
        raise IllegalTransition(f"{tid}: EndTxn in state {state.kafka_name}")

    def _end_transaction_v2(
        self,
        tid: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        from_client: bool,
        is_fence: bool,
    ) -> tuple[ErrorCode, int, int]:
        """Kafka's endTransaction for TV_2 (KIP-890 part 2): every commit or abort bumps the
        epoch, and the answer carries the producer id and epoch to go on with.

        The same epoch is the next transaction's EndTxn, so a retry is recognised by the
        epoch it carries: one below the bumped epoch (``retry_on_bump``), or the last epoch
        of the previous producer id after a rotation (``retry_on_overflow``)."""
        failed = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if not tid:
            return (ErrorCode.INVALID_REQUEST, *failed)
        meta = self._txns.get(tid)
        if meta is None:
            return (ErrorCode.INVALID_PRODUCER_ID_MAPPING, *failed)
        current = meta.producer_epoch
        retry_on_overflow = (
            not is_fence
            and meta.prev_producer_id == producer_id
            and producer_epoch == EPOCH_EXHAUSTED_AT
            and current == 0
        )
        retry_on_bump = not is_fence and current == producer_epoch + 1
        state = meta.state
        if is_fence:
            valid = (not from_client or producer_epoch == current) and producer_epoch >= current
        elif state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            valid = retry_on_bump
        elif state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
            valid = retry_on_bump or retry_on_overflow or producer_epoch == current
        else:
            valid = producer_epoch == current
        if meta.producer_id != producer_id and not retry_on_overflow:
            return (ErrorCode.INVALID_PRODUCER_ID_MAPPING, *failed)
        if not valid:
            return (ErrorCode.PRODUCER_FENCED, *failed)
        is_retry = retry_on_bump or retry_on_overflow
        done = ErrorCode.NONE, meta.producer_id, current  # a retry: what is in force now
        if state is S.ONGOING:
            return self._prepare_v2(meta, S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, False)
        if state is S.COMPLETE_COMMIT:
            if commit:
                return done if is_retry else (ErrorCode.INVALID_TXN_STATE, *failed)
            if is_retry:
                return (ErrorCode.INVALID_TXN_STATE, *failed)
            return self._prepare_v2(meta, S.PREPARE_ABORT, True)
        if state is S.COMPLETE_ABORT:
            if commit:
                return (ErrorCode.INVALID_TXN_STATE, *failed)
            return done if is_retry else self._prepare_v2(meta, S.PREPARE_ABORT, True)
        if state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            if commit == (state is S.PREPARE_COMMIT):
                return (ErrorCode.CONCURRENT_TRANSACTIONS, *failed)  # markers still going out
            return (ErrorCode.INVALID_TXN_STATE, *failed)
        if state is S.EMPTY:
            if commit:
                return (ErrorCode.INVALID_TXN_STATE, *failed)
            return self._prepare_v2(meta, S.PREPARE_ABORT, True)
        raise IllegalTransition(f"{tid}: EndTxn in state {state.kafka_name}")

    def _prepare_v2(
        self, meta: TransactionMetadata, target: TransactionState, no_partition_added: bool
    ) -> tuple[ErrorCode, int, int]:
        """Write the TV_2 PrepareCommit/PrepareAbort (epoch bumped; a next producer id when
        the bump uses the epochs up) and send its markers; answer with the producer id and
        epoch the complete transaction will carry."""
        next_id = self._allocate_producer_id() if meta.is_epoch_exhausted else NO_PRODUCER_ID
        new = meta.prepare_abort_or_commit(target, TV_2, self._now, next_id, no_partition_added)
        self._write(new)
        self._send_markers(new)
        if next_id != NO_PRODUCER_ID:
            return ErrorCode.NONE, next_id, 0
        return ErrorCode.NONE, new.producer_id, new.producer_epoch

    def _send_markers(self, meta: TransactionMetadata) -> None:
        if not meta.topic_partitions:  # nothing to mark (all partitions deleted, or none)
            self._inflight.cancel(meta.transactional_id)
            self._write(meta.prepare_complete(self._now))
            return
        epoch = self._epoch_for(meta.transactional_id)
        self._markers.append(self._inflight.issue(meta, epoch))

    def _epoch_for(self, transactional_id: str) -> int:
        if self._coordinator_epoch_of is None:
            return self._coordinator_epoch
        return self._coordinator_epoch_of(self.partition_for(transactional_id))

    def markers_written(
        self, now_ms: int, marker_id: int, errors: dict[tuple[str, int], ErrorCode]
    ) -> TxnResult:
        """The server wrote (or failed to write) the markers of ``marker_id``.

        Written, deleted (UNKNOWN_TOPIC_OR_PARTITION) and marker-less partitions are done;
        INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED stop this transaction's
        markers (Kafka leaves it prepared until the partition is reloaded); any other
        error, or a partition missing from ``errors``, gets a new TxnMarkers to retry. Once
        all partitions are done the CompleteCommit/CompleteAbort record is written. An
        unknown or superseded ``marker_id`` is ignored."""
        self._begin(now_ms)
        tid = self._inflight.owner(marker_id)
        meta = None if tid is None else self._txns.get(tid)
        epoch = self._coordinator_epoch if tid is None else self._epoch_for(tid)
        outcome, remaining = self._inflight.settle(marker_id, meta, epoch, errors)
        if meta is None or outcome is Settled.OBSOLETE:
            return self._end()
        # Kafka drops a partition from the prepared transaction once its marker is in.
        meta = dataclasses.replace(meta, topic_partitions=remaining)
        self._txns[meta.transactional_id] = meta
        if outcome is not Settled.ABANDONED:
            self._send_markers(meta)
        return self._end()

    # -- administration ------------------------------------------------------------------

    def describe_transactions(
        self, now_ms: int, request: DescribeTransactionsRequest, version: int
    ) -> TxnResult:
        self._begin(now_ms)
        return self._end(_admin.describe(self._txns, request))

    def list_transactions(
        self, now_ms: int, request: ListTransactionsRequest, version: int
    ) -> TxnResult:
        self._begin(now_ms)
        return self._end(_admin.list_transactions(self._txns, request, version, self._now))

    # -- timers --------------------------------------------------------------------------

    def _abort_timed_out(self) -> None:
        """Kafka's transaction-abort task: fence and abort what ran past its timeout."""
        for tid, meta in list(self._txns.items()):
            if (
                meta.state is S.ONGOING
                and meta.txn_start_timestamp + meta.txn_timeout_ms < self._now
            ):
                fenced = meta.prepare_fence_epoch()
                self._end_transaction(
                    tid, fenced.producer_id, fenced.producer_epoch, False, False, fence=fenced
                )
        interval = self.config.transaction_abort_timed_out_transaction_cleanup_interval_ms
        self._timers.schedule(ABORT_TIMER, self._now + interval, self._abort_timed_out)

    def _expire_transactional_ids(self) -> None:
        """Kafka's transactionalId-expiration task: tombstone ids idle for too long."""
        horizon = self._now - self.config.transactional_id_expiration_ms
        for tid, meta in list(self._txns.items()):
            if meta.state.expiration_allowed and meta.txn_last_update_timestamp <= horizon:
                meta.prepare_dead()  # checks the move against the table
                self._write_tombstone(tid)
        interval = self.config.transaction_remove_expired_transaction_cleanup_interval_ms
        self._timers.schedule(EXPIRE_TIMER, self._now + interval, self._expire_transactional_ids)
