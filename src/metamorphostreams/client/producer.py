"""The asyncio producer: partitioning, batching, compression, acks, retries, idempotence.

``send()`` places a record in its partition's open batch and returns a future; a sender
task drains batches that are full (``batch.size``), old enough (``linger.ms``) or flushed,
groups them by leader into Produce requests (one batch per partition per request, at most
``max.in.flight.requests.per.connection`` requests in flight per broker) and completes the
futures from the responses. With idempotence (the default, as in Kafka 3+) the producer
takes a producer id from InitProducerId and numbers each partition's batches; a retried
batch keeps its sequence, and a partition with a retry waiting sends nothing else until its
in-flight batches are answered, so the broker sees each partition's batches in order.

With ``transactional.id`` the producer is transactional (``_transactions.py``): records go
out only inside ``begin_transaction()`` ... ``commit_transaction()``/``abort_transaction()``,
a partition's batches wait until the partition has joined the transaction, batches carry
the transactional flag, and a batch that fails makes the transaction abortable instead of
resetting the producer id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol._generated.init_producer_id import InitProducerIdRequest
from ..protocol._generated.produce import ProduceRequest, ProduceResponse
from ..protocol.errors import ErrorCode
from ..protocol.record_batch import CompressionType
from ..protocol.records import build_batch
from ._records import (
    ConsumerGroupMetadata,
    HeaderInput,
    RecordMetadata,
    normalise_headers,
    to_bytes,
)
from ._transactions import TransactionManager
from .cluster import KafkaClient, TopicPartition
from .config import ClientConfig
from .errors import (
    ConfigError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TransactionAbortedError,
    TransactionStateError,
    UnknownTopicOrPartitionError,
    error_for,
)
from .partitioner import StickyPartitioner, partition_for_key

__all__ = ["AsyncProducer", "DeliveryCallback"]

log = logging.getLogger("metamorphostreams.client")

DeliveryCallback = Callable[[KafkaError | None, RecordMetadata], None]

RECORD_OVERHEAD = 21  # worst-case varint framing of one record (length, deltas, counts)
BATCH_OVERHEAD = 61  # record batch header
REQUEST_OVERHEAD = 64  # Produce request framing around the batches, generously
INT32_MAX = 2**31 - 1
SEQUENCE_ERRORS = frozenset({ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.UNKNOWN_PRODUCER_ID})
CODECS = {
    "none": CompressionType.NONE,
    "gzip": CompressionType.GZIP,
    "snappy": CompressionType.SNAPPY,
    "lz4": CompressionType.LZ4,
    "zstd": CompressionType.ZSTD,
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Pending:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int
    future: asyncio.Future[RecordMetadata]


@dataclass(slots=True, eq=False)
class _Batch:
    tp: TopicPartition
    created: float
    records: list[_Pending] = field(default_factory=list)
    size: int = BATCH_OVERHEAD
    attempts: int = 0
    base_sequence: int = -1
    producer_id: int = -1
    producer_epoch: int = -1
    payload: bytes | None = None
    retry_at: float = 0.0
    closed: bool = False

    def fail(self, exc: KafkaError) -> None:
        for rec in self.records:
            if not rec.future.done():
                rec.future.set_exception(exc)


class AsyncProducer:
    """An asyncio Kafka producer. Create and use it inside one event loop.

    ``async with AsyncProducer({"bootstrap.servers": "127.0.0.1:9092"}) as producer:``
    ``    metadata = await producer.send_and_wait("topic", b"value", key=b"k")``
    """

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = ClientConfig.for_role("producer", config, **kwargs)
        cfg = self.config
        self._acks: int = cfg["acks"]
        self._idempotent: bool = cfg["enable.idempotence"]
        if self._idempotent and self._acks != -1:
            if "enable.idempotence" in cfg.given:
                raise ConfigError("enable.idempotence=true requires acks=all")
            self._idempotent = False
        if self._idempotent and cfg["max.in.flight.requests.per.connection"] > 5:
            if "enable.idempotence" in cfg.given:
                raise ConfigError(
                    "enable.idempotence=true requires max.in.flight.requests.per.connection <= 5"
                )
            self._idempotent = False
        self._client = KafkaClient(cfg, allow_auto_topic_creation=cfg["allow.auto.create.topics"])
        self._compression = CODECS[cfg["compression.type"]]
        self._level: int | None = {
            CompressionType.GZIP: cfg["compression.gzip.level"],
            CompressionType.LZ4: cfg["compression.lz4.level"],
            CompressionType.ZSTD: cfg["compression.zstd.level"],
        }.get(self._compression)
        if self._level is not None and self._level < 0:
            self._level = None
        self._batch_size: int = cfg["batch.size"]
        self._linger_s = cfg["linger.ms"] / 1000
        self._sticky = StickyPartitioner(self._batch_size)
        self._queues: dict[TopicPartition, deque[_Batch]] = {}
        self._in_flight: dict[TopicPartition, int] = {}
        self._node_in_flight: dict[int, int] = {}
        self._next_sequence: dict[TopicPartition, int] = {}
        self._producer_id = -1
        self._producer_epoch = -1
        self._reset_pid = False
        self._buffered = 0
        self._space = asyncio.Condition()
        self._wake = asyncio.Event()
        self._flushing = 0
        self._sender: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._request_tasks: set[asyncio.Task[None]] = set()
        self._sending: set[_Batch] = set()
        self._topic_cache: dict[str, tuple[Any, int, list[int]]] = {}
        self._acked: set[TopicPartition] = set()  # partitions that stored a batch of this pid
        self._txn: TransactionManager | None = None
        if cfg["transactional.id"]:
            self._txn = self._transaction_manager(cfg)

    def _transaction_manager(self, cfg: ClientConfig) -> TransactionManager:
        # Kafka's KafkaProducer.configureTransactionState: transactions need idempotence.
        if not self._idempotent:
            given = cfg.given
            if "enable.idempotence" in given and not cfg["enable.idempotence"]:
                raise ConfigError("transactional.id requires enable.idempotence=true")
            if "acks" in given and cfg["acks"] != -1:
                raise ConfigError("transactional.id requires acks=all")
            raise ConfigError(
                "transactional.id requires max.in.flight.requests.per.connection <= 5"
            )
        return TransactionManager(
            self._client,
            cfg["transactional.id"],
            transaction_timeout_ms=cfg["transaction.timeout.ms"],
            retry_backoff_s=cfg["retry.backoff.ms"] / 1000,
            add_partitions_timeout_s=cfg["delivery.timeout.ms"] / 1000,
            wake_sender=self._wake.set,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, load metadata and (idempotent, not transactional) get a producer id."""
        if self._started:
            return
        try:
            await self._client.bootstrap()
            if self._txn is not None:
                if not await self._client.supports(InitProducerIdRequest.API_KEY):
                    raise ConfigError("the broker does not support transactions")
            elif self._idempotent:
                if not await self._client.supports(InitProducerIdRequest.API_KEY):
                    if "enable.idempotence" in self.config.given:
                        raise ConfigError("the broker does not support idempotent producers")
                    self._idempotent = False
                else:
                    await self._init_producer_id()
        except BaseException:
            await self._client.close()
            raise
        self._started = True
        self._sender = asyncio.ensure_future(self._run_sender())

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what is buffered (up to ``timeout`` seconds), then disconnect."""
        if not self._started or self._closing:
            return
        with contextlib.suppress(KafkaTimeoutError):
            await self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        for task in list(self._request_tasks):
            task.cancel()
        closed = KafkaError("the producer was closed before the record was delivered")
        for queue in self._queues.values():
            for batch in queue:
                batch.fail(closed)
        self._queues.clear()
        await self._client.close()

    @property
    def idempotent(self) -> bool:
        return self._idempotent

    @property
    def transaction_manager(self) -> TransactionManager | None:
        return self._txn

    @property
    def transactional_id(self) -> str | None:
        return self._txn.transactional_id if self._txn is not None else None

    # -- transactions ------------------------------------------------------------------

    def _transactions(self) -> TransactionManager:
        if self._txn is None:
            raise TransactionStateError("transactions need a transactional.id")
        if self._closing:
            raise KafkaError("the producer is closed")
        return self._txn

    def _deadline(self, timeout: float | None) -> float:
        seconds = self.config["max.block.ms"] / 1000 if timeout is None else timeout
        return time.monotonic() + seconds

    async def init_transactions(self, timeout: float | None = None) -> None:
        """Register the transactional.id with its coordinator (once, before the first
        transaction): older producers with the same id are fenced, and a transaction they
        left open is aborted. ``timeout`` defaults to max.block.ms (KafkaTimeoutError; the
        call may be repeated)."""
        txn = self._transactions()
        await self.start()
        await txn.init(self._deadline(timeout))
        self._use_producer_id(txn)

    def begin_transaction(self) -> None:
        """Start a transaction: the records sent from now on are committed or aborted
        together (no I/O: the coordinator learns of it with the first partition or offsets)."""
        self._transactions().begin()

    async def send_offsets_to_transaction(
        self,
        offsets: Mapping[TopicPartition, int],
        group_metadata: ConsumerGroupMetadata,
        timeout: float | None = None,
    ) -> None:
        """Commit a consumer group's offsets (the next offsets to read) as part of the
        transaction: they count only if it commits. ``group_metadata`` is the consuming
        consumer's ``group_metadata()``, so that a member fenced meanwhile cannot commit."""
        txn = self._transactions()
        await txn.send_offsets(dict(offsets), group_metadata, self._deadline(timeout))

    async def commit_transaction(self, timeout: float | None = None) -> None:
        """Deliver every record of the transaction, then commit it. When a record could not
        be delivered this raises (TransactionAbortableError) and only abort_transaction()
        works; ProducerFencedError means the producer must be closed."""
        txn = self._transactions()
        deadline = self._deadline(timeout)
        txn.begin_commit()
        await self.flush(max(0.0, deadline - time.monotonic()))
        txn.check_committable()
        await txn.end(True, deadline)
        self._use_producer_id(txn)

    async def abort_transaction(self, timeout: float | None = None) -> None:
        """Abort the transaction: records not sent yet fail with TransactionAbortedError,
        the ones sent are never shown to read_committed consumers."""
        txn = self._transactions()
        deadline = self._deadline(timeout)
        txn.begin_abort()
        self._abort_undrained(txn)
        in_flight = self._in_flight_futures
        if in_flight:
            self._wake.set()
            _done, pending = await asyncio.wait(
                in_flight, timeout=max(0.0, deadline - time.monotonic())
            )
            if pending:
                raise KafkaTimeoutError(
                    f"abort timed out with {len(pending)} records still in flight"
                )
        await txn.end(False, deadline)
        self._use_producer_id(txn)

    def _use_producer_id(self, txn: TransactionManager) -> None:
        if (txn.producer_id, txn.producer_epoch) != (self._producer_id, self._producer_epoch):
            self._producer_id, self._producer_epoch = txn.producer_id, txn.producer_epoch
            self._next_sequence.clear()
            self._acked.clear()

    def _abort_undrained(self, txn: TransactionManager) -> None:
        """Fail the queued batches: the transaction is aborting or has failed."""
        err: KafkaError = TransactionAbortedError(
            "the transaction was aborted before the record was sent"
        )
        if txn.last_error is not None:
            err = TransactionAbortedError(f"the transaction failed: {txn.last_error}")
        if not any(self._queues.values()):
            return
        for queue in self._queues.values():
            while queue:
                batch = queue.popleft()
                if batch.base_sequence >= 0:
                    txn.epoch_bump_required = True
                batch.fail(err)
                self._buffered -= batch.size - BATCH_OVERHEAD
        self._space_changed()

    def _space_changed(self) -> None:
        async def notify() -> None:
            async with self._space:
                self._space.notify_all()

        task = asyncio.ensure_future(notify())
        self._request_tasks.add(task)
        task.add_done_callback(self._request_tasks.discard)

    async def _init_producer_id(self) -> None:
        deadline = time.monotonic() + self.config["max.block.ms"] / 1000
        while True:
            response = await self._client.send(
                None, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1)
            )
            err = error_for(response.error_code) if response.error_code else None
            if err is None:
                self._producer_id = response.producer_id
                self._producer_epoch = response.producer_epoch
                return
            if not err.retriable or time.monotonic() > deadline:
                raise err
            await asyncio.sleep(self.config["retry.backoff.ms"] / 1000)

    # -- sending -----------------------------------------------------------------------

    async def partitions_for(self, topic: str) -> list[int]:
        info = await self._client.topic_info(topic, timeout_s=self.config["max.block.ms"] / 1000)
        return sorted(info.partitions)

    async def send(
        self,
        topic: str,
        value: bytes | str | None = None,
        key: bytes | str | None = None,
        *,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: HeaderInput = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the returned future resolves to its RecordMetadata.

        Waits (up to max.block.ms) only for the topic's metadata and for buffer space.
        ``on_delivery(err, metadata)`` is called on the event loop once the outcome is known.
        """
        if not self._started:
            await self.start()
        if self._closing:
            raise KafkaError("the producer is closed")
        if self._txn is not None:
            self._txn.check_send()
        key_b = to_bytes(key, "key")
        value_b = to_bytes(value, "value")
        hdrs = normalise_headers(headers)
        ts = now_ms() if timestamp is None else int(timestamp)
        size = _record_size(key_b, value_b, hdrs)
        if size + BATCH_OVERHEAD + REQUEST_OVERHEAD > self.config["max.request.size"]:
            raise MessageSizeTooLargeError(
                f"the record is {size} bytes, more than max.request.size "
                f"({self.config['max.request.size']})"
            )
        max_block = self.config["max.block.ms"] / 1000
        count, available = await self._partitions(topic, max_block)
        if partition is not None:
            if not 0 <= partition < count:
                raise UnknownTopicOrPartitionError(
                    f"partition {partition} of topic {topic!r} does not exist ({count} partitions)"
                )
            chosen = partition
        elif key_b is not None and not self.config["partitioner.ignore.keys"]:
            chosen = partition_for_key(key_b, count)
        else:
            chosen = self._sticky.partition(topic, available, count)
        await self._wait_for_space(size, max_block)
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if on_delivery is not None:
            future.add_done_callback(_callback_adapter(on_delivery, topic, chosen, ts))
        tp = TopicPartition(topic, chosen)
        if self._txn is not None:
            self._txn.check_send()  # the state may have changed while we waited
            self._txn.maybe_add_partition(tp)
        self._append(tp, _Pending(key_b, value_b, hdrs, ts, future), size)
        if partition is None and (key_b is None or self.config["partitioner.ignore.keys"]):
            self._sticky.record_appended(topic, chosen, size, available, count)
        return future

    async def _partitions(self, topic: str, max_block: float) -> tuple[int, list[int]]:
        """(partition count, partitions with a leader), cached per metadata snapshot."""
        info = self._client.metadata.topics.get(topic)
        cached = self._topic_cache.get(topic)
        if info is None or cached is None or cached[0] is not info:
            info = await self._client.topic_info(topic, timeout_s=max_block)
            available = [p.partition for p in info.partitions.values() if p.leader >= 0]
            cached = (info, len(info.partitions), available)
            self._topic_cache[topic] = cached
        return cached[1], cached[2]

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | str | None = None,
        key: bytes | str | None = None,
        **kwargs: Any,
    ) -> RecordMetadata:
        future = await self.send(topic, value, key, **kwargs)
        self._wake.set()
        return await future

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait for every outcome (KafkaTimeoutError if not)."""
        futures = [r.future for q in self._queues.values() for b in q for r in b.records]
        futures += self._in_flight_futures
        if not futures:
            return
        self._flushing += 1
        self._wake.set()
        try:
            _done, pending = await asyncio.wait(futures, timeout=timeout)
        finally:
            self._flushing -= 1
        if pending:
            raise KafkaTimeoutError(f"flush timed out with {len(pending)} records undelivered")

    @property
    def buffered_records(self) -> int:
        return sum(len(b.records) for q in self._queues.values() for b in q) + len(
            self._in_flight_futures
        )

    # -- accumulator -------------------------------------------------------------------

    @property
    def _in_flight_futures(self) -> list[asyncio.Future[RecordMetadata]]:
        return [r.future for b in self._sending for r in b.records]

    def _append(self, tp: TopicPartition, rec: _Pending, size: int) -> None:
        queue = self._queues.setdefault(tp, deque())
        batch = queue[-1] if queue else None
        if (
            batch is None
            or batch.closed
            or batch.payload is not None
            or (batch.records and batch.size + size > self._batch_size)
        ):
            if batch is not None:
                batch.closed = True
            batch = _Batch(tp, time.monotonic())
            queue.append(batch)
            self._wake.set()  # the sender sleeps until the earliest linger deadline it knows
        batch.records.append(rec)
        batch.size += size
        self._buffered += size
        if batch.size >= self._batch_size:
            batch.closed = True
            self._wake.set()
        elif self._linger_s == 0:
            self._wake.set()

    async def _wait_for_space(self, size: int, max_block: float) -> None:
        limit = self.config["buffer.memory"]
        if self._buffered + size <= limit or self._buffered == 0:
            return
        async with self._space:
            try:
                await asyncio.wait_for(
                    self._space.wait_for(
                        lambda: self._buffered + size <= limit or not self._buffered
                    ),
                    max_block,
                )
            except TimeoutError:
                raise KafkaTimeoutError(
                    f"no buffer space for the record within max.block.ms ({max_block * 1000:.0f})"
                ) from None

    async def _release(self, size: int) -> None:
        self._buffered -= size
        async with self._space:
            self._space.notify_all()

    # -- the sender task ---------------------------------------------------------------

    async def _run_sender(self) -> None:
        while not self._closing:
            try:
                wait = await self._send_ready()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("producer sender step failed")
                wait = 0.1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _send_ready(self) -> float:
        """Drain ready batches into requests; return how long the sender may sleep."""
        now = time.monotonic()
        self._expire(now)
        txn = self._txn
        added: set[TopicPartition] | None = None
        if txn is not None:
            if txn.aborting_or_failed:
                self._abort_undrained(txn)
            txn.poll_partitions()
            added = txn.partitions
        if self._reset_pid:
            if any(self._in_flight.values()):
                return 0.05
            await self._new_producer_id()
        wait = 1.0
        by_node: dict[int, list[_Batch]] = {}
        max_in_flight = self.config["max.in.flight.requests.per.connection"]
        for tp, queue in self._queues.items():
            if not queue:
                continue
            head = queue[0]
            ready_at = head.created + self._linger_s
            full = head.closed or len(queue) > 1
            if head.attempts:
                ready_at = head.retry_at
                full = False
            if not (full or self._flushing or self._closing) and ready_at > now:
                wait = min(wait, ready_at - now)
                continue
            if head.attempts and head.retry_at > now:
                wait = min(wait, head.retry_at - now)
                continue
            if added is not None and tp not in added:
                continue  # AddPartitionsToTxn under way; its completion wakes the sender
            leader = self._client.metadata.leader(tp)
            if leader is None:
                self._client.request_refresh()
                wait = min(wait, 0.05)
                continue
            in_flight = self._in_flight.get(tp, 0)
            if self._idempotent and (in_flight >= 5 or (head.attempts and in_flight)):
                continue
            if self._idempotent and in_flight and tp not in self._acked:
                # Kafka takes any first sequence from a producer new to the partition: a
                # second batch sent before the first is stored could overtake it.
                continue
            if not self._idempotent and max_in_flight == 1 and in_flight:
                continue
            by_node.setdefault(leader, []).append(head)
        for node, batches in by_node.items():
            if self._node_in_flight.get(node, 0) >= max_in_flight:
                wait = min(wait, 0.01)
                continue
            drained = self._drain(batches)
            self._node_in_flight[node] = self._node_in_flight.get(node, 0) + 1
            task = asyncio.ensure_future(self._produce(node, drained))
            self._request_tasks.add(task)
            task.add_done_callback(self._request_tasks.discard)
        if any(self._queues.values()) and by_node:
            wait = 0.0 if self._flushing else min(wait, 0.005)
        return max(wait, 0.0)

    def _drain(self, batches: list[_Batch]) -> list[_Batch]:
        limit = self.config["max.request.size"]
        total = REQUEST_OVERHEAD
        out: list[_Batch] = []
        for batch in batches:
            if out and total + batch.size > limit:
                break
            self._queues[batch.tp].popleft()
            batch.closed = True
            if batch.payload is None:
                self._seal(batch)
            assert batch.payload is not None
            total += len(batch.payload)
            self._in_flight[batch.tp] = self._in_flight.get(batch.tp, 0) + 1
            batch.attempts += 1
            self._sending.add(batch)
            out.append(batch)
        return out

    def _seal(self, batch: _Batch) -> None:
        if self._idempotent:
            seq = self._next_sequence.get(batch.tp, 0)
            batch.base_sequence = seq
            batch.producer_id = self._producer_id
            batch.producer_epoch = self._producer_epoch
            self._next_sequence[batch.tp] = (seq + len(batch.records)) & INT32_MAX
        batch.payload = build_batch(
            [(r.key, r.value, r.headers, r.timestamp) for r in batch.records],
            compression=self._compression,
            compression_level=self._level,
            producer_id=batch.producer_id,
            producer_epoch=batch.producer_epoch,
            base_sequence=batch.base_sequence,
            is_transactional=self._txn is not None,
        )

    async def _produce(self, node: int, batches: list[_Batch]) -> None:
        topics: dict[str, list[ProduceRequest.PartitionProduceData]] = {}
        for b in batches:
            topics.setdefault(b.tp.topic, []).append(
                ProduceRequest.PartitionProduceData(index=b.tp.partition, records=b.payload)
            )
        request = ProduceRequest(
            transactional_id=self._txn.transactional_id if self._txn is not None else None,
            acks=self._acks,
            timeout_ms=self.config["request.timeout.ms"],
            topic_data=[
                ProduceRequest.TopicProduceData(name=t, partition_data=p) for t, p in topics.items()
            ],
        )
        try:
            try:
                if self._acks == 0:
                    conn = await self._client.connection(node)
                    await conn.send_no_response(request)
                    for b in batches:
                        await self._complete(b, -1, -1)
                    return
                response: ProduceResponse = await self._client.send(node, request)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._client.request_refresh()
                for b in batches:
                    await self._handle_error(b, exc)
                return
            results = {
                (t.name, p.index): p
                for t in response.responses or []
                for p in t.partition_responses or []
            }
            for b in batches:
                part = results.get((b.tp.topic, b.tp.partition))
                if part is None:
                    await self._handle_error(b, KafkaError("no answer for the partition"))
                    continue
                code = part.error_code
                if code in (ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER):
                    await self._complete(b, part.base_offset, part.log_append_time_ms)
                else:
                    await self._handle_error(b, error_for(code, part.error_message or None))
        finally:
            self._node_in_flight[node] -= 1
            self._wake.set()

    async def _complete(self, batch: _Batch, base_offset: int, log_append_time: int) -> None:
        log.debug("%s sequence %d stored at %d", batch.tp, batch.base_sequence, base_offset)
        if batch.producer_id == self._producer_id:
            self._acked.add(batch.tp)
        self._in_flight[batch.tp] -= 1
        self._sending.discard(batch)
        for i, rec in enumerate(batch.records):
            if rec.future.done():
                continue
            rec.future.set_result(
                RecordMetadata(
                    batch.tp.topic,
                    batch.tp.partition,
                    base_offset + i if base_offset >= 0 else -1,
                    log_append_time if log_append_time >= 0 else rec.timestamp,
                    len(rec.key) if rec.key is not None else -1,
                    len(rec.value) if rec.value is not None else -1,
                )
            )
        await self._release(batch.size - BATCH_OVERHEAD)

    async def _handle_error(self, batch: _Batch, exc: KafkaError) -> None:
        self._in_flight[batch.tp] -= 1
        self._sending.discard(batch)
        expired = time.monotonic() > batch.created + self.config["delivery.timeout.ms"] / 1000
        retry = exc.retriable and batch.attempts <= self.config["retries"] and not expired
        txn = self._txn
        if txn is not None and txn.aborting_or_failed:
            retry = False
        elif self._idempotent and exc.code in SEQUENCE_ERRORS and txn is None:
            # Retried either way, as Kafka's idempotent producer does: behind an earlier batch
            # that is being retried, or, when the broker's sequence really has a gap (it took
            # a later batch while an earlier one failed), under a new producer id.
            retry = not expired and batch.attempts <= self.config["retries"]
            if retry and not self._has_earlier(batch):
                self._reset_pid = True
        if exc.invalid_metadata:
            self._client.request_refresh()
        if retry:
            log.debug(
                "retrying %s (sequence %d, attempt %d) after %s",
                batch.tp,
                batch.base_sequence,
                batch.attempts,
                exc,
            )
            backoff = self.config["retry.backoff.ms"] / 1000
            batch.retry_at = time.monotonic() + backoff * min(2 ** (batch.attempts - 1), 10)
            self._requeue(batch)
            return
        if txn is not None:
            # A transactional producer keeps its id: the transaction must be aborted (with
            # an epoch bump when the partition's sequence now has a gap).
            txn.batch_failed(exc, batch.base_sequence >= 0)
        elif self._idempotent and batch.base_sequence >= 0:
            # The partition's sequence now has a gap: start over with a new producer id.
            self._reset_pid = True
        log.debug("%s (sequence %d) failed: %s", batch.tp, batch.base_sequence, exc)
        batch.fail(exc)
        await self._release(batch.size - BATCH_OVERHEAD)

    def _has_earlier(self, batch: _Batch) -> bool:
        queue = self._queues.get(batch.tp, deque())
        return (
            any(0 <= b.base_sequence < batch.base_sequence for b in queue)
            or self._in_flight.get(batch.tp, 0) > 0
        )

    def _requeue(self, batch: _Batch) -> None:
        queue = self._queues.setdefault(batch.tp, deque())
        index = 0
        for i, other in enumerate(queue):
            if other.base_sequence < 0 or other.base_sequence > batch.base_sequence:
                index = i
                break
        else:
            index = len(queue)
        queue.insert(index, batch)

    async def _new_producer_id(self) -> None:
        self._reset_pid = False
        await self._init_producer_id()
        self._next_sequence.clear()
        self._acked.clear()
        for queue in self._queues.values():
            for batch in queue:
                batch.payload = None
                batch.base_sequence = -1
                batch.producer_id = batch.producer_epoch = -1

    def _expire(self, now: float) -> None:
        timeout = self.config["delivery.timeout.ms"] / 1000
        for tp, queue in self._queues.items():
            while queue and queue[0].created + timeout < now and self._in_flight.get(tp, 0) == 0:
                batch = queue.popleft()
                exc = KafkaTimeoutError(
                    f"{len(batch.records)} record(s) for {tp} expired after "
                    f"delivery.timeout.ms ({timeout * 1000:.0f})"
                )
                batch.fail(exc)
                self._buffered -= batch.size - BATCH_OVERHEAD
                if self._txn is not None:
                    self._txn.batch_failed(exc, batch.base_sequence >= 0)
                elif batch.base_sequence >= 0:
                    self._reset_pid = True


def _record_size(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> int:
    size = RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
    for k, v in headers:
        size += 10 + len(k.encode("utf-8")) + (len(v) if v else 0)
    return size


def _callback_adapter(
    callback: DeliveryCallback, topic: str, partition: int, timestamp: int
) -> Callable[[asyncio.Future[RecordMetadata]], None]:
    def done(future: asyncio.Future[RecordMetadata]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        try:
            if exc is None:
                callback(None, future.result())
            else:
                err = exc if isinstance(exc, KafkaError) else KafkaError(str(exc))
                callback(err, RecordMetadata(topic, partition, -1, timestamp))
        except Exception:
            log.exception("delivery callback raised")

    return done
