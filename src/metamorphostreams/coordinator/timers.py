"""Keyed one-shot timers on an injected clock (Kafka's CoordinatorTimer, without threads)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable

TimerTask = Callable[[], None]


class Timers:
    """Timers by key: scheduling a key again replaces its deadline and task.

    A heap of (deadline, sequence, key) with lazy deletion: a heap entry whose sequence no
    longer matches the key's current one is stale and skipped. ``pop_expired`` hands out due
    tasks one at a time, earliest first, so a task may schedule or cancel others. Not
    task-safe.
    """

    __slots__ = ("_heap", "_seq", "_tasks")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Hashable]] = []
        self._tasks: dict[Hashable, tuple[int, int, TimerTask]] = {}
        self._seq = 0

    def schedule(self, key: Hashable, deadline_ms: int, task: TimerTask) -> None:
        self._seq += 1
        self._tasks[key] = (deadline_ms, self._seq, task)
        heapq.heappush(self._heap, (deadline_ms, self._seq, key))

    def schedule_if_absent(self, key: Hashable, deadline_ms: int, task: TimerTask) -> None:
        if key not in self._tasks:
            self.schedule(key, deadline_ms, task)

    def cancel(self, key: Hashable) -> None:
        self._tasks.pop(key, None)

    def deadline(self, key: Hashable) -> int | None:
        entry = self._tasks.get(key)
        return None if entry is None else entry[0]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            entry = self._tasks.get(key)
            if entry is not None and entry[1] == seq:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_expired(self, now_ms: int) -> tuple[int, TimerTask] | None:
        """Remove and return (deadline, task) of the earliest task due at ``now_ms``, or None."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now_ms:
            return None
        _, _, key = heapq.heappop(self._heap)
        deadline, _, task = self._tasks.pop(key)
        return deadline, task
