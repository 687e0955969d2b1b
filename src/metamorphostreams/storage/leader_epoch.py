"""The leader epoch cache of a partition and its ``leader-epoch-checkpoint`` file."""

from __future__ import annotations

import bisect
import logging
from pathlib import Path

from metamorphostreams.storage.checkpoints import CheckpointError, LeaderEpochCheckpointFile

__all__ = ["UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "LeaderEpochFileCache"]

logger = logging.getLogger("metamorphostreams.storage")

UNDEFINED_EPOCH = -1  # OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH
UNDEFINED_EPOCH_OFFSET = -1  # OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH_OFFSET


class LeaderEpochFileCache:
    """Ordered ``(epoch, start_offset)`` entries: the first offset written in each leader
    epoch. Invariant: epochs and start offsets both strictly increase. Every change is
    written through to the checkpoint file (``0``, count, ``epoch offset`` lines); when that
    write fails the cache stays right and ``dirty`` until ``write`` succeeds.

    Kafka's LeaderEpochFileCache semantics: ``assign`` drops entries that would break the
    ordering, ``end_offset_for`` answers OffsetForLeaderEpoch, ``truncate_from_end`` follows
    log truncation, ``truncate_from_start`` follows log start offset increments. Not
    task-safe.
    """

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._file = LeaderEpochCheckpointFile(path)
        self._sync = sync
        self._dirty = False
        try:
            loaded = self._file.read()
        except CheckpointError as e:
            logger.warning("ignoring unreadable leader epoch checkpoint %s: %s", path, e)
            loaded = []
        self._epochs: list[int] = []
        self._offsets: list[int] = []
        for epoch, offset in loaded:
            self._assign(epoch, offset)

    @property
    def path(self) -> Path:
        return self._file.path

    def set_path(self, path: Path) -> None:
        self._file = LeaderEpochCheckpointFile(path)

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._offsets, strict=True))

    def is_empty(self) -> bool:
        return not self._epochs

    @property
    def latest_epoch(self) -> int | None:
        return self._epochs[-1] if self._epochs else None

    def latest_entry(self) -> tuple[int, int] | None:
        return (self._epochs[-1], self._offsets[-1]) if self._epochs else None

    def earliest_entry(self) -> tuple[int, int] | None:
        return (self._epochs[0], self._offsets[0]) if self._epochs else None

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` starts at ``start_offset`` (no-op if already known)."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        if self._assign(epoch, start_offset):
            self._flush()

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if self._epochs:
            latest_epoch, latest_offset = self._epochs[-1], self._offsets[-1]
            if epoch == latest_epoch and start_offset >= latest_offset:
                return False
        removed: list[tuple[int, int]] = []
        while self._epochs and (self._epochs[-1] >= epoch or self._offsets[-1] >= start_offset):
            removed.append((self._epochs.pop(), self._offsets.pop()))
        if len(removed) > 1 or (removed and removed[0][1] != start_offset):
            logger.warning(
                "%s: new epoch entry (%d, %d) removed non-monotonic entries %s",
                self.path,
                epoch,
                start_offset,
                removed,
            )
        self._epochs.append(epoch)
        self._offsets.append(start_offset)
        return True

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """``(epoch, end offset)`` for OffsetForLeaderEpoch: the start offset of the first
        epoch above ``requested_epoch`` (the log end offset for the latest epoch), with the
        greatest known epoch <= the requested one; ``(-1, -1)`` when undefined."""
        if requested_epoch == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self._epochs[-1]:
            return requested_epoch, log_end_offset
        higher = bisect.bisect_right(self._epochs, requested_epoch)
        if higher >= len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            # below every known epoch: its data is gone, point at the first retained epoch
            return requested_epoch, self._offsets[0]
        return self._epochs[higher - 1], self._offsets[higher]

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch that wrote ``offset`` (the last entry starting at or before it)."""
        slot = bisect.bisect_right(self._offsets, offset) - 1
        return self._epochs[slot] if slot >= 0 else None

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop entries starting at or after ``end_offset`` (the log was truncated there)."""
        if end_offset < 0 or not self._offsets or self._offsets[-1] < end_offset:
            return
        keep = bisect.bisect_left(self._offsets, end_offset)
        del self._epochs[keep:]
        del self._offsets[keep:]
        self._flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """Forget epochs wholly below ``start_offset``; the epoch covering it now starts
        there."""
        keep_from = bisect.bisect_right(self._offsets, start_offset)
        if keep_from == 0:
            return
        epoch = self._epochs[keep_from - 1]
        if keep_from == 1 and self._offsets[0] == start_offset:
            return
        del self._epochs[:keep_from]
        del self._offsets[:keep_from]
        self._epochs.insert(0, epoch)
        self._offsets.insert(0, start_offset)
        self._flush()

    def clear(self) -> None:
        self._epochs.clear()
        self._offsets.clear()
        self._flush()

    @property
    def dirty(self) -> bool:
        """A change is not in the checkpoint file yet (its write failed)."""
        return self._dirty

    def write(self) -> None:
        """Write the checkpoint file now (after a failed write: disk full)."""
        self._flush()

    def _flush(self) -> None:
        self._dirty = True
        self._file.write(self.entries(), sync=self._sync)
        self._dirty = False
