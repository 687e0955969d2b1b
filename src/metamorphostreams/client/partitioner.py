"""Partition choice as Kafka's Java producer makes it.

Keyed records go to ``toPositive(murmur2(key)) % partitions`` (Java's
``BuiltInPartitioner.partitionForKey``; librdkafka's ``murmur2_random`` is the same), so a
key lands on the same partition whichever of these clients wrote it. Records without a key
stick to one partition until ``batch.size`` bytes went there, then move on (KIP-794).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["StickyPartitioner", "murmur2", "partition_for_key"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (``Utils.murmur2``), as a signed Java int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not abs(), which overflows)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    return to_positive(murmur2(key)) % num_partitions


class StickyPartitioner:
    """Per topic, the partition that keyless records currently go to. Not task-safe."""

    def __init__(self, batch_size: int, rng: random.Random | None = None) -> None:
        self.batch_size = max(1, batch_size)
        self._rng = rng or random.Random()
        self._current: dict[str, tuple[int, int]] = {}  # topic -> (partition, bytes so far)

    def partition(self, topic: str, available: Sequence[int], num_partitions: int) -> int:
        current = self._current.get(topic)
        if current is not None and current[0] < num_partitions:
            return current[0]
        return self._choose(topic, available, num_partitions, None)

    def record_appended(
        self, topic: str, partition: int, size: int, available: Sequence[int], num_partitions: int
    ) -> None:
        current = self._current.get(topic)
        if current is None or current[0] != partition:
            return
        produced = current[1] + size
        if produced >= self.batch_size:
            self._choose(topic, available, num_partitions, partition)
        else:
            self._current[topic] = (partition, produced)

    def _choose(
        self, topic: str, available: Sequence[int], num_partitions: int, previous: int | None
    ) -> int:
        pool = [p for p in available if p != previous] or list(available)
        if not pool:
            pool = [p for p in range(num_partitions) if p != previous] or [0]
        choice = self._rng.choice(pool)
        self._current[topic] = (choice, 0)
        return choice
