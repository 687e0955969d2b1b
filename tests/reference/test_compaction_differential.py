"""Compaction against Apache Kafka: the same updates, over many keys and with tombstones,
produced to a compacted topic on both brokers; once both have cleaned, a consumer from the
beginning sees on each exactly the latest value per live key, no key tombstoned more than
``delete.retention.ms`` ago, offsets strictly increasing, and the same records at the same
offsets on both.

Two phases. Phase 1: ``UPDATES`` records over ``KEYS`` keys, ending with tombstones for
``TOMBSTONED`` of them, then (after ``segment.ms``) one marker record that rolls the active
segment so that every update is cleanable. Both brokers are polled (the ``.log`` bytes of the
partition directory on disk, then the records from the beginning) until each shows the latest
value per key, tombstones still there: their delete horizon is set by the cleaning that
first keeps them. Phase 2, once ``delete.retention.ms`` has passed: a tenth as many updates of
live keys and another marker; the next cleaning (dirty again) rewrites the whole log and must
drop every tombstone, whose horizon has passed.

Kafka runs here with its own node (module scope), as the shared one of the session keeps
Kafka's default ``log.cleaner.backoff.ms`` of 15 s. The issue's full size (1,000,000 updates,
10,000 keys, 1,000 tombstoned) is what runs; ``MMS_COMPACTION_UPDATES`` scales it down.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory
from helpers.reference_kafka import ReferenceKafka, require_reference_kafka

from metamorphostreams.protocol.records import decode_batch

from .differential import NONE, Target, create_topic, fetch, produce, unique, wait_until

pytestmark = pytest.mark.timeout(300)

UPDATES = int(os.environ.get("MMS_COMPACTION_UPDATES", "1000000"))
KEYS = max(UPDATES // 100, 10)
TOMBSTONED = max(KEYS // 10, 1)
PER_BATCH = 5_000  # records per produced batch (~150 KB)
SEGMENT_BYTES = 1024 * 1024  # Kafka 4's minimum segment.bytes
SEGMENT_MS = 2_000
DELETE_RETENTION_MS = 2_000
CLEANER_BACKOFF_MS = 200
CLEAN_LIMIT_S = 180.0  # a liveness bound: both clean 30 MB in well under a minute here
# One marker key per phase: the marker sits in the active segment, which no cleaning reads,
# so a marker of the same key before it would never be known as superseded.
MARKER_KEY = b"~roll-%d"
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(SEGMENT_BYTES),
    "segment.ms": str(SEGMENT_MS),
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": str(DELETE_RETENTION_MS),
    "file.delete.delay.ms": "1000",
}

View = list[tuple[int, bytes | None, bytes | None]]  # (offset, key, value)


@pytest.fixture(scope="module")
def cleaning_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceKafka]:
    require_reference_kafka()
    kafka = ReferenceKafka(
        tmp_path_factory.mktemp("cleaning-kafka"),
        settings={"log.cleaner.backoff.ms": CLEANER_BACKOFF_MS},
    )
    try:
        kafka.start()
        yield kafka
    finally:
        try:
            kafka.stop()
        finally:
            kafka.close()


def _key(k: int) -> bytes:
    return b"k%06d" % k


def _batches(updates: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        wire.build_record_batch(
            [wire.Record(k, v) for k, v in updates[i : i + PER_BATCH]], base_timestamp=now
        )
        for i in range(0, len(updates), PER_BATCH)
    ]


def _produce_all(target: Target, topic: str, batches: list[bytes]) -> None:
    with target.connect() as conn:
        for b in batches:
            got = produce(target, topic, 0, b, acks=1, conn=conn)
            assert got["error_code"] == NONE, f"{target}: {got}"


def _log_bytes(partition_dir: Path) -> int:
    """The live ``.log`` files' bytes (not ``.deleted``/``.cleaned`` ones)."""
    total = 0
    for p in partition_dir.iterdir():
        if p.name.endswith(".log"):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
    return total


def _view(target: Target, topic: str) -> View:
    """Every record from offset 0 to the high watermark, as (offset, key, value)."""
    out: View = []
    offset = 0
    while True:
        got = fetch(target, topic, 0, offset, max_bytes=8 << 20)
        assert got["error_code"] == NONE, f"{target}: fetch at {offset}: {got['error_code']}"
        data = got["records"]
        pos = 0
        while len(data) - pos >= 12:
            length = int.from_bytes(data[pos + 8 : pos + 12], "big", signed=True)
            if pos + 12 + length > len(data):
                break  # a partial batch at the end of a response
            header, records = decode_batch(data, pos)
            out += [(r.offset, r.key, r.value) for r in records]
            offset = max(offset, header.last_offset + 1)
            pos += header.size
        if offset >= got["high_watermark"] or pos == 0:
            return out


def _problems(view: View, model: dict[bytes, bytes | None]) -> list[str]:
    """How a view differs from the latest value per key (empty when it is that)."""
    found: list[str] = []
    offsets = [o for o, _, _ in view]
    if any(b <= a for a, b in itertools.pairwise(offsets)):
        found.append("offsets not strictly increasing")
    keys = [k for _, k, _ in view]
    if len(keys) != len(set(keys)):
        found.append(f"{len(keys) - len(set(keys))} superseded records still there")
    seen = {k: v for _, k, v in view}
    if seen != model:
        missing = [k for k in model if k not in seen]
        extra = [k for k in seen if k not in model]
        wrong = [k for k in model if k in seen and seen[k] != model[k]]
        found.append(f"missing {missing[:5]} extra {extra[:5]} wrong {wrong[:5]}")
    return found


