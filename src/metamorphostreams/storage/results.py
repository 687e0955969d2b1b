"""Values the partition log hands to the broker: append and read results, file regions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from metamorphostreams.protocol.errors import ErrorCode

__all__ = ["AppendResult", "FileRegion", "ReadResult", "RecordError"]


@dataclass(frozen=True, slots=True)
class FileRegion:
    """``size`` bytes at ``position`` of an open segment file, for ``os.sendfile``.

    The file object (not a bare fd number, which could be reused by another file after a
    close) is kept; segments removed by retention or truncation stay open for
    ``file.delete.delay.ms`` so a region handed out just before keeps working. After that,
    ``file.fileno()`` raises ValueError. Immutable, safe to share.
    """

    file: BinaryIO
    position: int
    size: int

    def read_bytes(self) -> bytes:
        """The region's bytes (tests, and transports without sendfile)."""
        fd = self.file.fileno()
        parts: list[bytes] = []
        done = 0
        while done < self.size:
            chunk = os.pread(fd, self.size - done, self.position + done)
            if not chunk:
                break
            parts.append(chunk)
            done += len(chunk)
        return b"".join(parts)


class RecordError(NamedTuple):
    """ProduceResponse's RecordError: which record of the batch, and why."""

    batch_index: int
    message: str | None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of ``PartitionLog.append_as_leader`` (a Produce partition response) and of
    the other appends (markers, ``append_as_follower``).

    ``log_append_time`` is the broker time stamped on LogAppendTime topics, else -1.
    On error the offsets are -1 and nothing was written; so are they, without an error, when
    a follower's records held no whole batch.
    """

    error: ErrorCode
    base_offset: int = -1
    last_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1
    record_errors: list[RecordError] = field(default_factory=list)
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Outcome of ``PartitionLog.read``: whole batches as file regions plus the partition
    offsets a Fetch response reports."""

    error: ErrorCode
    regions: list[FileRegion]
    size: int
    high_watermark: int
    log_start_offset: int
    log_end_offset: int
    last_stable_offset: int = -1

    def read_bytes(self) -> bytes:
        return b"".join(region.read_bytes() for region in self.regions)
