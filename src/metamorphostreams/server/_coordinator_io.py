"""What the group and transaction runtimes share: creating a coordinator's internal topic,
reading its partitions back at start-up, the one loop timer that wakes a coordinator at
its next deadline, and (in a cluster) waiting for the ISR to have a coordinator's records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol.errors import ErrorCode
from ..protocol.record_batch import BatchHeader
from ..protocol.records import Record, iter_batches
from ..storage import PartitionLog
from .connection import CloseConnection

if TYPE_CHECKING:
    from .broker import Broker
    from .replica_manager import Replication

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
    """Hand every batch from the log start to the log end to ``visit``, in order.

    To the log end, as Kafka's coordinator loader reads: a new leader's high watermark may
    still lag records that were replicated and acknowledged (its followers tell it where they
    are only at their next fetch), and a leader's log is never truncated."""
    offset = plog.log_start_offset
    end = plog.log_end_offset
    while offset < end:
        result = plog.read(offset, LOAD_READ_BYTES, max_offset=end, min_one_message=True)
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


async def await_coordinator_records(
    broker: Broker, waits: list[Replication], timeout_s: float
) -> None:
    """In a cluster a coordinator answers once the ISR has its records (Kafka appends them
    with acks=all). When they cannot be replicated the client's connection is closed: it
    retries, finding the coordinator again, and is never told of a change that a leader
    change could lose."""
    errors = await broker.replicas.await_replicated(waits, timeout_s)
    failed = [(w[0], w[1], e.name) for w, e in zip(waits, errors, strict=True) if e]
    if failed:
        raise CloseConnection(f"coordinator records not replicated: {failed}")
