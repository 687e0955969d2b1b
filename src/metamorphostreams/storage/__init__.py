"""The commit log: segments, indexes, partition logs, checkpoints, producer state.

Kafka's on-disk layout and semantics (UnifiedLog, LogSegment, LogLoader, OffsetIndex,
TimeIndex, TransactionIndex, ProducerStateManager, LeaderEpochFileCache,
OffsetCheckpointFile). No asyncio,
no network; time comes in as ``now_ms`` arguments. Loggers use the name
``metamorphostreams.storage``.
"""

from metamorphostreams.storage._index_file import CorruptIndexError
from metamorphostreams.storage.checkpoints import (
    CheckpointError,
    LeaderEpochCheckpointFile,
    OffsetCheckpointFile,
)
from metamorphostreams.storage.cleaner_config import CLEANER_CONFIG_KEYS, CleanerConfig
from metamorphostreams.storage.flush_job import FlushJob
from metamorphostreams.storage.leader_epoch import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    LeaderEpochFileCache,
)
from metamorphostreams.storage.log_cleaner import CleanTask
from metamorphostreams.storage.log_cleaner_manager import LogCleaner
from metamorphostreams.storage.log_config import (
    SERVER_SYNONYMS,
    TOPIC_CONFIG_NAMES,
    LogConfig,
    LogConfigError,
)
from metamorphostreams.storage.log_manager import LogManager
from metamorphostreams.storage.offset_index import InvalidOffsetError, OffsetIndex
from metamorphostreams.storage.partition_log import DELETE_RECORDS_HIGH_WATERMARK, PartitionLog
from metamorphostreams.storage.producer_state import (
    AppendOrigin,
    BatchMetadata,
    CompletedTxn,
    ProducerInfo,
    ProducerStateEntry,
    ProducerStateManager,
    SnapshotError,
)
from metamorphostreams.storage.results import AppendResult, FileRegion, ReadResult, RecordError
from metamorphostreams.storage.segment import LogSegment
from metamorphostreams.storage.time_index import TimeIndex
from metamorphostreams.storage.transaction_index import AbortedTxn, TransactionIndex

__all__ = [
    "CLEANER_CONFIG_KEYS",
    "DELETE_RECORDS_HIGH_WATERMARK",
    "SERVER_SYNONYMS",
    "TOPIC_CONFIG_NAMES",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "AbortedTxn",
    "AppendOrigin",
    "AppendResult",
    "BatchMetadata",
    "CheckpointError",
    "CleanTask",
    "CleanerConfig",
    "CompletedTxn",
    "CorruptIndexError",
    "FileRegion",
    "FlushJob",
    "InvalidOffsetError",
    "LeaderEpochCheckpointFile",
    "LeaderEpochFileCache",
    "LogCleaner",
    "LogConfig",
    "LogConfigError",
    "LogManager",
    "LogSegment",
    "OffsetCheckpointFile",
    "OffsetIndex",
    "PartitionLog",
    "ProducerInfo",
    "ProducerStateEntry",
    "ProducerStateManager",
    "ReadResult",
    "RecordError",
    "SnapshotError",
    "TimeIndex",
    "TransactionIndex",
]