def _wait_cleaned(
    target: Target, topic: str, partition_dir: Path, model: dict[bytes, bytes | None]
) -> tuple[View, float]:
    """Poll until the records from the beginning are the model; (view, seconds waited)."""
    began = time.monotonic()
    # Cheap first: a cleaned log is a few hundred KB, the uncleaned one ~30 MB.
    small = 4 * SEGMENT_BYTES
    wait_until(
        lambda: _log_bytes(partition_dir) <= small,
        f"{target}: {topic} to shrink below {small} bytes on disk",
        CLEAN_LIMIT_S,
    )
    last: list[str] = []
    view: View = []

    def cleaned() -> bool:
        nonlocal view, last
        view = _view(target, topic)
        last = _problems(view, model)
        if last:
            time.sleep(0.5)
        return not last

    try:
        wait_until(cleaned, f"{target}: {topic} to be cleaned", CLEAN_LIMIT_S)
    except AssertionError as e:
        raise AssertionError(f"{e}; still: {last}") from None
    print(f"{target}: {topic} cleaned after {time.monotonic() - began:.1f} s", flush=True)
    return view, time.monotonic() - began


def _marker(n: int) -> list[bytes]:
    return _batches([(MARKER_KEY % n, b"roll")])


def test_compacted_topic_matches_kafka(
    cleaning_kafka: ReferenceKafka, broker_factory: BrokerFactory, record_property: Any
) -> None:
    ours_broker = broker_factory({"log.cleaner.backoff.ms": CLEANER_BACKOFF_MS})
    targets = {
        "kafka": (Target("kafka", cleaning_kafka.bootstrap), cleaning_kafka.data_dir),
        "ours": (Target("ours", ours_broker.bootstrap), ours_broker.data_dir),
    }
    topic = unique("compaction")
    began = time.monotonic()

    # Phase 1: UPDATES updates round-robin over KEYS keys, then TOMBSTONED tombstones.
    updates: list[tuple[bytes, bytes | None]] = [
        (_key(i % KEYS), b"v%d-%d" % (i % KEYS, i)) for i in range(UPDATES - TOMBSTONED)
    ]
    step = KEYS // TOMBSTONED
    tombstoned = {_key(k) for k in range(0, KEYS, step)}
    updates += [(k, None) for k in sorted(tombstoned)]
    model: dict[bytes, bytes | None] = dict(updates)
    batches = _batches(updates)
    for target, _ in targets.values():
        create_topic(target, topic, 1, configs=TOPIC_CONFIGS)
        _produce_all(target, topic, batches)
    produced_s = time.monotonic() - began
    print(f"\nproduced {len(updates)} records to both in {produced_s:.1f} s", flush=True)
    time.sleep(SEGMENT_MS / 1000 + 0.5)
    marker = _marker(1)
    model[MARKER_KEY % 1] = b"roll"
    for target, _ in targets.values():
        _produce_all(target, topic, marker)
    views1: dict[str, View] = {}
    waited1: dict[str, float] = {}
    for name, (target, data_dir) in targets.items():
        views1[name], waited1[name] = _wait_cleaned(target, topic, data_dir / f"{topic}-0", model)
    assert views1["ours"] == views1["kafka"], _diff(views1)
    assert sum(1 for _, _, v in views1["kafka"] if v is None) == len(tombstoned)

    # Phase 2: the tombstones' horizon passes; new updates make the log dirty again.
    time.sleep(DELETE_RETENTION_MS / 1000 + 0.5)
    live = sorted(k for k in model if k not in tombstoned and k != MARKER_KEY % 1)
    more = [(live[i % len(live)], b"w%d" % i) for i in range(UPDATES // 10)]
    model.update(more)
    for k in tombstoned:
        del model[k]
    batches = _batches(more)
    for target, _ in targets.values():
        _produce_all(target, topic, batches)
    time.sleep(SEGMENT_MS / 1000 + 0.5)
    marker = _marker(2)
    model[MARKER_KEY % 2] = b"roll"
    for target, _ in targets.values():
        _produce_all(target, topic, marker)
    views2: dict[str, View] = {}
    waited2: dict[str, float] = {}
    for name, (target, data_dir) in targets.items():
        views2[name], waited2[name] = _wait_cleaned(target, topic, data_dir / f"{topic}-0", model)
    assert views2["ours"] == views2["kafka"], _diff(views2)
    assert not any(k in tombstoned for _, k, _ in views2["ours"])

    record_property("updates", UPDATES)
    record_property("produce s", round(produced_s, 1))
    record_property("phase 1 clean wait s", {k: round(v, 1) for k, v in waited1.items()})
    record_property("phase 2 clean wait s", {k: round(v, 1) for k, v in waited2.items()})
    print(
        f"\n{UPDATES} updates / {KEYS} keys / {len(tombstoned)} tombstoned: produced to both "
        f"in {produced_s:.1f} s; clean waits phase 1 {waited1}, phase 2 {waited2}; "
        f"total {time.monotonic() - began:.1f} s"
    )


def _diff(views: dict[str, View]) -> str:
    kafka, ours = views["kafka"], views["ours"]
    k_only = sorted(set(kafka) - set(ours))
    o_only = sorted(set(ours) - set(kafka))
    return (
        f"the cleaned logs differ: {len(kafka)} records on Kafka, {len(ours)} on ours; "
        f"only Kafka's: {k_only[:5]}; only ours: {o_only[:5]}"
    )
