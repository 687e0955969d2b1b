"""Typed client exceptions carrying Kafka's error code.

Every error a broker returns becomes an instance of a ``KafkaError`` subclass chosen by its
code (``error_for(code)``); ``retriable`` is True exactly for the codes whose Java exception
extends ``RetriableException``, and the clients retry those until their deadline. Errors made
on the client side (a bad config key, a broker that cannot be reached, a deadline) have their
own classes and carry the closest Kafka code.
"""

from __future__ import annotations

from ..protocol.errors import ErrorCode

__all__ = [
    "BrokerNotAvailableError",
    "CommitFailedError",
    "ConfigError",
    "CoordinatorNotAvailableError",
    "GroupIdNotFoundError",
    "IllegalGenerationError",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidReplicationFactorError",
    "KafkaConnectionError",
    "KafkaError",
    "KafkaTimeoutError",
    "LeaderNotAvailableError",
    "MessageSizeTooLargeError",
    "NoOffsetForPartitionError",
    "NonEmptyGroupError",
    "NotCoordinatorError",
    "NotLeaderOrFollowerError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceNumberError",
    "ProducerFencedError",
    "RebalanceInProgressError",
    "TopicAlreadyExistsError",
    "TransactionAbortableError",
    "TransactionAbortedError",
    "TransactionStateError",
    "TransactionalIdAuthorizationError",
    "UnknownMemberIdError",
    "UnknownProducerIdError",
    "UnknownTopicOrPartitionError",
    "UnsupportedVersionError",
    "error_for",
    "raise_for",
]

# The codes whose Java exception extends org.apache.kafka.common.errors.RetriableException.
RETRIABLE_CODES = frozenset(
    {
        ErrorCode.CORRUPT_MESSAGE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.REPLICA_NOT_AVAILABLE,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
        ErrorCode.INVALID_FETCH_SESSION_EPOCH,
        ErrorCode.LISTENER_NOT_FOUND,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.OFFSET_NOT_AVAILABLE,
        ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
        ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ErrorCode.UNSTABLE_OFFSET_COMMIT,
        ErrorCode.THROTTLING_QUOTA_EXCEEDED,
        ErrorCode.UNKNOWN_TOPIC_ID,
        ErrorCode.INCONSISTENT_TOPIC_ID,
        ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR,
    }
)

# Errors that mean "your metadata is stale": refresh it before retrying (InvalidMetadataException).
METADATA_CODES = frozenset(
    {
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.UNKNOWN_TOPIC_ID,
        ErrorCode.INCONSISTENT_TOPIC_ID,
        ErrorCode.LISTENER_NOT_FOUND,
        ErrorCode.REPLICA_NOT_AVAILABLE,
    }
)

# Errors that mean "ask again who the group coordinator is".
COORDINATOR_CODES = frozenset(
    {
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
    }
)


_CLASSES: dict[int, type[KafkaError]] = {}


class KafkaError(Exception):
    """An error with a Kafka error code. ``retriable`` follows Kafka's RetriableException."""

    default_code: ErrorCode = ErrorCode.UNKNOWN_SERVER_ERROR
    show_code = True  # str() names the Kafka code (not for errors found on the client side)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "default_code" in cls.__dict__ and not cls.__dict__.get("client_side", False):
            _CLASSES.setdefault(int(cls.default_code), cls)

    def __init__(self, message: str | None = None, *, code: int | None = None) -> None:
        resolved = self.default_code if code is None else _as_code(code)
        self.code: ErrorCode | int = resolved
        self.message = message or _describe(resolved)
        super().__init__(self.message)

    @property
    def name(self) -> str:
        return self.code.name if isinstance(self.code, ErrorCode) else f"ERROR_{self.code}"

    @property
    def retriable(self) -> bool:
        return self.code in RETRIABLE_CODES

    @property
    def invalid_metadata(self) -> bool:
        return self.code in METADATA_CODES

    def __str__(self) -> str:
        if self.message == _describe(self.code) or not self.show_code:
            return self.message
        return f"{self.message} ({self.name})"


def _as_code(code: int) -> ErrorCode | int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def _describe(code: ErrorCode | int) -> str:
    if isinstance(code, ErrorCode):
        return code.name.lower().replace("_", " ")
    return f"unknown error code {code}"


class ConfigError(KafkaError, ValueError):
    """A client configuration key is unknown or its value is invalid (caller's fault)."""

    default_code = ErrorCode.INVALID_CONFIG
    show_code = False
    client_side = True


class KafkaConnectionError(KafkaError, ConnectionError):
    """A broker could not be reached, or the connection broke with requests in flight."""

    default_code = ErrorCode.NETWORK_EXCEPTION
    show_code = False


class KafkaTimeoutError(KafkaError, TimeoutError):
    """A request or operation did not complete before its deadline."""

    default_code = ErrorCode.REQUEST_TIMED_OUT
    show_code = False


class NoOffsetForPartitionError(KafkaError):
    """auto.offset.reset=none and the partition has no committed offset."""

    default_code = ErrorCode.OFFSET_OUT_OF_RANGE
    show_code = False
    client_side = True

    @property
    def retriable(self) -> bool:
        return False


