"""Record value types shared by the producer, the consumer and the command line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ConsumerGroupMetadata",
    "ConsumerRecord",
    "HeaderInput",
    "RecordMetadata",
    "normalise_headers",
    "to_bytes",
]

HeaderInput = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a produced record was stored. offset is -1 with acks=0 (nobody told us)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    serialized_key_size: int = -1
    serialized_value_size: int = -1


@dataclass(slots=True)
class ConsumerRecord:
    """A record read by the consumer. timestamp_type: 0 CreateTime, 1 LogAppendTime."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadata:
    """A consumer's group membership as a transactional producer sends it with offsets
    (KIP-447): the coordinator rejects the commit if the member has been fenced meanwhile.
    generation is the classic generation or the KIP-848 member epoch; -1 and "" when the
    consumer only assigns partitions."""

    group_id: str
    generation: int = -1
    member_id: str = ""
    group_instance_id: str | None = None


def to_bytes(data: bytes | bytearray | memoryview | str | None, what: str) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, str or None, not {type(data).__name__}")


def normalise_headers(headers: HeaderInput) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for key, value in items:
        if not isinstance(key, str):
            raise TypeError(f"header keys must be str, not {type(key).__name__}")
        out.append((key, to_bytes(value, f"header {key!r}")))
    return out
