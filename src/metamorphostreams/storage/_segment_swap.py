"""Replacing segments of a partition log by cleaned ones, crash-safely (Kafka's
LocalLog.replaceSegments), delayed deletion of replaced segments, and the completion of an
interrupted swap when a partition is loaded (Kafka's LogLoader).

The sequence, on the loop thread, with the cleaned files already written and fsynced:

1. the cleaned segment's files are renamed ``.cleaned`` -> ``.swap`` (``.log`` first), and
   the directory is fsynced: from here on, a restart completes the swap;
2. the old segments are renamed ``.deleted`` and scheduled for deletion after
   ``file.delete.delay.ms`` (their descriptors stay open for reads already handed out);
3. the ``.swap`` files are renamed to their final names, and the directory fsynced.

At load time (``recover_interrupted_swaps``): ``.cleaned`` files are deleted, and so are the
``.swap`` files at or above the lowest ``.cleaned`` offset (a swap cut short in step 1); the
remaining ``.swap`` logs define the offset ranges they replace, whose old segment files are
deleted; then every ``.swap`` file loses its suffix.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from metamorphostreams.storage.checkpoints import fsync_dir
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_files import (
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    offset_from_file_name,
)
from metamorphostreams.storage.segment import LogSegment

__all__ = [
    "CLEANED_FILE_SUFFIX",
    "SWAP_FILE_SUFFIX",
    "SegmentSwapping",
    "recover_interrupted_swaps",
]

logger = logging.getLogger("metamorphostreams.storage")

CLEANED_FILE_SUFFIX = ".cleaned"
SWAP_FILE_SUFFIX = ".swap"
_SEGMENT_SUFFIXES = (
    LOG_FILE_SUFFIX,
    INDEX_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
)
_HEAD = struct.Struct(">qi")  # baseOffset, batchLength
_LAST_OFFSET_DELTA = struct.Struct(">i")
_LAST_OFFSET_DELTA_AT = 23
_LOG_OVERHEAD = 12
_HEADER_SIZE = 61


class SegmentSwapping:
    """The swap-in of cleaned segments and delayed deletions, as a mixin of
    ``PartitionLog``. Loop thread only."""

    # provided by PartitionLog
    topic: str
    partition: int
    dir: Path
    config: LogConfig
    _segments: list[LogSegment]
    _bases: list[int]
    _fsync: bool
    _clock_ms: int
    _pending_deletes: list[tuple[int, LogSegment]]

    @property
    def fsync_enabled(self) -> bool:
        return self._fsync

    def _schedule_delete(self, segments: list[LogSegment]) -> None:
        due = self._clock_ms + self.config.file_delete_delay_ms
        for segment in segments:
            segment.mark_deleted()
            self._pending_deletes.append((due, segment))

    def delete_expired_files(self, now_ms: int) -> int:
        """Close and unlink segment files whose file.delete.delay.ms has passed."""
        self._clock_ms = max(self._clock_ms, now_ms)
        keep: list[tuple[int, LogSegment]] = []
        deleted = 0
        for due, segment in self._pending_deletes:
            if due <= now_ms:
                segment.delete()
                deleted += 1
            else:
                keep.append((due, segment))
        self._pending_deletes = keep
        return deleted

    def can_replace_segments(self, old: Sequence[LogSegment], sizes: Sequence[int]) -> bool:
        """Whether ``old`` are still consecutive inactive segments of this log, unchanged
        (same objects, same sizes) since the cleaner read them."""
        if not old:
            return False
        first = next((i for i, s in enumerate(self._segments) if s is old[0]), None)
        if first is None or first + len(old) >= len(self._segments):
            return False  # gone, or reaching the active segment
        return all(
            self._segments[first + k] is segment and segment.size == sizes[k]
            for k, segment in enumerate(old)
        )

    def replace_segments(self, cleaned: LogSegment, old: Sequence[LogSegment]) -> None:
        """Swap ``cleaned`` (files named ``.cleaned``) in for ``old`` (checked with
        ``can_replace_segments`` first). Renames and two directory fsyncs, no data I/O."""
        first = next(i for i, s in enumerate(self._segments) if s is old[0])
        cleaned.change_suffix(SWAP_FILE_SUFFIX)
        if self._fsync:
            fsync_dir(self.dir)
        self._segments[first : first + len(old)] = [cleaned]
        self._bases[first : first + len(old)] = [cleaned.base_offset]
        self._schedule_delete(list(old))
        cleaned.change_suffix("")
        if self._fsync:
            fsync_dir(self.dir)
        logger.info(
            "%s-%d: swapped in cleaned segment %s for %d segments",
            self.topic,
            self.partition,
            cleaned,
            len(old),
        )


def _next_offset(path: Path, base_offset: int) -> int:
    """One past the last offset of the whole batches in a ``.log`` file (headers only)."""
    next_offset = base_offset
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while size - pos >= _HEADER_SIZE:
            head = os.pread(f.fileno(), _HEADER_SIZE, pos)
            if len(head) < _HEADER_SIZE:
                break
            batch_base, batch_length = _HEAD.unpack_from(head, 0)
            end = pos + _LOG_OVERHEAD + batch_length
            if batch_length < _HEADER_SIZE - _LOG_OVERHEAD or end > size:
                break
            (delta,) = _LAST_OFFSET_DELTA.unpack_from(head, _LAST_OFFSET_DELTA_AT)
            next_offset = batch_base + delta + 1
            pos += _LOG_OVERHEAD + batch_length
    return next_offset


def _is_segment_file(name: str) -> bool:
    return name.endswith(_SEGMENT_SUFFIXES) and offset_from_file_name(name) is not None


def recover_interrupted_swaps(directory: Path) -> None:
    """Complete or discard a swap a crash interrupted (see the module docstring)."""
    names = os.listdir(directory)
    cleaned = [n for n in names if n.endswith(CLEANED_FILE_SUFFIX)]
    swaps = [n for n in names if n.endswith(SWAP_FILE_SUFFIX)]
    if not cleaned and not swaps:
        return
    min_cleaned = min(
        (o for o in map(offset_from_file_name, cleaned) if o is not None), default=None
    )
    for name in cleaned:
        logger.info("%s: deleting %s of an unfinished cleaning", directory, name)
        (directory / name).unlink(missing_ok=True)
    valid: list[str] = []
    for name in swaps:
        offset = offset_from_file_name(name)
        if offset is None or (min_cleaned is not None and offset >= min_cleaned):
            logger.info("%s: deleting %s of a swap that never completed", directory, name)
            (directory / name).unlink(missing_ok=True)
        else:
            valid.append(name)
    low, high = 2**63, -1
    swap_bases: set[int] = set()
    for name in valid:
        if name.endswith(LOG_FILE_SUFFIX + SWAP_FILE_SUFFIX):
            base = offset_from_file_name(name)
            assert base is not None
            swap_bases.add(base)
            low = min(low, base)
            high = max(high, _next_offset(directory / name, base))
    for name in os.listdir(directory):
        if name.endswith(SWAP_FILE_SUFFIX) or not _is_segment_file(name):
            continue
        offset = offset_from_file_name(name)
        assert offset is not None
        if low <= offset < high or offset in swap_bases:
            logger.info("%s: deleting %s, replaced by an interrupted swap", directory, name)
            (directory / name).unlink(missing_ok=True)
    for name in valid:
        logger.info("%s: completing the swap of %s", directory, name)
        os.replace(directory / name, directory / name[: -len(SWAP_FILE_SUFFIX)])
    fsync_dir(directory)
