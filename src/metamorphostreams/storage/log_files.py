"""File and directory names of the on-disk log, exactly as Kafka spells them (LogFileUtils).

A partition lives in ``<data>/<topic>-<partition>/``; each segment is a group of files named
by its base offset padded to 20 digits: ``00000000000000000042.log``, ``.index``,
``.timeindex`` and, once the segment holds an ABORT marker, ``.txnindex``; producer-state
snapshots are ``<offset>.snapshot``. Files waiting for deletion carry a ``.deleted`` suffix;
a partition directory scheduled for deletion is renamed ``<topic>-<partition>.<uuid
hex>-delete``. Pure functions, no I/O.
"""

from __future__ import annotations

import uuid
from pathlib import Path

__all__ = [
    "CLEANER_OFFSET_CHECKPOINT_FILE",
    "CLEAN_SHUTDOWN_FILE",
    "DELETED_FILE_SUFFIX",
    "DELETE_DIR_SUFFIX",
    "INDEX_FILE_SUFFIX",
    "LEADER_EPOCH_CHECKPOINT_FILE",
    "LOG_FILE_SUFFIX",
    "LOG_START_OFFSET_CHECKPOINT_FILE",
    "PARTITION_METADATA_FILE",
    "PRODUCER_SNAPSHOT_FILE_SUFFIX",
    "RECOVERY_POINT_CHECKPOINT_FILE",
    "REPLICATION_OFFSET_CHECKPOINT_FILE",
    "TIME_INDEX_FILE_SUFFIX",
    "TXN_INDEX_FILE_SUFFIX",
    "delete_dir_name",
    "filename_prefix_from_offset",
    "index_file",
    "log_file",
    "offset_from_file_name",
    "parse_partition_dir_name",
    "partition_dir_name",
    "producer_snapshot_file",
    "time_index_file",
    "txn_index_file",
]

LOG_FILE_SUFFIX = ".log"
INDEX_FILE_SUFFIX = ".index"
TIME_INDEX_FILE_SUFFIX = ".timeindex"
TXN_INDEX_FILE_SUFFIX = ".txnindex"
PRODUCER_SNAPSHOT_FILE_SUFFIX = ".snapshot"
DELETED_FILE_SUFFIX = ".deleted"
DELETE_DIR_SUFFIX = "-delete"

LEADER_EPOCH_CHECKPOINT_FILE = "leader-epoch-checkpoint"
PARTITION_METADATA_FILE = "partition.metadata"
RECOVERY_POINT_CHECKPOINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT_FILE = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT_FILE = "replication-offset-checkpoint"  # high watermarks
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
CLEANER_OFFSET_CHECKPOINT_FILE = (
    "cleaner-offset-checkpoint"  # the log cleaner's first dirty offsets
)

_OFFSET_DIGITS = 20  # Long.MAX_VALUE has 19 digits; Kafka pads to 20


def filename_prefix_from_offset(offset: int) -> str:
    """``42`` -> ``00000000000000000042``, the stem every segment file shares."""
    return f"{offset:0{_OFFSET_DIGITS}d}"


def offset_from_file_name(name: str) -> int | None:
    """The base offset a segment/snapshot file name starts with, or None if it has none."""
    stem = name.split(".", 1)[0]
    if len(stem) != _OFFSET_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def log_file(directory: Path, offset: int, suffix: str = "") -> Path:
    return directory / (filename_prefix_from_offset(offset) + LOG_FILE_SUFFIX + suffix)


def index_file(directory: Path, offset: int, suffix: str = "") -> Path:
    return directory / (filename_prefix_from_offset(offset) + INDEX_FILE_SUFFIX + suffix)


def time_index_file(directory: Path, offset: int, suffix: str = "") -> Path:
    return directory / (filename_prefix_from_offset(offset) + TIME_INDEX_FILE_SUFFIX + suffix)


def txn_index_file(directory: Path, offset: int, suffix: str = "") -> Path:
    return directory / (filename_prefix_from_offset(offset) + TXN_INDEX_FILE_SUFFIX + suffix)


def producer_snapshot_file(directory: Path, offset: int) -> Path:
    return directory / (filename_prefix_from_offset(offset) + PRODUCER_SNAPSHOT_FILE_SUFFIX)


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def delete_dir_name(topic: str, partition: int) -> str:
    """Kafka's ``logDeleteDirName``: ``<topic>-<partition>.<uuid without dashes>-delete``."""
    return f"{topic}-{partition}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """``orders-3`` -> ``("orders", 3)``; None for names that are not a live partition dir
    (``-delete``/``-stray``/``-future`` dirs, files, garbage)."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit() or "." in number:
        return None
    if len(number) > 1 and number.startswith("0"):
        return None
    return topic, int(number)
