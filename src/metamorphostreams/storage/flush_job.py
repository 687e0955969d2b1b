"""fsync work that may run off the event loop (Kafka flushes rolled segments from a
scheduler thread)."""

from __future__ import annotations

import os
import threading

__all__ = ["FlushJob"]


class FlushJob:
    """fsyncs a set of files so the log's recovery point can advance to ``offset``.

    Made by ``PartitionLog.begin_flush`` on the loop thread; ``run`` (any thread) fsyncs
    and closes descriptors the job owns (duplicates), so the log may roll, delete or close
    segments meanwhile; ``PartitionLog.complete_flush`` (loop thread) then moves the
    recovery point. Use a job once. Thread-safe between one ``run`` and ``close``: a
    ``close`` while ``run`` is still fsyncing (its awaiting task was cancelled) leaves the
    descriptors to ``run``, which closes them when done; closing them under it could make
    it fsync, then close, descriptors the process has reused for other files.
    """

    _NEW, _RUNNING, _FINISHED = range(3)

    def __init__(self, fds: list[int], offset: int) -> None:
        self.fds = fds
        self.offset = offset
        self.done = False
        self._lock = threading.Lock()
        self._state = self._NEW

    def run(self) -> None:
        with self._lock:
            if self._state != self._NEW:
                return  # closed before it ran: nothing is claimed durable
            self._state = self._RUNNING
        try:
            for fd in self.fds:
                os.fsync(fd)
            self.done = True
        finally:
            with self._lock:
                self._state = self._FINISHED
                self._close_fds()

    def close(self) -> None:
        with self._lock:
            if self._state == self._RUNNING:
                return  # ``run`` closes them
            self._state = self._FINISHED
            self._close_fds()

    def _close_fds(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)
