"""The asyncio consumer: assignment or group subscription, pipelined fetching, commits.

Positions live per assigned partition. A fetcher task keeps, per leader, one Fetch in flight
for the partitions that are assigned, not paused, have a position and no buffered records;
their records wait in per-partition buffers that ``poll()`` drains (at most
``max.poll.records``), so the next fetch is under way while the application works. A
position comes from ``seek()``, else the group's committed offset, else
``auto.offset.reset`` through ListOffsets. With ``group.id`` and ``subscribe()``, membership
changes (and rebalance callbacks) happen inside ``poll()``, as in Kafka's Java consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol._generated.fetch import FetchRequest, FetchResponse
from ..protocol.errors import DecodeError, ErrorCode
from ..protocol.records import ControlRecordType, iter_batches, parse_control_key
from ._group import ClassicMember, GroupCoordinatorClient
from ._kip848 import ConsumerProtocolMember
from ._offsets import EARLIEST, LATEST, list_offsets
from ._records import ConsumerGroupMetadata, ConsumerRecord
from .cluster import KafkaClient, TopicPartition
from .config import ClientConfig
from .errors import (
    ConfigError,
    KafkaError,
    NoOffsetForPartitionError,
    error_for,
)

__all__ = ["AsyncConsumer", "RebalanceCallback"]

log = logging.getLogger("metamorphostreams.client")

RebalanceCallback = Callable[[set[TopicPartition]], Awaitable[None] | None]
FETCH_LANE = "fetch"
READ_COMMITTED = 1


@dataclass(slots=True, eq=False)
class _PartitionState:
    position: int | None = None
    reset: str | None = None  # "earliest" / "latest": look the position up with ListOffsets
    use_committed: bool = False  # take the group's committed offset first
    paused: bool = False
    records: deque[ConsumerRecord] = field(default_factory=deque)
    next_fetch: int | None = None  # where the buffered data ends
    epoch: int = 0  # bumped by seek(): answers to older fetches are dropped
    fetching: bool = False
    resolving: bool = False
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    error: KafkaError | None = None


def _is_abort_marker(records: list[Any]) -> bool:
    if not records:
        return False
    try:
        return parse_control_key(records[0].key) is ControlRecordType.ABORT
    except DecodeError:
        return False


def _as_tp(item: TopicPartition | tuple[str, int]) -> TopicPartition:
    return item if isinstance(item, TopicPartition) else TopicPartition(item[0], item[1])


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


class AsyncConsumer:
    """An asyncio Kafka consumer. Create and use it inside one event loop; not task-safe
    beyond one task polling (other tasks may commit, seek, pause)."""

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.config = ClientConfig.for_role("consumer", config, **kwargs)
        cfg = self.config
        self._client = KafkaClient(cfg, allow_auto_topic_creation=cfg["allow.auto.create.topics"])
        self._isolation = READ_COMMITTED if cfg["isolation.level"] == "read_committed" else 0
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._subscription: set[str] = set()
        self._group: ClassicMember | ConsumerProtocolMember | None = None
        self._offsets: GroupCoordinatorClient | None = None
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._on_lost: RebalanceCallback | None = None
        self._data = asyncio.Event()
        self._fetch_wake = asyncio.Event()
        self._fetcher: asyncio.Task[None] | None = None
        self._nodes_fetching: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_auto_commit = 0.0
        self._last_poll = time.monotonic()
        self._polling = False
        self._started = False
        self._closed = False
        self.callback_runner: Callable[[Callable[..., Any], Any], Awaitable[Any]] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self._client.bootstrap()
        if self.config["group.id"] and self._offsets is None:
            self._offsets = GroupCoordinatorClient(self._client, self.config)
        self._started = True
        self._fetcher = asyncio.ensure_future(self._fetch_loop())
        self._next_auto_commit = time.monotonic() + self.config["auto.commit.interval.ms"] / 1000

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, autocommit: bool = True) -> None:
        """Commit (with enable.auto.commit), revoke, leave the group, disconnect."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        try:
            if autocommit and self.config["enable.auto.commit"] and self._offsets is not None:
                with contextlib.suppress(KafkaError):
                    await self._commit_positions()
            if self._group is not None:
                owned = set(self._states)
                if owned:
                    with contextlib.suppress(Exception):
                        await self._call(self._on_revoke, owned)
                await self._group.leave()
        finally:
            if self._fetcher is not None:
                self._fetcher.cancel()
            for task in list(self._tasks):
                task.cancel()
            await self._client.close()

    # -- assignment and subscription ---------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (no group membership; commits still go to group.id)."""
        if self._group is not None:
            raise KafkaError("assign() after subscribe(): call unsubscribe() first")
        wanted = {_as_tp(p) for p in partitions}
        for tp in list(self._states):
            if tp not in wanted:
                del self._states[tp]
        for tp in wanted:
            if tp not in self._states:
                self._states[tp] = _PartitionState(use_committed=self._offsets is not None)
        self._client.want_topics({tp.topic for tp in wanted})
        self._fetch_wake.set()

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        """Join group.id and read the partitions the group assigns (from the next poll()).

        Callbacks get the set of partitions and may be coroutine functions. ``on_lost``
        defaults to ``on_revoke`` (called when partitions were taken away without a chance
        to commit: the member was fenced).
        """
        if not self.config["group.id"]:
            raise ConfigError("subscribe() needs a group.id")
        names = set(topics) if not isinstance(topics, str) else {topics}
        if not names:
            self.unsubscribe()
            return
        if self._states and self._group is None:
            raise KafkaError("subscribe() after assign(): call unsubscribe() first")
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._on_lost = on_lost or on_revoke
        self._subscription = names
        self._client.want_topics(names)
        if self._group is None:
            member_cls = (
                ConsumerProtocolMember
                if self.config["group.protocol"] == "consumer"
                else ClassicMember
            )
            self._group = member_cls(self._client, self.config, self, names)
            self._offsets = self._group
        else:
            self._group.set_topics(names)

    def unsubscribe(self) -> None:
        """Forget the assignment; a group member leaves at the next poll() or close()."""
        self._states.clear()
        self._subscription = set()
        group, self._group = self._group, None
        if group is not None:
            self._spawn(group.leave())
            self._offsets = GroupCoordinatorClient(self._client, self.config)

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def subscription(self) -> set[str]:
        return set(self._subscription)

    @property
    def member_id(self) -> str | None:
        return self._group.member_id if self._group is not None else None

    @property
    def generation(self) -> int:
        return self._group.generation if self._group is not None else -1

    def group_metadata(self) -> ConsumerGroupMetadata:
        """The membership a transactional producer sends with this consumer's offsets
        (``send_offsets_to_transaction``): group id, generation (or KIP-848 member epoch),
        member id, group instance id."""
        group_id = self.config["group.id"]
        if not group_id:
            raise ConfigError("group_metadata() needs a group.id")
        return ConsumerGroupMetadata(
            group_id,
            self.generation,
            self.member_id or "",
            self.config["group.instance.id"],
        )

    # GroupOwner, called by the group member from inside poll()

    def group_assigned(self) -> set[TopicPartition]:
        return set(self._states)

    async def group_revoke(self, partitions: set[TopicPartition], lost: bool) -> None:
        if not lost and self.config["enable.auto.commit"]:
            with contextlib.suppress(KafkaError):
                await self._commit_positions(partitions)
        try:
            await self._call(self._on_lost if lost else self._on_revoke, partitions)
        finally:
            for tp in partitions:
                self._states.pop(tp, None)

    async def group_add(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._states.setdefault(tp, _PartitionState(use_committed=True))
        await self._call(self._on_assign, partitions)
        self._fetch_wake.set()

    def group_wake(self) -> None:
        self._data.set()

    def group_poll_age(self) -> float:
        """Seconds since the application last called poll() (0 while a poll runs)."""
        if self._polling:
            return 0.0
        return time.monotonic() - self._last_poll

    async def _call(
        self, callback: RebalanceCallback | None, partitions: set[TopicPartition]
    ) -> None:
        if callback is None:
            return
        if self.callback_runner is not None:
            await self.callback_runner(callback, set(partitions))
        else:
            await _maybe_await(callback(set(partitions)))

    # -- positions ---------------------------------------------------------------------

    def _state(self, tp: TopicPartition | tuple[str, int]) -> _PartitionState:
        state = self._states.get(_as_tp(tp))
        if state is None:
            raise KafkaError(f"partition {_as_tp(tp)} is not assigned to this consumer")
        return state

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` on (the next poll() returns records from there)."""
        state = self._state(tp)
        self._reset_state(state)
        state.position = offset

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in partitions or tuple(self._states):
            state = self._state(tp)
            self._reset_state(state)
            state.reset = "earliest"

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in partitions or tuple(self._states):
            state = self._state(tp)
            self._reset_state(state)
            state.reset = "latest"

    def _reset_state(self, state: _PartitionState) -> None:
        state.epoch += 1
        state.records.clear()
        state.next_fetch = None
        state.position = None
        state.reset = None
        state.use_committed = False
        state.error = None
        state.fetching = False
        self._fetch_wake.set()

    async def position(self, tp: TopicPartition | tuple[str, int], timeout: float = 60) -> int:
        """The offset of the next record poll() returns for ``tp`` (resolved if needed)."""
        state = self._state(tp)
        deadline = time.monotonic() + timeout
        while state.position is None:
            if state.error is not None:
                raise state.error
            await self._resolve_positions()
            if state.position is None:
                if time.monotonic() > deadline:
                    raise KafkaError(f"no position for {_as_tp(tp)} within {timeout}s")
                await asyncio.sleep(0.01)
        return state.position

    def pause(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        for tp in partitions:
            self._state(tp).paused = False
        self._fetch_wake.set()

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._states.items() if s.paused}

    def highwater(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The high watermark from the last fetch (-1 before one)."""
        return self._state(tp).high_watermark

    async def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int | None]:
        if self._offsets is None:
            raise ConfigError("committed offsets need a group.id")
        return await self._offsets.fetch_committed(
            {_as_tp(p) for p in partitions}, require_stable=self._isolation == READ_COMMITTED
        )

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        found = await list_offsets(self._client, dict.fromkeys(map(_as_tp, partitions), EARLIEST))
        return {tp: o for tp, (o, _ts) in found.items()}

    async def end_offsets(
        self, partitions: Iterable[TopicPartition | tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        found = await list_offsets(
            self._client,
            dict.fromkeys(map(_as_tp, partitions), LATEST),
            isolation_level=self._isolation,
        )
        return {tp: o for tp, (o, _ts) in found.items()}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        """{tp: (offset, timestamp)} of the first record at or after each timestamp, or None."""
        found = await list_offsets(self._client, dict(timestamps), isolation_level=self._isolation)
        return {tp: (o, ts) if o >= 0 else None for tp, (o, ts) in found.items()}

    async def partitions_for(self, topic: str) -> list[int]:
        info = await self._client.topic_info(
            topic, timeout_s=self.config["default.api.timeout.ms"] / 1000
        )
        return sorted(info.partitions)

    async def list_topics(self) -> dict[str, int]:
        await self._client.refresh_metadata(None)
        return {n: len(t.partitions) for n, t in self._client.metadata.topics.items()}

    # -- commits -----------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (the next offsets to read), or every position; waits for it."""
        if self._offsets is None:
            raise ConfigError("commit() needs a group.id")
        if offsets is None:
            await self._commit_positions()
        else:
            await self._offsets.commit({_as_tp(tp): o for tp, o in offsets.items()})

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int] | None = None,
        callback: Callable[[KafkaError | None, Mapping[TopicPartition, int]], None] | None = None,
    ) -> asyncio.Task[None]:
        """Commit in the background; ``callback(err, offsets)`` reports the outcome."""
        snapshot = dict(offsets) if offsets is not None else self._positions()

        async def run() -> None:
            err: KafkaError | None = None
            try:
                await self.commit(snapshot)
            except KafkaError as exc:
                err = exc
                if callback is None:
                    log.warning("async commit failed: %s", exc)
            if callback is not None:
                callback(err, snapshot)

        return self._spawn(run())

    def _positions(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        tps = self._states if partitions is None else partitions
        return {
            tp: s.position
            for tp in tps
            if (s := self._states.get(tp)) is not None and s.position is not None
        }

    async def _commit_positions(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        if self._offsets is not None:
            await self._offsets.commit(self._positions(partitions))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- polling -----------------------------------------------------------------------

    async def poll(
        self, timeout_ms: int = 1000, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records from the assigned partitions: as soon as some are there, or [] after
        ``timeout_ms``. Raises the error a partition ran into (e.g. NoOffsetForPartitionError)."""
        if not self._started:
            await self.start()
        if self._closed:
            raise KafkaError("the consumer is closed")
        limit = max_records or self.config["max.poll.records"]
        deadline = time.monotonic() + timeout_ms / 1000
        self._polling = True
        try:
            while True:
                if self._group is not None:
                    await self._group.ensure_active()
                if self._client.maybe_stale():
                    self._client.request_refresh()
                self._maybe_auto_commit()
                records = self._drain(limit)
                if records:
                    return records
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._data.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._data.wait(), remaining)
        finally:
            self._polling = False
            self._last_poll = time.monotonic()

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        while not self._closed:
            for record in await self.poll(1000):
                yield record

    def _drain(self, limit: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        for tp, state in list(self._states.items()):
            if state.error is not None:
                err, state.error = state.error, None
                if out:
                    state.error = err
                    return out
                raise err
            if state.paused:
                continue
            while state.records and len(out) < limit:
                record = state.records.popleft()
                out.append(record)
                state.position = record.offset + 1
            if not state.records and state.next_fetch is not None:
                if state.position is None or state.next_fetch > state.position:
                    state.position = state.next_fetch
                state.next_fetch = None
                self._fetch_wake.set()
            if len(out) >= limit:
                # Rotate, so the next poll starts with the partitions this one left waiting.
                self._states[tp] = self._states.pop(tp)
                break
        return out

    def _maybe_auto_commit(self) -> None:
        if not self.config["enable.auto.commit"] or self._offsets is None:
            return
        now = time.monotonic()
        if now < self._next_auto_commit:
            return
        self._next_auto_commit = now + self.config["auto.commit.interval.ms"] / 1000
        positions = self._positions()
        if positions:
            self.commit_async(positions)

    # -- the fetcher task --------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while True:
            try:
                await self._resolve_positions()
                self._send_fetches()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.debug("fetcher: %s", exc)
            except Exception:
                log.exception("consumer fetcher step failed")
            self._fetch_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fetch_wake.wait(), 0.1)

    async def _resolve_positions(self) -> None:
        committed_needed = [
            tp
            for tp, s in self._states.items()
            if s.position is None and s.use_committed and not s.resolving
        ]
        if committed_needed and self._offsets is not None:
            states = [self._states[tp] for tp in committed_needed]
            for s in states:
                s.resolving = True
            try:
                found = await self._offsets.fetch_committed(
                    committed_needed, require_stable=self._isolation == READ_COMMITTED
                )
            finally:
                for s in states:
                    s.resolving = False
            for tp, offset in found.items():
                state = self._states.get(tp)
                if state is None or not state.use_committed or state.position is not None:
                    continue
                state.use_committed = False
                if offset is not None:
                    state.position = offset
        policy = self.config["auto.offset.reset"]
        specs: dict[TopicPartition, int] = {}
        for tp, s in self._states.items():
            if s.position is not None or s.resolving or s.use_committed or s.error is not None:
                continue
            how = s.reset or policy
            if how == "none":
                s.error = NoOffsetForPartitionError(
                    f"no committed offset for {tp} and auto.offset.reset is none"
                )
                self._data.set()
                continue
            specs[tp] = EARLIEST if how == "earliest" else LATEST
        if not specs:
            return
        epochs = {tp: self._states[tp].epoch for tp in specs}
        for tp in specs:
            self._states[tp].resolving = True
        try:
            found_offsets = await list_offsets(
                self._client,
                specs,
                isolation_level=self._isolation,
                timeout_s=self.config["default.api.timeout.ms"] / 1000,
            )
        except KafkaError as exc:
            for tp in specs:
                state = self._states.get(tp)
                if state is not None and not exc.retriable:
                    state.error = exc
            self._data.set()
            return
        finally:
            for tp in specs:
                if (state := self._states.get(tp)) is not None:
                    state.resolving = False
        for tp, (offset, _ts) in found_offsets.items():
            state = self._states.get(tp)
            if state is not None and state.epoch == epochs[tp] and state.position is None:
                state.position = offset
                state.reset = None

    def _send_fetches(self) -> None:
        by_node: dict[int, list[TopicPartition]] = {}
        for tp, s in self._states.items():
            if s.paused or s.position is None or s.fetching or s.records or s.error:
                continue
            if s.next_fetch is not None:
                continue
            leader = self._client.metadata.leader(tp)
            if leader is None:
                self._client.request_refresh()
                continue
            if leader in self._nodes_fetching:
                continue
            by_node.setdefault(leader, []).append(tp)
        for node, tps in by_node.items():
            self._nodes_fetching.add(node)
            for tp in tps:
                self._states[tp].fetching = True
            self._spawn(self._fetch(node, tps))

    async def _fetch(self, node: int, tps: list[TopicPartition]) -> None:
        cfg = self.config
        sent: dict[TopicPartition, tuple[int, int]] = {}
        topics: dict[str, list[FetchRequest.FetchPartition]] = {}
        for tp in tps:
            st = self._states[tp]
            assert st.position is not None
            sent[tp] = (st.position, st.epoch)
            topics.setdefault(tp.topic, []).append(
                FetchRequest.FetchPartition(
                    partition=tp.partition,
                    fetch_offset=st.position,
                    partition_max_bytes=cfg["max.partition.fetch.bytes"],
                )
            )
        request = FetchRequest(
            replica_id=-1,
            max_wait_ms=cfg["fetch.max.wait.ms"],
            min_bytes=cfg["fetch.min.bytes"],
            max_bytes=cfg["fetch.max.bytes"],
            isolation_level=self._isolation,
            session_id=0,
            session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=t, partitions=p) for t, p in topics.items()],
            forgotten_topics_data=[],
            rack_id=cfg["client.rack"],
        )
        timeout = self._client.request_timeout_s + cfg["fetch.max.wait.ms"] / 1000
        try:
            response: FetchResponse = await self._client.send(
                node, request, lane=FETCH_LANE, timeout_s=timeout
            )
        except KafkaError as exc:
            log.debug("fetch from broker %d failed: %s", node, exc)
            self._client.request_refresh()
            await asyncio.sleep(self.config["retry.backoff.ms"] / 1000)
            return
        finally:
            self._nodes_fetching.discard(node)
            for tp in tps:
                if (done := self._states.get(tp)) is not None:
                    done.fetching = False
            self._fetch_wake.set()
        if response.error_code != ErrorCode.NONE:
            log.debug("fetch error %s", ErrorCode(response.error_code).name)
            return
        got_data = False
        for topic in response.responses or []:
            for part in topic.partitions or []:
                tp = TopicPartition(topic.topic, part.partition_index)
                state = self._states.get(tp)
                if state is None or tp not in sent:
                    continue
                offset, epoch = sent[tp]
                if state.epoch != epoch or state.position != offset:
                    continue  # seeked meanwhile
                got_data |= self._handle_partition(tp, state, offset, part)
        if got_data:
            self._data.set()

    def _handle_partition(
        self, tp: TopicPartition, state: _PartitionState, offset: int, part: Any
    ) -> bool:
        code = part.error_code
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            policy = self.config["auto.offset.reset"]
            if policy == "none":
                state.error = NoOffsetForPartitionError(
                    f"offset {offset} is out of range for {tp} and auto.offset.reset is none"
                )
                return True
            self._reset_state(state)
            state.reset = policy
            return False
        if code != ErrorCode.NONE:
            err = error_for(code, f"fetching {tp}")
            if err.invalid_metadata or err.retriable:
                self._client.request_refresh()
                return False
            state.error = err
            return True
        state.high_watermark = part.high_watermark
        state.last_stable_offset = part.last_stable_offset
        state.log_start_offset = part.log_start_offset
        records = part.records
        if not records:
            return False
        try:
            self._decode(tp, state, offset, records, part.aborted_transactions)
        except DecodeError as exc:
            state.error = KafkaError(f"corrupt records in {tp} at {offset}: {exc}", code=2)
        return True

    def _decode(
        self,
        tp: TopicPartition,
        state: _PartitionState,
        offset: int,
        data: Any,
        aborted: list[Any] | None,
    ) -> None:
        # Kafka's CompletedFetch: with read_committed, a producer whose aborted transaction
        # (from the response's list) starts at or before a batch's last offset is "aborted"
        # from that batch on, until its ABORT marker; its transactional batches meanwhile
        # are skipped. Control batches are never delivered; the position moves past both.
        committed = self._isolation == READ_COMMITTED
        pending_aborts = sorted(
            ((a.first_offset, a.producer_id) for a in aborted or []), reverse=True
        )
        aborted_pids: set[int] = set()
        next_offset = offset
        check = self.config["check.crcs"]
        for header, records in iter_batches(data, check_crc=check):
            next_offset = max(next_offset, header.next_offset)
            if committed and header.producer_id >= 0:
                while pending_aborts and pending_aborts[-1][0] <= header.last_offset:
                    aborted_pids.add(pending_aborts.pop()[1])
                if header.is_control and _is_abort_marker(records):
                    aborted_pids.discard(header.producer_id)
                elif header.is_transactional and header.producer_id in aborted_pids:
                    continue
            if header.is_control:
                continue
            ts_type = header.timestamp_type.value
            for r in records:
                if r.offset < offset:
                    continue
                state.records.append(
                    ConsumerRecord(
                        tp.topic,
                        tp.partition,
                        r.offset,
                        r.timestamp,
                        ts_type,
                        r.key,
                        r.value,
                        r.headers,
                        header.partition_leader_epoch,
                    )
                )
        if next_offset > offset:
            state.next_fetch = next_offset
