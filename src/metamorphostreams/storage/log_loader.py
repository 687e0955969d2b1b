"""Loading a partition directory at startup, with recovery after an unclean shutdown
(Kafka's LogLoader), and the producer-state rebuild that also rebuilds the transaction
indexes of recovered segments."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from metamorphostreams.protocol.errors import DecodeError
from metamorphostreams.protocol.record_batch import BatchHeader, ReadableBuffer
from metamorphostreams.protocol.records import end_txn_marker_of
from metamorphostreams.storage._index_file import CorruptIndexError
from metamorphostreams.storage._segment_swap import recover_interrupted_swaps
from metamorphostreams.storage.leader_epoch import LeaderEpochFileCache
from metamorphostreams.storage.log_config import LogConfig
from metamorphostreams.storage.log_files import (
    DELETED_FILE_SUFFIX,
    INDEX_FILE_SUFFIX,
    LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
    TXN_INDEX_FILE_SUFFIX,
    offset_from_file_name,
)
from metamorphostreams.storage.producer_state import ProducerStateManager
from metamorphostreams.storage.segment import LogSegment
from metamorphostreams.storage.transaction_index import AbortedTxn

__all__ = ["BatchReader", "LoadedLog", "load_log", "rebuild_producer_state", "replay_batch"]

logger = logging.getLogger("metamorphostreams.storage")

# Leftovers of interrupted work: files pending deletion, checkpoint temp files (the
# cleaner's ``.cleaned``/``.swap`` files are settled first by ``recover_interrupted_swaps``).
_STALE_SUFFIXES = (DELETED_FILE_SUFFIX, ".tmp")

# (position, header) -> the whole batch's bytes: ``LogSegment.read_batch`` or a slice of
# a replica append's records
BatchReader = Callable[[int, BatchHeader], ReadableBuffer]


@dataclass(slots=True)
class LoadedLog:
    segments: list[LogSegment]
    log_start_offset: int
    log_end_offset: int
    recovery_point: int
    # base offsets of the segments recovered (re-validated, indexes rebuilt): their
    # transaction indexes must be rebuilt by ``rebuild_producer_state``
    recovered: set[int] = field(default_factory=set)


def _open_segment(directory: Path, base: int, config: LogConfig, now_ms: int) -> LogSegment:
    return LogSegment(
        directory,
        base,
        index_interval_bytes=config.index_interval_bytes,
        max_index_size=config.segment_index_bytes,
        created_ms=now_ms,
    )


def _new_segment(directory: Path, base: int, config: LogConfig, now_ms: int) -> LogSegment:
    return LogSegment.create(
        directory,
        base,
        index_interval_bytes=config.index_interval_bytes,
        max_index_size=config.segment_index_bytes,
        now_ms=now_ms,
    )


def _scan_directory(directory: Path) -> list[int]:
    """Settle an interrupted swap, remove stale files and orphan indexes; return the base
    offsets of ``.log`` files."""
    recover_interrupted_swaps(directory)
    names = os.listdir(directory)
    bases: set[int] = set()
    for name in names:
        if name.endswith(_STALE_SUFFIXES):
            logger.info("%s: removing stale file %s", directory, name)
            (directory / name).unlink(missing_ok=True)
        elif name.endswith(LOG_FILE_SUFFIX):
            offset = offset_from_file_name(name)
            if offset is not None:
                bases.add(offset)
    for name in names:
        if name.endswith((INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX, TXN_INDEX_FILE_SUFFIX)):
            offset = offset_from_file_name(name)
            if offset is not None and offset not in bases:
                logger.info("%s: removing orphan index %s", directory, name)
                (directory / name).unlink(missing_ok=True)
    return sorted(bases)


def _assign_epoch_from(cache: LeaderEpochFileCache, header: BatchHeader) -> None:
    epoch = header.partition_leader_epoch
    latest = cache.latest_epoch
    if epoch >= 0 and (latest is None or epoch > latest):
        cache.assign(epoch, header.base_offset)


def load_log(
    directory: Path,
    config: LogConfig,
    *,
    now_ms: int,
    recovery_point: int,
    log_start_offset: int | None,
    clean_shutdown: bool,
    leader_epochs: LeaderEpochFileCache,
) -> LoadedLog:
    """Open every segment of ``directory``; rebuild missing or corrupt indexes; after an
    unclean shutdown, re-validate every segment from the one holding ``recovery_point``,
    truncate at the first bad batch and drop the segments after it."""
    bases = _scan_directory(directory)
    segments: list[LogSegment] = []
    recovered: set[int] = set()
    for base in bases:
        segment = _open_segment(directory, base, config, now_ms)
        try:
            segment.sanity_check()
        except (FileNotFoundError, CorruptIndexError) as e:
            logger.warning("%s: %s; rebuilding the indexes of %s", directory, e, segment)
            segment.recover()
            recovered.add(base)
        segments.append(segment)

    if len(segments) > 1 and segments[-1].size == 0:
        previous_end = segments[-2].read_next_offset()
        if previous_end > segments[-1].base_offset:
            # an empty segment inside the previous one's offsets: a roll that failed half
            # way. Keeping it would make the log end there and hide the batches after it.
            logger.warning(
                "%s: deleting empty segment %d, which overlaps the previous segment (ends at %d)",
                directory,
                segments[-1].base_offset,
                previous_end,
            )
            segments.pop().delete()

    if not clean_shutdown and segments:
        first = 0
        for i, segment in enumerate(segments):
            if segment.base_offset <= recovery_point:
                first = i
        for i in range(first, len(segments)):
            segment = segments[i]
            logger.info("%s: recovering unflushed segment %d", directory, segment.base_offset)
            truncated = segment.recover(lambda h: _assign_epoch_from(leader_epochs, h))
            recovered.add(segment.base_offset)
            if truncated > 0:
                dropped = segments[i + 1 :]
                if dropped:
                    logger.warning(
                        "%s: corruption in segment %d, deleting %d later segments",
                        directory,
                        segment.base_offset,
                        len(dropped),
                    )
                for later in dropped:
                    later.delete()
                del segments[i + 1 :]
                break

    if clean_shutdown and segments:
        # The marker vouches for what was flushed, not for what happened to the files
        # since; a torn or garbage tail would otherwise be appended after.
        active = segments[-1]
        problem = active.check_tail()
        if problem is not None:
            logger.warning(
                "%s: %s in active segment %d despite a clean shutdown; recovering it",
                directory,
                problem,
                active.base_offset,
            )
            active.recover(lambda h: _assign_epoch_from(leader_epochs, h))
            recovered.add(active.base_offset)

    start_checkpoint = 0 if log_start_offset is None else log_start_offset
    log_end_offset = _read_end(segments, recovered)
    if segments and start_checkpoint > log_end_offset:
        logger.warning(
            "%s: log start offset %d is beyond the log end offset %d; deleting all segments",
            directory,
            start_checkpoint,
            log_end_offset,
        )
        for segment in segments:
            segment.delete()
        segments = []
    # an empty segment at the start of the log carries no offsets: Kafka keeps it, so do we
    if not segments:
        segments.append(_new_segment(directory, start_checkpoint, config, now_ms))
        log_end_offset = start_checkpoint
    else:
        log_end_offset = _read_end(segments, recovered)
    for segment in segments[:-1]:
        segment.release_index_handles()  # only the active segment's indexes get appends
    start = max(start_checkpoint, segments[0].base_offset)
    point = log_end_offset if clean_shutdown else min(recovery_point, log_end_offset)
    leader_epochs.truncate_from_end(log_end_offset)
    leader_epochs.truncate_from_start(start)
    return LoadedLog(segments, start, log_end_offset, point, recovered)


def _read_end(segments: list[LogSegment], recovered: set[int]) -> int:
    if not segments:
        return 0
    try:
        return segments[-1].read_next_offset()
    except DecodeError:
        # the active segment is corrupt although the shutdown looked clean: recover it
        logger.warning("unreadable active segment %s; recovering it", segments[-1])
        segments[-1].recover()
        recovered.add(segments[-1].base_offset)
        return segments[-1].read_next_offset()


def replay_batch(
    producer_state: ProducerStateManager,
    position: int,
    header: BatchHeader,
    read_batch: BatchReader,
    where: object,
) -> AbortedTxn | None:
    """Replay one batch already in the log (load, truncation, replica append) into
    ``producer_state`` without checks; a control batch is read with ``read_batch`` for its
    COMMIT/ABORT marker. Returns the ``.txnindex`` entry of a transaction it aborts."""
    marker = None
    if header.is_control and header.has_producer_id:
        try:
            marker = end_txn_marker_of(read_batch(position, header))
        except DecodeError as e:
            logger.warning(
                "%s: undecodable control batch at offset %d: %s", where, header.base_offset, e
            )
    completed = producer_state.replay(header, marker)
    return completed.aborted_txn() if completed is not None and completed.is_aborted else None


def rebuild_producer_state(
    producer_state: ProducerStateManager,
    segments: list[LogSegment],
    *,
    log_start_offset: int,
    log_end_offset: int,
    now_ms: int,
    rebuild_txn_indexes: Collection[int] = (),
) -> int:
    """Load the newest usable snapshot and replay the batches after it; returns how many
    batches were replayed. The transaction indexes of the segments whose base offsets are
    in ``rebuild_txn_indexes`` are rebuilt from the replay (Kafka's recoverSegment), which
    then starts at a snapshot at or below the first of them."""
    producer_state.remove_stray_snapshots(s.base_offset for s in segments)
    rebuild = {s.base_offset for s in segments} & set(rebuild_txn_indexes)
    replay_from = producer_state.load(
        log_start_offset, log_end_offset, now_ms, max_offset=min(rebuild, default=None)
    )
    for segment in segments:
        if segment.base_offset in rebuild:
            segment.txn_index.reset()
    replayed = 0
    if replay_from < log_end_offset:
        for i, segment in enumerate(segments):
            next_base = segments[i + 1].base_offset if i + 1 < len(segments) else log_end_offset
            if next_base <= replay_from:
                continue
            found = segment.translate_offset(replay_from)
            if found is None:
                continue
            rebuilding = segment.base_offset in rebuild
            for position, header in segment.iter_headers(found[0]):
                if header.base_offset < replay_from:
                    continue
                aborted = replay_batch(
                    producer_state, position, header, segment.read_batch, segment.log_path
                )
                if rebuilding and aborted is not None:
                    segment.txn_index.append(aborted)
                replayed += 1
    producer_state.map_end_offset = log_end_offset
    if replayed:
        producer_state.take_snapshot()
    return replayed
