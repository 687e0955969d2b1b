"""What the group and transaction runtimes share: creating a coordinator's internal topic,
reading its partitions back at start-up, and the one loop timer that wakes a coordinator at
its next deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol.errors import ErrorCode
from ..protocol.record_batch import BatchHeader
from ..protocol.records import Record, iter_batches
from ..storage import PartitionLog

if TYPE_CHECKING:
    from .broker import Broker

LOAD_READ_BYTES = 8 << 20  # per read while replaying a coordinator's partition


def ensure_internal_topic(broker: Broker, name: str, partitions: int, segment_bytes: int) -> None:
    """Create a coordinator's compacted topic on first use, as Kafka does on FindCoordinator
    (in a cluster in the background: clients retry until it is there)."""
    if name in broker.metadata.topics:
        return
    configs = {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes)}
    if broker.cluster is not None:
        broker.cluster.ensure_topic(name, partitions, configs)
        return
    broker.replicas.create_topic(name, partitions, configs)


def replay_partition(
    plog: PartitionLog, visit: Callable[[BatchHeader, list[Record]], None]
) -> None:
    """Hand every batch from the log start to the high watermark to ``visit``, in order."""
    offset = plog.log_start_offset
    while offset < plog.high_watermark:
        result = plog.read(
            offset, LOAD_READ_BYTES, max_offset=plog.high_watermark, min_one_message=True
        )
        if result.error != ErrorCode.NONE or result.size == 0:
            break
        for header, records in iter_batches(result.read_bytes()):
            visit(header, records)
            offset = header.next_offset


class DeadlineTimer:
    """A coordinator's next deadline as one ``call_later`` on the running loop. Loop-owned."""

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None

    def reschedule(self, deadline_ms: int | None, now_ms: int) -> None:
        """Replace the pending wake-up with one at ``deadline_ms`` (None: no wake-up)."""
        self.cancel()
        if deadline_ms is not None:
            delay = max(0.0, (deadline_ms - now_ms) / 1000)
            self._handle = asyncio.get_running_loop().call_later(delay, self._run)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        self._fire()
