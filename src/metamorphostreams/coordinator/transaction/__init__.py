"""The transaction coordinator: transactional ids, their producer ids and epochs, and their
transactions, kept in ``__transaction_state``.

A pure state machine (no I/O, time injected): see ``coordinator.TransactionCoordinator``.
"""

from .config import TransactionConfig
from .coordinator import TransactionCoordinator, TxnMarkers, TxnResult
from .records import CoordinatorRecord, TransactionLogValue, decode_key, encode_key
from .state import (
    VALID_PREVIOUS_STATES,
    IllegalTransition,
    TransactionMetadata,
    TransactionState,
)

__all__ = [
    "VALID_PREVIOUS_STATES",
    "CoordinatorRecord",
    "IllegalTransition",
    "TransactionConfig",
    "TransactionCoordinator",
    "TransactionLogValue",
    "TransactionMetadata",
    "TransactionState",
    "TxnMarkers",
    "TxnResult",
    "decode_key",
    "encode_key",
]
