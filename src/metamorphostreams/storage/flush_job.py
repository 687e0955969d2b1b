"""fsync work that may run off the event loop (Kafka flushes rolled segments from a
scheduler thread)."""

from __future__ import annotations

import os

__all__ = ["FlushJob"]


class FlushJob:
    """fsyncs a set of files so the log's recovery point can advance to ``offset``.

    Made by ``PartitionLog.begin_flush`` on the loop thread; ``run`` (any thread) fsyncs
    and closes descriptors the job owns (duplicates), so the log may roll, delete or close
    segments meanwhile; ``PartitionLog.complete_flush`` (loop thread) then moves the
    recovery point. Use a job once.
    """

    def __init__(self, fds: list[int], offset: int) -> None:
        self.fds = fds
        self.offset = offset
        self.done = False

    def run(self) -> None:
        try:
            for fd in self.fds:
                os.fsync(fd)
            self.done = True
        finally:
            self.close()

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)
