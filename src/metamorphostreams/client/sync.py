"""Synchronous facades: ``Producer``, ``Consumer`` and ``Admin`` for code without asyncio.

Each wraps its asyncio counterpart running on a private event loop in a daemon thread (one
per client, named after it); every method blocks the calling thread until the loop has done
the work. Delivery callbacks (``on_delivery``) run on that I/O thread, so they must be quick
and must not call the producer's blocking methods (``produce`` from a callback raises).
Rebalance callbacks run in the thread that called ``poll()``/``close()`` and may call the
consumer (e.g. ``commit()``). A client is meant for one thread at a time, like Kafka's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ._loop_thread import CallbackPump, LoopThread
from ._records import (
    ConsumerGroupMetadata,
    ConsumerRecord,
    HeaderInput,
    RecordMetadata,
    normalise_headers,
    to_bytes,
)
from .admin import (
    AsyncAdmin,
    ClusterDescription,
    ConfigEntry,
    GroupDescription,
    GroupListing,
    LogDirDescription,
    NewTopic,
    OffsetSpec,
    TopicDescription,
)
from .cluster import TopicPartition
from .consumer import AsyncConsumer, RebalanceCallback
from .errors import KafkaError
from .producer import AsyncProducer, DeliveryCallback

__all__ = ["Admin", "Consumer", "Producer"]


class _SyncClient:
    _thread: LoopThread

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return self._thread.run(coro, timeout)

    def _start(self, name: str, make: Any) -> Any:
        self._thread = LoopThread(name)
        try:

            async def build() -> Any:
                client = make()
                await client.start()
                return client

            return self._run(build())
        except BaseException:
            self._thread.stop()
            raise


class Producer(_SyncClient):
    """Blocking producer: ``produce()`` queues and returns a concurrent.futures.Future.

    With ``transactional.id``: ``init_transactions()`` once, then ``begin_transaction()``,
    ``produce()``..., ``send_offsets_to_transaction()``, ``commit_transaction()`` or
    ``abort_transaction()`` (see AsyncProducer); ``produce()`` raises outside a transaction.

    ``produce()`` does not wait for the I/O thread: records go through a hand-off queue that
    the I/O thread drains in order; it blocks only while ``MAX_HANDOFF`` records wait there.
    Errors found on the way (an unknown topic after ``max.block.ms``) fail the future.
    """

    MAX_HANDOFF = 10_000  # records waiting for the I/O thread before produce() blocks

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._producer: AsyncProducer = self._start(
            "mms-producer", lambda: AsyncProducer(config, **kwargs)
        )
        self._closed = False
        self._txn = self._producer.transaction_manager
        self._handoff: deque[tuple[Any, ...]] = deque()
        self._cond = threading.Condition()
        self._draining: asyncio.Task[None] | None = None
        self._scheduled = False

    def produce(
        self,
        topic: str,
        value: bytes | str | None = None,
        key: bytes | str | None = None,
        *,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: HeaderInput = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        if self._closed:
            raise KafkaError("the producer is closed")
        if self._txn is not None:
            # As Kafka's send(): outside a transaction, or once it failed, raise right away
            # (the state is only read here; the I/O thread checks again).
            self._txn.check_send()
        value_b = to_bytes(value, "value")
        key_b = to_bytes(key, "key")
        hdrs = normalise_headers(headers)
        out: concurrent.futures.Future[RecordMetadata] = concurrent.futures.Future()
        item = (topic, value_b, key_b, partition, timestamp, hdrs, on_delivery, out)
        with self._cond:
            while len(self._handoff) >= self.MAX_HANDOFF:
                self._cond.wait()
            self._handoff.append(item)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self._thread.call_soon(self._start_drain)
        return out

    def _start_drain(self) -> None:
        self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while True:
            with self._cond:
                if not self._handoff:
                    self._scheduled = False
                    return
                items = list(self._handoff)
                self._handoff.clear()
                self._cond.notify_all()
            for topic, value, key, partition, timestamp, hdrs, on_delivery, out in items:
                try:
                    future = await self._producer.send(
                        topic,
                        value,
                        key,
                        partition=partition,
                        timestamp=timestamp,
                        headers=hdrs,
                        on_delivery=on_delivery,
                    )
                except Exception as exc:
                    out.set_exception(exc)
                    continue
                future.add_done_callback(functools.partial(_copy_outcome, out))

    async def _drained(self) -> None:
        while self._scheduled or self._handoff:
            if self._draining is not None:
                await asyncio.shield(self._draining)
            else:
                await asyncio.sleep(0)

    def send(
        self,
        topic: str,
        value: bytes | str | None = None,
        key: bytes | str | None = None,
        **kwargs: Any,
    ) -> RecordMetadata:
        """Produce one record and wait for its outcome (slow: one round trip per record)."""
        return self.produce(topic, value, key, **kwargs).result()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything produced so far is delivered (KafkaTimeoutError if not)."""

        async def flush() -> None:
            await self._drained()
            await self._producer.flush(timeout)

        self._run(flush())

    def partitions_for(self, topic: str) -> list[int]:
        result: list[int] = self._run(self._producer.partitions_for(topic))
        return result

    # Transactions (see AsyncProducer). Each first hands the records produced so far to the
    # I/O thread, so they belong to the transaction they were produced in.

    def init_transactions(self, timeout: float | None = None) -> None:
        self._run(self._producer.init_transactions(timeout))

    def begin_transaction(self) -> None:
        async def begin() -> None:
            await self._drained()
            self._producer.begin_transaction()

        self._run(begin())

    def send_offsets_to_transaction(
        self,
        offsets: Mapping[TopicPartition, int],
        group_metadata: ConsumerGroupMetadata,
        timeout: float | None = None,
    ) -> None:
        async def send_offsets() -> None:
            await self._drained()
            await self._producer.send_offsets_to_transaction(offsets, group_metadata, timeout)

        self._run(send_offsets())

    def commit_transaction(self, timeout: float | None = None) -> None:
        async def commit() -> None:
            await self._drained()
            await self._producer.commit_transaction(timeout)

        self._run(commit())

    def abort_transaction(self, timeout: float | None = None) -> None:
        async def abort() -> None:
            await self._drained()
            await self._producer.abort_transaction(timeout)

        self._run(abort())

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True

        async def close() -> None:
            await self._drained()
            await self._producer.close(timeout)

        try:
            self._run(close())
        finally:
            self._thread.stop()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_outcome(out: concurrent.futures.Future[Any], future: asyncio.Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        out.set_exception(exc)
    else:
        out.set_result(future.result())


class Consumer(_SyncClient):
    """Blocking consumer: ``poll(timeout)`` returns a list of ConsumerRecord."""

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._consumer: AsyncConsumer = self._start(
            "mms-consumer", lambda: AsyncConsumer(config, **kwargs)
        )
        self._pump = CallbackPump(self._thread)
        self._consumer.callback_runner = self._pump.call_in_caller
        self._closed = False

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        self._thread.call_soon(self._consumer.assign, list(partitions))
        self._barrier()

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        async def run() -> None:
            self._consumer.subscribe(
                list(topics), on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost
            )

        self._run(run())

    def unsubscribe(self) -> None:
        self._thread.call_soon(self._consumer.unsubscribe)
        self._barrier()

    def _barrier(self) -> None:
        async def nothing() -> None:
            return None

        self._run(nothing())

    def poll(self, timeout: float = 1.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records as soon as there are some, else [] after ``timeout`` seconds."""
        result: list[ConsumerRecord] = self._pump.run(
            self._consumer.poll(int(timeout * 1000), max_records)
        )
        return result

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        self._thread.call_soon(self._consumer.seek, tp, offset)
        self._barrier()

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call_soon(self._consumer.seek_to_beginning, *partitions)
        self._barrier()

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call_soon(self._consumer.seek_to_end, *partitions)
        self._barrier()

    def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        result: int = self._run(self._consumer.position(tp))
        return result

    def pause(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call_soon(self._consumer.pause, *partitions)
        self._barrier()

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call_soon(self._consumer.resume, *partitions)
        self._barrier()

    def paused(self) -> set[TopicPartition]:
        return self._consumer.paused()

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit and wait (the positions of every assigned partition by default)."""
        self._run(self._consumer.commit(offsets))

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int] | None = None,
        callback: Any = None,
    ) -> concurrent.futures.Future[None]:
        async def start() -> Any:
            return self._consumer.commit_async(offsets, callback)

        task = self._run(start())
        out: concurrent.futures.Future[None] = concurrent.futures.Future()

        def done(t: Any) -> None:
            exc = t.exception()
            if exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(None)

        self._thread.call_soon(task.add_done_callback, done)
        return out

    def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int | None]:
        result: dict[TopicPartition, int | None] = self._run(
            self._consumer.committed(list(partitions))
        )
        return result

    def beginning_offsets(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(
            self._consumer.beginning_offsets(list(partitions))
        )
        return result

    def end_offsets(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(self._consumer.end_offsets(list(partitions)))
        return result

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        result: dict[TopicPartition, tuple[int, int] | None] = self._run(
            self._consumer.offsets_for_times(timestamps)
        )
        return result

    def partitions_for(self, topic: str) -> list[int]:
        result: list[int] = self._run(self._consumer.partitions_for(topic))
        return result

    @property
    def member_id(self) -> str | None:
        return self._consumer.member_id

    def group_metadata(self) -> ConsumerGroupMetadata:
        """For a transactional producer's send_offsets_to_transaction()."""
        return self._consumer.group_metadata()

    def close(self, *, autocommit: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._pump.run(self._consumer.close(autocommit=autocommit))
        finally:
            self._thread.stop()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Admin(_SyncClient):
    """Blocking admin client; the same methods as AsyncAdmin."""

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._admin: AsyncAdmin = self._start("mms-admin", lambda: AsyncAdmin(config, **kwargs))

    def create_topics(self, topics: Iterable[NewTopic], *, validate_only: bool = False) -> None:
        self._run(self._admin.create_topics(list(topics), validate_only=validate_only))

    def delete_topics(self, names: Iterable[str]) -> None:
        self._run(self._admin.delete_topics(list(names)))

    def list_topics(self, *, include_internal: bool = False) -> dict[str, TopicDescription]:
        result: dict[str, TopicDescription] = self._run(
            self._admin.list_topics(include_internal=include_internal)
        )
        return result

    def describe_topics(self, names: Iterable[str]) -> dict[str, TopicDescription]:
        result: dict[str, TopicDescription] = self._run(self._admin.describe_topics(list(names)))
        return result

    def create_partitions(self, new_totals: Mapping[str, int]) -> None:
        self._run(self._admin.create_partitions(new_totals))

    def delete_records(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(self._admin.delete_records(offsets))
        return result

    def describe_configs(
        self, resource_type: str, name: str, keys: Iterable[str] | None = None
    ) -> dict[str, ConfigEntry]:
        result: dict[str, ConfigEntry] = self._run(
            self._admin.describe_configs(resource_type, name, keys)
        )
        return result

    def alter_configs(
        self,
        resource_type: str,
        name: str,
        changes: Mapping[str, str | None],
        *,
        operation: str = "set",
    ) -> None:
        self._run(self._admin.alter_configs(resource_type, name, changes, operation=operation))

    def describe_cluster(self) -> ClusterDescription:
        result: ClusterDescription = self._run(self._admin.describe_cluster())
        return result

    def describe_log_dirs(
        self,
        brokers: Iterable[int] | None = None,
        partitions: Iterable[TopicPartition] | None = None,
    ) -> dict[int, dict[str, LogDirDescription]]:
        result: dict[int, dict[str, LogDirDescription]] = self._run(
            self._admin.describe_log_dirs(
                None if brokers is None else list(brokers),
                None if partitions is None else list(partitions),
            )
        )
        return result

    def list_offsets(
        self, specs: Mapping[TopicPartition, OffsetSpec], *, read_committed: bool = False
    ) -> dict[TopicPartition, tuple[int, int]]:
        result: dict[TopicPartition, tuple[int, int]] = self._run(
            self._admin.list_offsets(specs, read_committed=read_committed)
        )
        return result

    def list_groups(self) -> list[GroupListing]:
        result: list[GroupListing] = self._run(self._admin.list_groups())
        return result

    def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        result: dict[str, GroupDescription] = self._run(
            self._admin.describe_groups(list(group_ids))
        )
        return result

    def delete_groups(self, group_ids: Iterable[str]) -> None:
        self._run(self._admin.delete_groups(list(group_ids)))

    def list_group_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = self._run(
            self._admin.list_group_offsets(group_id, partitions)
        )
        return result

    def alter_group_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._run(self._admin.alter_group_offsets(group_id, offsets))

    def group_lag(self, group_id: str) -> dict[TopicPartition, tuple[int, int, int]]:
        result: dict[TopicPartition, tuple[int, int, int]] = self._run(
            self._admin.group_lag(group_id)
        )
        return result

    def supports(self, api_key: int) -> bool:
        result: bool = self._run(self._admin.supports(api_key))
        return result

    def close(self) -> None:
        try:
            self._run(self._admin.close())
        except KafkaError:
            pass
        finally:
            self._thread.stop()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