class OffsetOutOfRangeError(KafkaError):
    """The fetch offset is outside the log."""

    default_code = ErrorCode.OFFSET_OUT_OF_RANGE


class UnknownTopicOrPartitionError(KafkaError):
    """The topic or partition does not exist on the broker."""

    default_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class LeaderNotAvailableError(KafkaError):
    """The partition has no leader now."""

    default_code = ErrorCode.LEADER_NOT_AVAILABLE


class NotLeaderOrFollowerError(KafkaError):
    """The broker is not the partition's leader: refresh metadata."""

    default_code = ErrorCode.NOT_LEADER_OR_FOLLOWER


class BrokerNotAvailableError(KafkaError):
    """The broker is not available."""

    default_code = ErrorCode.BROKER_NOT_AVAILABLE


class MessageSizeTooLargeError(KafkaError):
    """A record or batch is larger than the broker or client allows."""

    default_code = ErrorCode.MESSAGE_TOO_LARGE


class CoordinatorNotAvailableError(KafkaError):
    """The group coordinator is not available."""

    default_code = ErrorCode.COORDINATOR_NOT_AVAILABLE


class NotCoordinatorError(KafkaError):
    """The broker is not the group's coordinator."""

    default_code = ErrorCode.NOT_COORDINATOR


class IllegalGenerationError(KafkaError):
    """The group generation has moved on."""

    default_code = ErrorCode.ILLEGAL_GENERATION


class UnknownMemberIdError(KafkaError):
    """The coordinator does not know the member."""

    default_code = ErrorCode.UNKNOWN_MEMBER_ID


class RebalanceInProgressError(KafkaError):
    """The group is rebalancing."""

    default_code = ErrorCode.REBALANCE_IN_PROGRESS


class UnsupportedVersionError(KafkaError):
    """The broker does not support the API or version needed."""

    default_code = ErrorCode.UNSUPPORTED_VERSION


class TopicAlreadyExistsError(KafkaError):
    """The topic already exists."""

    default_code = ErrorCode.TOPIC_ALREADY_EXISTS


class InvalidPartitionsError(KafkaError):
    """The partition count is invalid."""

    default_code = ErrorCode.INVALID_PARTITIONS


class InvalidReplicationFactorError(KafkaError):
    """The replication factor is invalid."""

    default_code = ErrorCode.INVALID_REPLICATION_FACTOR


class InvalidConfigError(KafkaError):
    """The broker rejected a configuration."""

    default_code = ErrorCode.INVALID_CONFIG


class OutOfOrderSequenceNumberError(KafkaError):
    """The broker received an out-of-order sequence number from the idempotent producer."""

    default_code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class UnknownProducerIdError(KafkaError):
    """The broker no longer knows the producer id."""

    default_code = ErrorCode.UNKNOWN_PRODUCER_ID


class NonEmptyGroupError(KafkaError):
    """The group still has members."""

    default_code = ErrorCode.NON_EMPTY_GROUP


class GroupIdNotFoundError(KafkaError):
    """The group does not exist."""

    default_code = ErrorCode.GROUP_ID_NOT_FOUND


def error_for(code: int, message: str | None = None) -> KafkaError:
    """The typed exception for a Kafka error code (KafkaError itself for codes without a class)."""
    cls = _CLASSES.get(code, KafkaError)
    return cls(message or None, code=code)


def raise_for(code: int, message: str | None = None) -> None:
    """Raise ``error_for(code)`` unless code is NONE."""
    if code != ErrorCode.NONE:
        raise error_for(code, message)


class CommitFailedError(KafkaError):
    """The commit cannot complete: the group rebalanced and the partitions may have moved."""

    default_code = ErrorCode.REBALANCE_IN_PROGRESS
    show_code = False
    client_side = True

    @property
    def retriable(self) -> bool:
        return False


class ProducerFencedError(KafkaError):
    """Another producer with the same transactional.id has initialised: this one is fenced
    and must be closed (Kafka's ProducerFencedException; fatal for the producer)."""

    default_code = ErrorCode.PRODUCER_FENCED


class InvalidProducerEpochError(KafkaError):
    """The producer's epoch is not the current one for its producer id."""

    default_code = ErrorCode.INVALID_PRODUCER_EPOCH


class TransactionalIdAuthorizationError(KafkaError):
    """The producer may not use its transactional.id (fatal for the producer)."""

    default_code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


class TransactionStateError(KafkaError):
    """A transactional method was called in the wrong state (send() outside a transaction,
    commit_transaction() before begin_transaction(), ...): the caller's mistake."""

    default_code = ErrorCode.INVALID_TXN_STATE
    show_code = False
    client_side = True

    @property
    def retriable(self) -> bool:
        return False


class TransactionAbortableError(KafkaError):
    """The open transaction hit an error: only abort_transaction() works now. The error met
    is ``__cause__``; its code is ``code``."""

    default_code = ErrorCode.TRANSACTION_ABORTABLE
    client_side = True

    @property
    def retriable(self) -> bool:
        return False


class TransactionAbortedError(KafkaError):
    """The record was not delivered: its transaction was aborted before it was sent."""

    default_code = ErrorCode.TRANSACTION_ABORTABLE
    show_code = False
    client_side = True

    @property
    def retriable(self) -> bool:
        return False
