"""SIGKILL while the log cleaner works: a compacted topic is fed updates (some tombstones)
with ``acks=all``, one request at a time, while the broker cleans it almost continuously
(1 MiB segments, ``min.cleanable.dirty.ratio`` 0.01, ``log.cleaner.backoff.ms`` 50); the
broker is SIGKILLed ``KILLS`` times, at random moments, half of them as soon as a ``.cleaned``
or ``.swap`` file is seen (a cleaning or a swap in progress), and restarted on the same data
directory.

After each restart: the ``.cleaned``/``.swap`` files the crash left (by name and inode) are
gone, and the log read from the beginning holds, for every key, the last value acknowledged
(a tombstone counts as a value: ``delete.retention.ms`` is a day). At the end, a restart with
the cleaner off shows no ``.cleaned``/``.swap`` file at all, and every segment reads end to
end (lengths, CRCs, increasing offsets, indexes that point at batches).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path

import pytest
from helpers import kafka_wire as wire
from helpers.broker_process import BrokerFactory, BrokerProcess
from helpers.confluent import create_topic

from metamorphostreams.protocol.records import decode_batch

from .conftest import Figures
from .support import index_problems, scan_partition

KILLS = 10
UP_S = (0.5, 2.5)  # random time the broker runs (and is fed) before a kill
KEYS = 2_000
PER_BATCH = 500
PADDING = b"x" * 150  # ~180 B a record: a 1 MiB segment every ~12 requests
TOMBSTONE_EVERY = 20
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(1024 * 1024),
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": str(24 * 3600 * 1000),
    "file.delete.delay.ms": "500",
}
LEFTOVER_SUFFIXES = (".cleaned", ".swap")

FileId = tuple[str, int, int]  # name, inode, mtime


def _leftovers(partition_dir: Path) -> set[FileId]:
    found: set[FileId] = set()
    for name in os.listdir(partition_dir):
        if name.endswith(LEFTOVER_SUFFIXES):
            try:
                st = os.stat(partition_dir / name)
            except FileNotFoundError:
                continue
            found.add((name, st.st_ino, st.st_mtime_ns))
    return found


def _latest(bootstrap: str, topic: str) -> tuple[dict[bytes, bytes | None], int]:
    """The last value of every key from offset 0 on, checking offsets strictly increase;
    (latest per key, records read)."""
    latest: dict[bytes, bytes | None] = {}
    offset, count, previous = 0, 0, -1
    with wire.WireConnection(bootstrap) as conn:
        while True:
            response = conn.request(wire.fetch_request(topic, 0, offset, max_bytes=8 << 20))
            part = wire.fetch_partition_response(response)
            assert part.error_code == 0, f"fetch at {offset}: error {part.error_code}"
            data = bytes(part.records or b"")
            pos = 0
            while len(data) - pos >= 12:
                length = int.from_bytes(data[pos + 8 : pos + 12], "big", signed=True)
                if pos + 12 + length > len(data):
                    break
                header, records = decode_batch(data, pos)
                for r in records:
                    assert r.offset > previous, f"offset {r.offset} after {previous}"
                    previous = r.offset
                    assert r.key is not None
                    latest[r.key] = r.value
                    count += 1
                offset = max(offset, header.last_offset + 1)
                pos += header.size
            if offset >= part.high_watermark or pos == 0:
                return latest, count


def _check(broker: BrokerProcess, topic: str, acked: dict[bytes, bytes | None], ctx: str) -> int:
    latest, count = _latest(broker.bootstrap, topic)
    lost = [k for k, v in acked.items() if latest.get(k, b"<absent>") != v]
    assert not lost, (
        f"{len(lost)} keys lost their last acknowledged value, e.g. "
        f"{[(k, acked[k], latest.get(k, b'<absent>')) for k in lost[:3]]}; {ctx}"
    )
    extra = sorted(set(latest) - set(acked))
    assert not extra, f"keys never acknowledged: {extra[:5]}; {ctx}"
    return count


@pytest.mark.timeout(240)
def test_kill_9_while_cleaning_keeps_every_latest_value(
    broker_factory: BrokerFactory, figures: Figures
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = broker_factory({"log.cleaner.backoff.ms": 50})
    topic = f"compaction-crash-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1, config=TOPIC_CONFIGS)
    partition_dir = broker.data_dir / f"{topic}-0"

    acked: dict[bytes, bytes | None] = {}
    seq = 0
    kills_in_cleaning = 0
    left_by_kills = 0
    records_read: list[int] = []

    def produce_one(conn: wire.WireConnection) -> None:
        nonlocal seq
        updates: list[tuple[bytes, bytes | None]] = []
        for _ in range(PER_BATCH):
            key = b"key-%05d" % rng.randrange(KEYS)
            seq += 1
            value = None if seq % TOMBSTONE_EVERY == 0 else b"%d-" % seq + PADDING
            updates.append((key, value))
        batch = wire.build_record_batch(
            [wire.Record(k, v) for k, v in updates], base_timestamp=int(time.time() * 1000)
        )
        got = wire.produce_partition_response(
            conn.request(wire.produce_request(topic, 0, batch, acks=-1))
        )
        assert got.error_code == 0, f"produce: error {got.error_code}"
        acked.update(updates)

    for kill in range(KILLS):
        ctx = f"kill {kill + 1}, seed {seed}"
        wait_for_cleaning = kill % 2 == 1
        until = time.monotonic() + rng.uniform(*UP_S)
        with wire.WireConnection(broker.bootstrap) as conn:
            while True:
                produce_one(conn)
                now = time.monotonic()
                if now < until:
                    continue
                if not wait_for_cleaning or _leftovers(partition_dir) or now > until + 5:
                    break
        left = _leftovers(partition_dir)
        broker.kill()
        left |= _leftovers(partition_dir)
        kills_in_cleaning += bool(left)
        left_by_kills += len(left)
        broker.start()
        still = left & _leftovers(partition_dir)
        assert not still, f"left behind after recovery: {sorted(still)}; {ctx}"
        records_read.append(_check(broker, topic, acked, ctx))

    broker.kill()
    broker.settings["log.cleaner.enable"] = "false"
    broker.start()
    ctx = f"final restart, cleaner off, seed {seed}"
    assert not _leftovers(partition_dir), f"{sorted(_leftovers(partition_dir))}; {ctx}"
    for scan in scan_partition(partition_dir):
        assert scan.clean, f"{scan.path.name}: {scan.problem}; {ctx}"
        problems = index_problems(scan.path, scan)
        assert not problems, f"{scan.path.name}: {problems[:3]}; {ctx}"
    final = _check(broker, topic, acked, ctx)

    figures("kills", KILLS)
    figures("kills with a .cleaned/.swap file on disk", kills_in_cleaning)
    figures(".cleaned/.swap files left by kills (all removed)", left_by_kills)
    figures("records produced / keys", (seq, len(acked)))
    figures("records in the log after each restart", records_read)
    figures("records at the end", final)
    figures("cleanings logged", broker.stderr_text().count("cleaned up to offset"))
    figures("seed", seed)
