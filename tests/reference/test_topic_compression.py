"""A topic's compression.type, against Kafka and us: batches in another codec are stored in
the topic's; ``producer`` keeps the client's; records and producer fields are unchanged.

The compressed bytes themselves differ (Java's and Python's compressors are not the same
programs), so what is compared is each stored batch decoded: its codec, offsets, producer
fields and every record.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import kafka_wire as wire

from metamorphostreams.protocol.records import decode_batch

from .batches import batch, build_batch, records
from .differential import (
    NONE,
    Target,
    Targets,
    create_topic,
    fetch,
    produce,
    unique,
)

pytestmark = pytest.mark.timeout(120)

INVALID_RECORD = 87

CASES = [
    ("producer", "gzip"),
    ("lz4", "gzip"),
    ("gzip", "none"),
    ("uncompressed", "zstd"),
    ("zstd", "snappy"),
    ("snappy", "snappy"),
]


def _stored(records: bytes) -> list[dict[str, Any]]:
    view = []
    pos = 0
    while pos < len(records):
        header, decoded = decode_batch(records, pos)
        view.append(
            {
                "codec": header.compression.name,
                "base_offset": header.base_offset,
                "last_offset_delta": header.last_offset_delta,
                "producer": (header.producer_id, header.producer_epoch, header.base_sequence),
                "timestamps": (header.base_timestamp, header.max_timestamp),
                "records": [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decoded],
            }
        )
        pos += header.size
    return view


@pytest.mark.parametrize(("topic_codec", "sent_codec"), CASES)
def test_batches_stored_in_the_topic_codec(
    targets: Targets, topic_codec: str, sent_codec: str
) -> None:
    topic = unique(f"tc-{topic_codec}")
    ts = int(time.time() * 1000) - 60_000
    sent = batch(12, ts, "v", 200, codec=sent_codec, producer_id=-1)

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1, configs={"compression.type": topic_codec})
        produced = produce(t, topic, 0, sent)
        again = produce(t, topic, 0, batch(3, ts + 50, "w", 50, codec=sent_codec))
        fetched = fetch(t, topic, 0, 0)
        return {
            "produce": (produced["error_code"], produced["base_offset"]),
            "produce again": (again["error_code"], again["base_offset"]),
            "stored": _stored(fetched["records"]),
        }

    answer = targets.compare(scenario, f"compression.type={topic_codec}, {sent_codec} batches")
    assert list(answer["produce"]) == [NONE, 0]
    wanted = {"producer": sent_codec.upper(), "uncompressed": "NONE"}.get(
        topic_codec, topic_codec.upper()
    )
    assert {b["codec"] for b in answer["stored"]} == {wanted}


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_compacted_topic_refuses_records_without_a_key(targets: Targets, codec: str) -> None:
    topic = unique("compact-keys")
    ts = int(time.time() * 1000) - 60_000
    rows = records(4, "c", 20)
    rows[1] = wire.Record(None, rows[1].value, rows[1].headers, rows[1].timestamp_delta)
    rows[3] = wire.Record(None, rows[3].value, rows[3].headers, rows[3].timestamp_delta)
    keyless = build_batch(rows, base_timestamp=ts, codec=codec)

    def scenario(t: Target) -> dict[str, Any]:
        create_topic(t, topic, 1, configs={"cleanup.policy": "compact"})
        refused = produce(t, topic, 0, keyless)
        kept = produce(t, topic, 0, batch(2, ts, "k", 20, codec=codec))
        return {"refused": refused, "kept": kept, "log": fetch(t, topic, 0, 0)["high_watermark"]}

    answer = targets.compare(scenario, f"keyless records on a compacted topic ({codec})")
    assert answer["refused"]["error_code"] == INVALID_RECORD
    assert [e["batch_index"] for e in answer["refused"]["record_errors"]] == [1, 3]
    assert answer["log"] == 2
