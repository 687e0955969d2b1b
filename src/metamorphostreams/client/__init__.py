"""Our own Kafka clients, on our own codec: producer, consumer, admin.

asyncio core (``AsyncProducer``, ``AsyncConsumer``, ``AsyncAdmin``) and blocking facades
(``Producer``, ``Consumer``, ``Admin``) that run the core on a private I/O thread.
Configuration uses Kafka's property names::

    from metamorphostreams.client import Producer

    with Producer({"bootstrap.servers": "127.0.0.1:9092"}) as producer:
        producer.produce("events", b"hello", key=b"user-1")
        producer.flush()
"""

from ._records import ConsumerGroupMetadata, ConsumerRecord, RecordMetadata
from .admin import (
    AsyncAdmin,
    ClusterDescription,
    ConfigEntry,
    GroupDescription,
    GroupListing,
    LogDirDescription,
    MemberDescription,
    NewTopic,
    ReplicaInfo,
    TopicDescription,
)
from .assignors import CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor
from .cluster import BrokerInfo, PartitionInfo, TopicPartition
from .config import ClientConfig
from .consumer import AsyncConsumer
from .errors import (
    CommitFailedError,
    ConfigError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NoOffsetForPartitionError,
    ProducerFencedError,
    TopicAlreadyExistsError,
    TransactionAbortableError,
    TransactionAbortedError,
    TransactionalIdAuthorizationError,
    TransactionStateError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
    error_for,
)
from .partitioner import murmur2, partition_for_key
from .producer import AsyncProducer
from .sync import Admin, Consumer, Producer

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "BrokerInfo",
    "ClientConfig",
    "ClusterDescription",
    "CommitFailedError",
    "ConfigEntry",
    "ConfigError",
    "Consumer",
    "ConsumerGroupMetadata",
    "ConsumerRecord",
    "CooperativeStickyAssignor",
    "GroupDescription",
    "GroupListing",
    "KafkaConnectionError",
    "KafkaError",
    "KafkaTimeoutError",
    "LogDirDescription",
    "MemberDescription",
    "MessageSizeTooLargeError",
    "NewTopic",
    "NoOffsetForPartitionError",
    "PartitionInfo",
    "Producer",
    "ProducerFencedError",
    "RangeAssignor",
    "RecordMetadata",
    "ReplicaInfo",
    "RoundRobinAssignor",
    "TopicAlreadyExistsError",
    "TopicDescription",
    "TopicPartition",
    "TransactionAbortableError",
    "TransactionAbortedError",
    "TransactionStateError",
    "TransactionalIdAuthorizationError",
    "UnknownTopicOrPartitionError",
    "UnsupportedVersionError",
    "error_for",
    "murmur2",
    "partition_for_key",
]
