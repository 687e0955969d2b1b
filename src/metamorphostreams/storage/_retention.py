"""Which segments a deletion pass may remove (Kafka's UnifiedLog.deletableSegments and the
retention predicates)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metamorphostreams.storage.segment import LogSegment

__all__ = [
    "Predicate",
    "below_log_start",
    "deletable_segments",
    "over_retention_bytes",
    "over_retention_ms",
]

# (segment, the next segment or None for the active one) -> may it go?
Predicate = Callable[[LogSegment, LogSegment | None], bool]


def deletable_segments(
    segments: Sequence[LogSegment],
    *,
    high_watermark: int,
    log_end_offset: int,
    predicate: Predicate,
) -> list[LogSegment]:
    """The oldest segments, in order, while ``predicate`` holds; never one holding offsets
    at or above the high watermark (so the log start offset cannot pass it), never an empty
    active segment. A non-empty active segment may go: the caller rolls first."""
    out: list[LogSegment] = []
    for i, segment in enumerate(segments):
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        upper = nxt.base_offset if nxt is not None else log_end_offset
        last_and_empty = nxt is None and segment.size == 0
        if high_watermark >= upper and not last_and_empty and predicate(segment, nxt):
            out.append(segment)
        else:
            break
    return out


def below_log_start(log_start_offset: int) -> Predicate:
    """Segments whose successor starts at or below the log start offset."""
    return lambda segment, nxt: nxt is not None and nxt.base_offset <= log_start_offset


def over_retention_bytes(log_size: int, retention_bytes: int) -> Predicate:
    """Oldest segments while removing them keeps the log at or above retention.bytes."""
    excess = log_size - retention_bytes

    def predicate(segment: LogSegment, _: LogSegment | None) -> bool:
        nonlocal excess
        if excess - segment.size < 0:
            return False
        excess -= segment.size
        return True

    return predicate


def over_retention_ms(now_ms: int, retention_ms: int) -> Predicate:
    """Segments whose largest timestamp is more than retention.ms old."""
    return lambda segment, _: now_ms - segment.largest_timestamp > retention_ms
