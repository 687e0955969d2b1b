"""Idempotent produce, raw: sequence gaps, duplicates, epochs, unknown producers.

Producer ids differ between brokers (each hands out its own), so every scenario asks its
target for one with InitProducerId and builds its batches with it; the answers compared are
error codes and offsets.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import kafka_wire as wire

from .batches import batch
from .differential import (
    NONE,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    Target,
    Targets,
    create_topic,
    fetch,
    init_producer_id,
    list_offsets,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(120)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _summary(answer: dict[str, Any]) -> tuple[int, int]:
    return answer["error_code"], answer["base_offset"]


def test_init_producer_id_answers(targets: Targets) -> None:
    def scenario(t: Target) -> dict[str, Any]:
        first = init_producer_id(t)
        second = init_producer_id(t)
        return {
            "epochs": (first[1], second[1]),
            "distinct ids": first[0] != second[0],
            "ids non-negative": min(first[0], second[0]) >= 0,
        }

    targets.compare(scenario, "InitProducerId for two idempotent producers")


def test_sequence_gaps_and_duplicates(targets: Targets) -> None:
    topic = unique("idempotent")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        pid, epoch = init_producer_id(t)

        def send(seq: int, n: int, tag: str) -> tuple[int, int]:
            data = batch(n, ts, tag, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
            return _summary(produce(t, topic, 0, data))

        out: dict[str, Any] = {
            "seq 0-2": send(0, 3, "a"),
            "seq 0-2 again (duplicate of the last batch)": send(0, 3, "a"),
            "seq 3-4": send(3, 2, "b"),
            "seq 10 (a gap)": send(10, 1, "c"),
            "seq 0-2 again (duplicate of an older batch)": send(0, 3, "a"),
            "seq 4 (overlaps the last batch)": send(4, 1, "d"),
            "seq 5-7": send(5, 3, "e"),
            "seq 3-4 again": send(3, 2, "b"),
            "seq 1 (inside an older batch)": send(1, 1, "f"),
        }
        out["end"] = list_offsets(t, topic, 0, -1)["offset"]
        out["stored record count"] = sum(
            h.record_count for h in wire.batch_headers(fetch(t, topic, 0, 0)["records"])
        )
        return out

    answer = targets.compare(scenario, "an idempotent producer's sequence numbers")
    assert answer["seq 0-2 again (duplicate of the last batch)"] == [NONE, 0]
    assert answer["seq 10 (a gap)"][0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert answer["end"] == 8


def test_more_than_five_batches_back(targets: Targets) -> None:
    """Kafka remembers the last five batches per producer; an older duplicate is not known."""
    topic = unique("idem-window")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        pid, epoch = init_producer_id(t)

        def send(seq: int) -> tuple[int, int]:
            data = batch(1, ts, f"s{seq}", producer_id=pid, producer_epoch=epoch, base_sequence=seq)
            return _summary(produce(t, topic, 0, data))

        out = {f"seq {s}": send(s) for s in range(7)}
        out["seq 1 again (6 batches back)"] = send(1)
        out["seq 2 again (5 batches back)"] = send(2)
        out["end"] = list_offsets(t, topic, 0, -1)["offset"]
        return out

    targets.compare(scenario, "duplicates beyond the five remembered batches")


def test_epochs_and_unknown_producers(targets: Targets) -> None:
    topic = unique("idem-epochs")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        pid, epoch = init_producer_id(t)

        def send(partition: int, producer_id: int, producer_epoch: int, seq: int) -> Any:
            data = batch(
                1,
                ts,
                "e",
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=seq,
            )
            return _summary(produce(t, topic, partition, data))

        return {
            "epoch 0, seq 0": send(0, pid, epoch, 0),
            "epoch 0, seq 1": send(0, pid, epoch, 1),
            "epoch +1, seq 0 (bump)": send(0, pid, epoch + 1, 0),
            "old epoch, seq 2 (fenced)": send(0, pid, epoch, 2),
            "epoch +1, seq 5 (gap)": send(0, pid, epoch + 1, 5),
            "new partition, first seq 3": send(1, pid, epoch, 3),
            "new partition, first seq 0": send(1, pid, epoch, 0),
            "never issued id, seq 0": send(1, pid + 1_000_000, 0, 0),
            "never issued id, seq 7": send(0, pid + 2_000_000, 0, 7),
            "ends": [list_offsets(t, topic, p, -1)["offset"] for p in (0, 1)],
        }

    targets.compare(scenario, "producer epochs, new partitions, unknown producer ids")
