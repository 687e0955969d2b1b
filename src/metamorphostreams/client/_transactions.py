"""Kafka transactions for the producer: the state machine and the coordinator requests.

As Kafka's TransactionManager with transaction version 1: ``init()`` finds the transaction
coordinator (FindCoordinator, key type 1) and takes a producer id and epoch for the
transactional.id (InitProducerId, which also fences older producers with the same id and
aborts their open transaction); a partition joins the transaction (AddPartitionsToTxn, sent
by the producer's sender as soon as a record for a new partition is queued) before its first
batch is sent; ``send_offsets()`` adds the group's offsets to the transaction
(AddOffsetsToTxn to the transaction coordinator, TxnOffsetCommit to the group coordinator);
``end()`` commits or aborts (EndTxn). One coordinator request is in flight at a time.

Errors are classified as Kafka does: retriable ones (CONCURRENT_TRANSACTIONS,
COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR after finding the coordinator again, a broken
connection) are retried until the operation's deadline (KafkaTimeoutError then, and the same
call may be made again); fatal ones (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH,
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, anything unexpected) move to FATAL_ERROR, where every
operation raises them again and the producer must be closed; abortable ones (a failed batch,
an unauthorised topic or group, a group generation that moved on) move to ABORTABLE_ERROR,
where only ``abort_transaction()`` works.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..protocol._generated.add_offsets_to_txn import AddOffsetsToTxnRequest
from ..protocol._generated.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from ..protocol._generated.end_txn import EndTxnRequest
from ..protocol._generated.init_producer_id import InitProducerIdRequest
from ..protocol._generated.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
)
from ..protocol.errors import ErrorCode
from ._group import GROUP_KEY, TRANSACTION_KEY, find_coordinator
from ._records import ConsumerGroupMetadata
from .cluster import KafkaClient, TopicPartition
from .errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TransactionAbortableError,
    TransactionStateError,
    UnsupportedVersionError,
    error_for,
)

__all__ = ["TransactionManager", "TxnState"]

log = logging.getLogger("metamorphostreams.client")

LANE = "txn"  # coordinator requests do not queue behind Produce requests to the same broker
FIRST_ADD_BACKOFF_S = 0.02  # Kafka's: the previous transaction is usually just completing
EPOCH_BUMP_VERSION = 3  # InitProducerId v3 takes the current producer id and epoch


class TxnState(enum.Enum):
    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    IN_TRANSACTION = "IN_TRANSACTION"
    COMMITTING_TRANSACTION = "COMMITTING_TRANSACTION"
    ABORTING_TRANSACTION = "ABORTING_TRANSACTION"
    ABORTABLE_ERROR = "ABORTABLE_ERROR"
    FATAL_ERROR = "FATAL_ERROR"


S = TxnState

# target -> the states it may be entered from (Kafka's State.isTransitionValid). An
# operation that timed out may be called again, so INITIALIZING, COMMITTING_TRANSACTION
# and ABORTING_TRANSACTION may also be re-entered from themselves.
ALLOWED_FROM: dict[TxnState, frozenset[TxnState]] = {
    S.INITIALIZING: frozenset({S.UNINITIALIZED, S.INITIALIZING}),
    S.READY: frozenset({S.INITIALIZING, S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION}),
    S.IN_TRANSACTION: frozenset({S.READY}),
    S.COMMITTING_TRANSACTION: frozenset({S.IN_TRANSACTION, S.COMMITTING_TRANSACTION}),
    S.ABORTING_TRANSACTION: frozenset(
        {S.IN_TRANSACTION, S.ABORTABLE_ERROR, S.ABORTING_TRANSACTION}
    ),
    S.ABORTABLE_ERROR: frozenset({S.IN_TRANSACTION, S.COMMITTING_TRANSACTION, S.ABORTABLE_ERROR}),
    S.FATAL_ERROR: frozenset(S),
}


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    REFIND = "refind"  # find the coordinator again, then retry
    ABORTABLE = "abortable"
    BUMP = "bump"  # abortable, and the abort must bump the epoch (sequences are broken)
    FENCED = "fenced"
    FATAL = "fatal"


E = ErrorCode
O = Outcome  # noqa: E741

# What a transaction coordinator's error code means (Kafka's TxnRequestHandler subclasses);
# a code not listed is fatal ("unexpected error").
COORDINATOR_OUTCOMES: dict[int, Outcome] = {
    E.NONE: O.DONE,
    E.NOT_COORDINATOR: O.REFIND,
    E.COORDINATOR_NOT_AVAILABLE: O.REFIND,
    E.COORDINATOR_LOAD_IN_PROGRESS: O.RETRY,
    E.CONCURRENT_TRANSACTIONS: O.RETRY,
    E.INVALID_PRODUCER_EPOCH: O.FENCED,  # what older coordinators say for PRODUCER_FENCED
    E.PRODUCER_FENCED: O.FENCED,
    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: O.FATAL,
    E.CLUSTER_AUTHORIZATION_FAILED: O.FATAL,
    E.INVALID_TXN_STATE: O.FATAL,
    E.UNKNOWN_PRODUCER_ID: O.BUMP,
    E.INVALID_PRODUCER_ID_MAPPING: O.BUMP,
    E.TRANSACTION_ABORTABLE: O.ABORTABLE,
    E.GROUP_AUTHORIZATION_FAILED: O.ABORTABLE,
}
INIT_OUTCOMES = {
    c: o for c, o in COORDINATOR_OUTCOMES.items() if o is not O.BUMP and c != E.INVALID_TXN_STATE
}
ADD_PARTITIONS_OUTCOMES = {
    **COORDINATOR_OUTCOMES,
    E.UNKNOWN_TOPIC_OR_PARTITION: O.RETRY,
    E.TOPIC_AUTHORIZATION_FAILED: O.ABORTABLE,
    E.OPERATION_NOT_ATTEMPTED: O.ABORTABLE,  # another partition of the request failed
}
# The group coordinator's answers to TxnOffsetCommit, per partition.
TXN_OFFSET_OUTCOMES: dict[int, Outcome] = {
    E.NONE: O.DONE,
    E.NOT_COORDINATOR: O.REFIND,
    E.COORDINATOR_NOT_AVAILABLE: O.REFIND,
    E.REQUEST_TIMED_OUT: O.REFIND,
    E.UNKNOWN_TOPIC_OR_PARTITION: O.RETRY,
    E.COORDINATOR_LOAD_IN_PROGRESS: O.RETRY,
    E.CONCURRENT_TRANSACTIONS: O.RETRY,
    E.GROUP_AUTHORIZATION_FAILED: O.ABORTABLE,
    E.FENCED_INSTANCE_ID: O.ABORTABLE,
    E.UNKNOWN_MEMBER_ID: O.ABORTABLE,
    E.ILLEGAL_GENERATION: O.ABORTABLE,
    E.TRANSACTION_ABORTABLE: O.ABORTABLE,
    E.INVALID_PRODUCER_EPOCH: O.FENCED,
    E.PRODUCER_FENCED: O.FENCED,
    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: O.FATAL,
    E.UNSUPPORTED_FOR_MESSAGE_FORMAT: O.FATAL,
}
# When a request's partitions disagree, the worst outcome decides (first in this order).
SEVERITY = (O.FENCED, O.FATAL, O.BUMP, O.ABORTABLE, O.REFIND, O.RETRY, O.DONE)
# Batch errors that end the producer, not just the transaction (Kafka's handleFailedBatch).
FATAL_BATCH_CODES = frozenset(
    {
        E.PRODUCER_FENCED,
        E.INVALID_PRODUCER_EPOCH,
        E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        E.CLUSTER_AUTHORIZATION_FAILED,
        E.UNSUPPORTED_VERSION,
    }
)
FENCED_MESSAGE = (
    "the producer was fenced: another producer initialised transactional.id {id!r}; close this one"
)

Classify = Callable[[Any], tuple[Outcome, int]]


def _worst(outcomes: list[tuple[Outcome, int]]) -> tuple[Outcome, int]:
    return min(outcomes, key=lambda oc: SEVERITY.index(oc[0]), default=(O.DONE, E.NONE))


class TransactionManager:
    """The transactional state of one producer. Loop-owned; the producer calls it from its
    methods and its sender task, and serialises the user-facing operations itself."""

    def __init__(
        self,
        client: KafkaClient,
        transactional_id: str,
        *,
        transaction_timeout_ms: int,
        retry_backoff_s: float,
        add_partitions_timeout_s: float,
        wake_sender: Callable[[], None],
    ) -> None:
        self.client = client
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.state = S.UNINITIALIZED
        self.last_error: KafkaError | None = None
        self.producer_id = -1
        self.producer_epoch = -1
        self.partitions: set[TopicPartition] = set()  # in the transaction: batches may go
        self.started = False  # the coordinator knows of this transaction: EndTxn is needed
        self.epoch_bump_required = False
        self._new: set[TopicPartition] = set()  # queued records, not added yet
        self._adding: asyncio.Task[None] | None = None
        self._coordinators: dict[tuple[int, str], int] = {}
        self._lock = asyncio.Lock()  # one coordinator request in flight, as Kafka's
        self._backoff_s = retry_backoff_s
        self._add_timeout_s = add_partitions_timeout_s
        self._wake_sender = wake_sender

    # -- state -------------------------------------------------------------------------

    def _transition(self, target: TxnState, what: str) -> None:
        if self.state not in ALLOWED_FROM[target]:
            raise TransactionStateError(f"cannot {what} in state {self.state.value}")
        log.debug("transaction %s: %s -> %s", self.transactional_id, self.state, target)
        self.state = target

    def _raise_if_failed(self, what: str) -> None:
        err = self.last_error
        if self.state is S.FATAL_ERROR and err is not None:
            raise type(err)(err.message, code=err.code)
        if self.state is S.ABORTABLE_ERROR and err is not None:
            raise TransactionAbortableError(
                f"cannot {what}: the transaction failed and must be aborted: {err}",
                code=err.code,
            ) from err

    def _fatal(self, err: KafkaError) -> KafkaError:
        log.info("transaction %s: fatal error: %s", self.transactional_id, err)
        self.last_error = err
        self.state = S.FATAL_ERROR
        return err

    def _abortable(self, err: KafkaError) -> KafkaError:
        if self.state is S.ABORTING_TRANSACTION or self.state is S.FATAL_ERROR:
            return err
        if self.state in ALLOWED_FROM[S.ABORTABLE_ERROR]:
            log.info("transaction %s: abortable error: %s", self.transactional_id, err)
            self.last_error = err
            self.state = S.ABORTABLE_ERROR
        return err

    @property
    def aborting_or_failed(self) -> bool:
        """Queued batches can no longer be sent: fail them."""
        return self.state in (S.ABORTING_TRANSACTION, S.ABORTABLE_ERROR, S.FATAL_ERROR)

    def check_send(self) -> None:
        """Raise unless a record may be sent now (inside a transaction, no error)."""
        if self.state is S.IN_TRANSACTION:
            return
        self._raise_if_failed("send")
        if self.state in (S.UNINITIALIZED, S.INITIALIZING):
            raise TransactionStateError("call init_transactions() before sending")
        raise TransactionStateError(
            f"cannot send in state {self.state.value}: call begin_transaction() first"
        )

    def batch_failed(self, err: KafkaError, sequenced: bool) -> None:
        """A batch of this transaction will never be stored."""
        if sequenced:
            self.epoch_bump_required = True  # the partition's sequence has a gap now
        if err.code in (E.PRODUCER_FENCED, E.INVALID_PRODUCER_EPOCH):
            self._fatal(ProducerFencedError(FENCED_MESSAGE.format(id=self.transactional_id)))
        elif err.code in FATAL_BATCH_CODES:
            self._fatal(err)
        else:
            self._abortable(err)

    # -- operations --------------------------------------------------------------------

    async def init(self, deadline: float) -> None:
        """InitProducerId for the transactional id (fencing older producers)."""
        self._raise_if_failed("init_transactions()")
        self._transition(S.INITIALIZING, "init_transactions()")
        response = await self._request(
            "InitProducerId",
            lambda: InitProducerIdRequest(
                transactional_id=self.transactional_id,
                transaction_timeout_ms=self.transaction_timeout_ms,
                producer_id=-1,
                producer_epoch=-1,
            ),
            _top_level(INIT_OUTCOMES),
            deadline,
        )
        self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch
        self._completed()
        log.info(
            "transactional id %s has producer id %d epoch %d",
            self.transactional_id,
            self.producer_id,
            self.producer_epoch,
        )

    def begin(self) -> None:
        self._raise_if_failed("begin_transaction()")
        if self.state in (S.UNINITIALIZED, S.INITIALIZING):
            raise TransactionStateError("call init_transactions() before begin_transaction()")
        self._transition(S.IN_TRANSACTION, "begin_transaction()")

    def maybe_add_partition(self, tp: TopicPartition) -> None:
        if tp not in self.partitions:
            self._new.add(tp)

    def poll_partitions(self) -> None:
        """Start an AddPartitionsToTxn for the partitions waiting, unless one is under way."""
        if not self._new or self._adding is not None:
            return
        if self.state not in (S.IN_TRANSACTION, S.COMMITTING_TRANSACTION):
            return
        tps, self._new = self._new, set()
        self._adding = asyncio.ensure_future(self._add_partitions(tps))

    async def _add_partitions(self, tps: set[TopicPartition]) -> None:
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(tps):
            by_topic.setdefault(tp.topic, []).append(tp.partition)

        def build() -> AddPartitionsToTxnRequest:
            return AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=self.transactional_id,
                v3_and_below_producer_id=self.producer_id,
                v3_and_below_producer_epoch=self.producer_epoch,
                v3_and_below_topics=[
                    AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(name=t, partitions=p)
                    for t, p in by_topic.items()
                ],
            )

        def classify(response: AddPartitionsToTxnResponse) -> tuple[Outcome, int]:
            return _worst(
                [
                    (
                        ADD_PARTITIONS_OUTCOMES.get(p.partition_error_code, O.FATAL),
                        p.partition_error_code,
                    )
                    for t in response.results_by_topic_v3_and_below or []
                    for p in t.results_by_partition or []
                ]
            )

        try:
            await self._request(
                "AddPartitionsToTxn",
                build,
                classify,
                time.monotonic() + self._add_timeout_s,
                first_backoff_s=FIRST_ADD_BACKOFF_S if not self.partitions else None,
            )
        except KafkaTimeoutError as exc:
            self._abortable(exc)
        except KafkaError:
            pass  # _request has moved to the error state; the sender fails the batches
        except Exception as exc:  # our bug: do not leave the batches waiting forever
            log.exception("AddPartitionsToTxn failed")
            self._fatal(KafkaError(f"AddPartitionsToTxn failed: {exc!r}"))
        else:
            log.debug("added %s to transaction %s", sorted(tps), self.transactional_id)
            self.partitions |= tps
            self.started = True
        finally:
            self._adding = None
            self._wake_sender()

    async def send_offsets(
        self,
        offsets: Mapping[TopicPartition, int],
        group: ConsumerGroupMetadata,
        deadline: float,
    ) -> None:
        """AddOffsetsToTxn, then TxnOffsetCommit of ``offsets`` (the next offsets to read)."""
        self._raise_if_failed("send_offsets_to_transaction()")
        if self.state is not S.IN_TRANSACTION:
            raise TransactionStateError(
                f"cannot send offsets in state {self.state.value}: no transaction is open"
            )
        if not offsets:
            return
        await self._request(
            "AddOffsetsToTxn",
            lambda: AddOffsetsToTxnRequest(
                transactional_id=self.transactional_id,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
                group_id=group.group_id,
            ),
            _top_level(COORDINATOR_OUTCOMES),
            deadline,
        )
        self.started = True
        pending = dict(offsets)

        def build() -> TxnOffsetCommitRequest:
            by_topic: dict[str, list[TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition]] = {}
            for tp, offset in sorted(pending.items()):
                by_topic.setdefault(tp.topic, []).append(
                    TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(
                        partition_index=tp.partition, committed_offset=offset
                    )
                )
            return TxnOffsetCommitRequest(
                transactional_id=self.transactional_id,
                group_id=group.group_id,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
                generation_id=group.generation,
                member_id=group.member_id,
                group_instance_id=group.group_instance_id,
                topics=[
                    TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=t, partitions=p)
                    for t, p in by_topic.items()
                ],
            )

        def classify(response: TxnOffsetCommitResponse) -> tuple[Outcome, int]:
            results: list[tuple[Outcome, int]] = []
            for t in response.topics or []:
                for p in t.partitions or []:
                    outcome = TXN_OFFSET_OUTCOMES.get(p.error_code, O.FATAL)
                    if outcome is O.DONE:
                        pending.pop(TopicPartition(t.name, p.partition_index), None)
                    results.append((outcome, p.error_code))
            worst = _worst(results)
            if worst[0] is O.DONE and pending:
                return O.RETRY, E.UNKNOWN_TOPIC_OR_PARTITION  # partitions left unanswered
            return worst

        await self._request(
            "TxnOffsetCommit", build, classify, deadline, key_type=GROUP_KEY, key=group.group_id
        )

    def begin_commit(self) -> None:
        self._raise_if_failed("commit_transaction()")
        if self.state in (S.UNINITIALIZED, S.INITIALIZING, S.READY):
            raise TransactionStateError("no transaction is open: call begin_transaction() first")
        self._transition(S.COMMITTING_TRANSACTION, "commit_transaction()")

    def check_committable(self) -> None:
        """After the flush of a commit: raise if a batch failed meanwhile."""
        self._raise_if_failed("commit the transaction")

    def begin_abort(self) -> None:
        if self.state is not S.ABORTABLE_ERROR:
            self._raise_if_failed("abort_transaction()")
        if self.state in (S.UNINITIALIZED, S.INITIALIZING, S.READY):
            raise TransactionStateError("no transaction is open: call begin_transaction() first")
        self._transition(S.ABORTING_TRANSACTION, "abort_transaction()")
        self._new.clear()  # nothing more will be sent in this transaction

    async def end(self, commit: bool, deadline: float) -> None:
        """EndTxn (skipped when the coordinator never heard of the transaction); after an
        abort that left a gap in some partition's sequence, a new epoch (InitProducerId)."""
        if self._adding is not None:
            await asyncio.shield(self._adding)  # it may still add partitions: then EndTxn
        self._raise_if_failed("commit the transaction" if commit else "abort the transaction")
        if self.started:
            await self._request(
                "EndTxn(commit)" if commit else "EndTxn(abort)",
                lambda: EndTxnRequest(
                    transactional_id=self.transactional_id,
                    producer_id=self.producer_id,
                    producer_epoch=self.producer_epoch,
                    committed=commit,
                ),
                _top_level(COORDINATOR_OUTCOMES),
                deadline,
            )
        self.started = False
        if not commit and self.epoch_bump_required:
            await self._bump_epoch(deadline)
        self._completed()

    async def _bump_epoch(self, deadline: float) -> None:
        version = await self.client.api_version(InitProducerIdRequest.API_KEY)
        if version < EPOCH_BUMP_VERSION:
            raise self._fatal(
                UnsupportedVersionError(
                    "the broker cannot bump a producer epoch (InitProducerId < v3) after a "
                    "failed batch: close the producer"
                )
            )
        response = await self._request(
            "InitProducerId(epoch bump)",
            lambda: InitProducerIdRequest(
                transactional_id=self.transactional_id,
                transaction_timeout_ms=self.transaction_timeout_ms,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
            ),
            _top_level(INIT_OUTCOMES),
            deadline,
        )
        self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch
        self.epoch_bump_required = False

    def _completed(self) -> None:
        self.state = S.READY
        self.last_error = None
        self.partitions.clear()
        self._new.clear()
        self.started = False

    # -- requests ----------------------------------------------------------------------

    async def _coordinator(self, key_type: int, key: str, deadline: float, what: str) -> int:
        node = self._coordinators.get((key_type, key))
        if node is not None:
            return node
        try:
            node = await find_coordinator(
                self.client,
                key,
                key_type,
                timeout_s=max(0.0, deadline - time.monotonic()),
                backoff_s=self._backoff_s,
            )
        except (KafkaConnectionError, KafkaTimeoutError):
            raise
        except KafkaError as exc:
            if exc.retriable:
                raise KafkaTimeoutError(
                    f"{what}: no {'group' if key_type == GROUP_KEY else 'transaction'} "
                    f"coordinator for {key!r} before the deadline ({exc})"
                ) from exc
            if exc.code == E.GROUP_AUTHORIZATION_FAILED:
                raise self._abortable(exc) from None
            raise self._fatal(exc) from None
        self._coordinators[(key_type, key)] = node
        return node

    async def _request(
        self,
        what: str,
        build: Callable[[], Any],
        classify: Classify,
        deadline: float,
        *,
        key_type: int = TRANSACTION_KEY,
        key: str | None = None,
        first_backoff_s: float | None = None,
    ) -> Any:
        """Send ``build()`` to the coordinator until ``classify`` says DONE; the response."""
        coordinator_key = self.transactional_id if key is None else key
        last = ""
        while True:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"{what} did not complete before the deadline{last}")
            try:
                node = await self._coordinator(key_type, coordinator_key, deadline, what)
                async with self._lock:
                    response = await self.client.send(node, build(), lane=LANE)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._coordinators.pop((key_type, coordinator_key), None)
                outcome, code, detail = O.RETRY, int(exc.code), str(exc)
            else:
                outcome, code = classify(response)
                detail = _name(code)
            if outcome is O.DONE:
                return response
            message = f"{what} failed"
            if outcome is O.FENCED:
                raise self._fatal(
                    ProducerFencedError(FENCED_MESSAGE.format(id=self.transactional_id))
                )
            if outcome is O.FATAL:
                raise self._fatal(error_for(code, message))
            if outcome is O.BUMP:
                self.epoch_bump_required = True
                raise self._abortable(error_for(code, message))
            if outcome is O.ABORTABLE:
                if code in (E.UNKNOWN_MEMBER_ID, E.ILLEGAL_GENERATION):
                    raise self._abortable(
                        CommitFailedError(
                            f"{message}: the consumer group moved on ({E(code).name}); "
                            "abort, and consume again from the committed offsets"
                        )
                    )
                raise self._abortable(error_for(code, message))
            if outcome is O.REFIND:
                self._coordinators.pop((key_type, coordinator_key), None)
            log.debug("%s: %s; retrying", what, detail)
            last = f" (last: {detail})"
            backoff = self._backoff_s
            if first_backoff_s is not None and code == E.CONCURRENT_TRANSACTIONS:
                backoff = first_backoff_s
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))


def _top_level(outcomes: Mapping[int, Outcome]) -> Classify:
    def classify(response: Any) -> tuple[Outcome, int]:
        code = response.error_code
        return outcomes.get(code, O.FATAL), code

    return classify


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"
