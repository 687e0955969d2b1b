"""Produce and Fetch, raw, against Kafka and us: offsets, high watermarks, stored bytes, errors.

Batches are built by hand (tests/helpers/kafka_wire.py; compressed ones by kafka-python's
record builder), so both brokers get byte-identical input, and what Fetch returns must be
byte-identical too: Kafka stores a batch as the client sent it, patching only its base
offset and partition leader epoch (DESIGN.md, "On-disk format is Kafka's").
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import kafka_wire as wire

from .batches import batch as _batch
from .batches import batch_of_size
from .differential import (
    CORRUPT_MESSAGE,
    INVALID_REQUIRED_ACKS,
    INVALID_TIMESTAMP,
    MESSAGE_TOO_LARGE,
    NONE,
    OFFSET_OUT_OF_RANGE,
    UNKNOWN_TOPIC_OR_PARTITION,
    Target,
    Targets,
    create_topic,
    fetch,
    fetch_request_many,
    list_offsets,
    metadata_request,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(120)

CODECS = ("gzip", "snappy", "lz4", "zstd")
HOUR_MS = 3_600_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fetch_view(answer: dict[str, Any]) -> dict[str, Any]:
    """A Fetch partition answer with the record bytes summarised by batch (and kept whole)."""
    view = dict(answer)
    view["batches"] = [
        (h.base_offset, h.last_offset_delta, h.record_count, h.partition_leader_epoch)
        for h in wire.batch_headers(answer["records"])
    ]
    return view


def test_offsets_high_watermarks_and_stored_bytes(targets: Targets) -> None:
    topic = unique("offsets")
    ts = _now_ms() - 60_000
    batches = [_batch(1, ts, "a"), _batch(5, ts + 10, "b"), _batch(2, ts + 20, "c")]

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        out: dict[str, Any] = {"produce": [produce(t, topic, 0, b) for b in batches]}
        # From the start, mid-batch (Kafka returns the whole batch holding the offset), the
        # log end (empty, no error), past it (OFFSET_OUT_OF_RANGE), and far past it.
        for offset in (0, 1, 3, 6, 7, 8):
            out[f"fetch@{offset}"] = _fetch_view(fetch(t, topic, 0, offset))
        for offset in (9, 1000):
            # Only the error here: the offsets Kafka fills in are checked by the next test.
            out[f"fetch@{offset}"] = fetch(t, topic, 0, offset)["error_code"]
        out["latest"] = list_offsets(t, topic, 0, -1)
        return out

    answer = targets.compare(scenario, "produce three batches, fetch at every position")
    assert [p["base_offset"] for p in answer["produce"]] == [0, 1, 6]
    assert answer["fetch@8"]["high_watermark"] == 8
    assert answer["fetch@9"] == OFFSET_OUT_OF_RANGE


def test_fetch_out_of_range_answers_unknown_offsets(targets: Targets) -> None:
    topic = unique("out-of-range")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        produce(t, topic, 0, _batch(2, _now_ms()))
        return fetch(t, topic, 0, 5)

    answer = targets.compare(scenario, "fetch past the log end")
    assert answer["error_code"] == OFFSET_OUT_OF_RANGE


@pytest.mark.parametrize(("produce_version", "fetch_version"), [(3, 4), (7, 10), (8, 11), (11, 12)])
def test_every_version(targets: Targets, produce_version: int, fetch_version: int) -> None:
    topic = unique(f"v{produce_version}")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "produce": [
                produce(t, topic, 0, _batch(n, ts, f"b{n}"), version=produce_version)
                for n in (1, 3)
            ],
            "fetch": _fetch_view(fetch(t, topic, 0, 1, version=fetch_version)),
        }

    targets.compare(scenario, f"Produce v{produce_version}, Fetch v{fetch_version}")


def test_fetch_size_limits_return_at_least_one_batch(targets: Targets) -> None:
    topic = unique("limits")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        for partition in (0, 1):
            for i in range(3):
                produce(t, topic, partition, _batch(4, ts, f"p{partition}b{i}", size=50))
        out: dict[str, Any] = {}
        # Below one batch: Kafka still returns the first whole batch (KIP-74), and the
        # response limit is then used up, so the second partition gets nothing.
        for max_bytes in (1, 100, 600, 1 << 20):
            request = fetch_request_many([(topic, 0, 0), (topic, 1, 0)], max_bytes=max_bytes)
            response = t.request(request)
            out[f"max_bytes={max_bytes}"] = [
                (
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    [(h.base_offset, h.record_count) for h in wire.batch_headers(p.records or b"")],
                )
                for r in response.responses
                for p in r.partitions
            ]
        return out

    targets.compare(scenario, "fetch with response and partition byte limits")


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_batches_stored_and_fetched_as_sent(targets: Targets, codec: str) -> None:
    topic = unique(f"codec-{codec}")
    ts = _now_ms() - 60_000
    batches = [_batch(20, ts, "a", 100, codec=codec), _batch(7, ts + 100, "b", 100, codec=codec)]

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "produce": [produce(t, topic, 0, b) for b in batches],
            "fetch": _fetch_view(fetch(t, topic, 0, 0)),
            "fetch@25": _fetch_view(fetch(t, topic, 0, 25)),
        }

    targets.compare(scenario, f"{codec} batches")


def test_acks_zero_and_one(targets: Targets) -> None:
    topic = unique("acks")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        with t.connect() as conn:
            # acks=0: no response at all; the next request's answer proves it was handled.
            request = wire.produce_request(topic, 0, _batch(3, ts), acks=0)
            request.with_header(correlation_id=wire.next_correlation_id(), client_id="ref")
            conn.send_raw(bytes(request.encode(header=True, framed=True)))
            acks1 = produce(t, topic, 0, _batch(2, ts), acks=1, conn=conn)
        return {"acks1": acks1, "latest": list_offsets(t, topic, 0, -1)}

    answer = targets.compare(scenario, "acks=0 then acks=1")
    assert answer["acks1"]["base_offset"] == 3


def test_unknown_topics_and_partitions(targets: Targets) -> None:
    topic = unique("known")
    missing = unique("missing")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 2)
        out: dict[str, Any] = {
            # Produce never auto-creates, even with auto.create.topics.enable=true.
            "produce missing topic": produce(t, missing, 0, _batch(1, ts)),
            "produce partition 2 of 2": produce(t, topic, 2, _batch(1, ts)),
            "fetch missing topic": fetch(t, missing, 0, 0),
            "fetch partition 5 of 2": fetch(t, topic, 5, 0),
            "list offsets partition 2": list_offsets(t, topic, 2, -1),
            "list offsets missing topic": list_offsets(t, missing, 0, -1),
        }
        # ... and did not create it.
        meta = t.request(metadata_request([missing], auto_create=False))
        out["metadata after"] = [(x.name, x.error_code) for x in meta.topics]
        return out

    answer = targets.compare(scenario, "unknown topics and partitions")
    assert answer["produce missing topic"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION


def test_corrupt_batch_and_bad_acks(targets: Targets) -> None:
    topic = unique("bad")
    ts = _now_ms() - 60_000

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "flipped crc": produce(t, topic, 0, wire.with_flipped_crc(_batch(2, ts))),
            "acks=2": produce(t, topic, 0, _batch(1, ts), acks=2),
            "acks=-2": produce(t, topic, 0, _batch(1, ts), acks=-2),
            "still empty": list_offsets(t, topic, 0, -1)["offset"],
        }

    answer = targets.compare(scenario, "corrupt batch and invalid acks")
    assert answer["flipped crc"]["error_code"] == CORRUPT_MESSAGE
    assert answer["acks=2"]["error_code"] == INVALID_REQUIRED_ACKS


def test_message_too_large(targets: Targets) -> None:
    small = unique("small-limit")
    default = unique("default-limit")
    ts = _now_ms() - 60_000
    limit = 2_000
    kafka_default = 1_048_588  # message.max.bytes: 1 MiB + the 12-byte log overhead

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, small, 1, {"max.message.bytes": str(limit)})
        create_topic(t, default, 1)
        return {
            "at the limit": produce(t, small, 0, batch_of_size(limit, ts)),
            "one byte over": produce(t, small, 0, batch_of_size(limit + 1, ts)),
            # The limit applies to the batch as sent: compressed below it passes, even
            # though it decompresses to far more.
            "compressed under, raw over": produce(
                t, small, 0, _batch(50, ts, "c", 200, codec="gzip")
            ),
            "default at limit": produce(t, default, 0, batch_of_size(kafka_default, ts)),
            "default over": produce(t, default, 0, batch_of_size(kafka_default + 1, ts)),
            "ends": [list_offsets(t, small, 0, -1), list_offsets(t, default, 0, -1)],
        }

    answer = targets.compare(scenario, "batches at and over max.message.bytes")
    assert answer["one byte over"]["error_code"] == MESSAGE_TOO_LARGE
    assert answer["default over"]["error_code"] == MESSAGE_TOO_LARGE


def test_timestamps_within_the_allowed_window(targets: Targets) -> None:
    topic = unique("ts-window")
    now = _now_ms()

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "a minute ahead": produce(t, topic, 0, _batch(1, now + 60_000)),
            "a year ago": produce(t, topic, 0, _batch(1, now - 365 * 24 * HOUR_MS)),
            "the epoch": produce(t, topic, 0, _batch(1, 0)),
        }

    answer = targets.compare(scenario, "record timestamps in the past and near future")
    assert answer["a minute ahead"]["error_code"] == NONE


def test_timestamp_over_an_hour_ahead_is_invalid(targets: Targets) -> None:
    topic = unique("ts-ahead")

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1)
        return {
            "two hours ahead": produce(t, topic, 0, _batch(1, _now_ms() + 2 * HOUR_MS)),
            "stored": list_offsets(t, topic, 0, -1)["offset"],
        }

    answer = targets.compare(scenario, "a record timestamp two hours ahead")
    assert answer["two hours ahead"]["error_code"] == INVALID_TIMESTAMP


def test_log_append_time_topic(targets: Targets) -> None:
    topic = unique("append-time")
    ts = _now_ms() - HOUR_MS

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1, {"message.timestamp.type": "LogAppendTime"})
        before = _now_ms()
        answer = produce(t, topic, 0, _batch(3, ts))
        after = _now_ms()
        appended = answer.pop("log_append_time_ms")
        answer["log_append_time is now"] = before - 1000 <= appended <= after + 1000
        fetched = fetch(t, topic, 0, 0)
        (header,) = wire.batch_headers(fetched["records"])
        return {
            "produce": answer,
            "timestamp type bit": header.attributes & 0x08,
            "max timestamp is the append time": header.max_timestamp == appended,
            "first timestamp kept": header.base_timestamp == ts,
        }

    targets.compare(scenario, "a LogAppendTime topic")
