"""Kafka's own DumpLogSegments (kafka-dump-log) reads the segments our cleaner writes: deep
iteration, index checks and transaction indexes, without an error or index mismatch."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from storage.cleaner_helpers import T0, all_batches, keyed, new_cleaner, open_manager, put

from metamorphostreams.protocol.errors import ErrorCode
from metamorphostreams.protocol.record_batch import CompressionType

LIBS = Path(
    os.environ.get(
        "MMS_REFERENCE_KAFKA_LIBS",
        Path(__file__).resolve().parents[2] / "tools" / "reference-kafka" / "target" / "lib",
    )
)


_CLASSES = ("kafka/tools/DumpLogSegments.class", "org/apache/kafka/tools/DumpLogSegments.class")


def _dump_class() -> str | None:
    """DumpLogSegments' class name in the jars (Kafka 4.x moved it to kafka-tools)."""
    for jar in LIBS.glob("*.jar"):
        with zipfile.ZipFile(jar) as z:
            names = set(z.namelist())
        for cls in _CLASSES:
            if cls in names:
                return cls.removesuffix(".class").replace("/", ".")
    return None


def _dump(main_class: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "java",
            "-cp",
            f"{LIBS}/*",
            main_class,
            "--deep-iteration",
            "--print-data-log",
            "--files",
            ",".join(str(f) for f in files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_dump_log_segments_reads_cleaned_segments(tmp_path: Path) -> None:
    if shutil.which("java") is None or not any(LIBS.glob("kafka_2.13-*.jar")):
        if os.environ.get("CI") == "true":
            pytest.fail("Java or the reference Kafka jars are missing")
        pytest.skip("needs Java and tools/reference-kafka/target/lib")
    main_class = _dump_class()
    assert main_class is not None, "DumpLogSegments is in no jar of tools/reference-kafka"
    manager = open_manager(tmp_path)
    log = manager.create_log("t", 0)
    for r in range(6):
        put(log, [(b"k%d" % k, b"v%d" % r) for k in range(4)], compression=CompressionType.GZIP)
        put(log, [(b"gone-%d" % r, None)])
    records = keyed([(b"k1", b"aborted")], pid=3, epoch=0, seq=0, transactional=True)
    assert log.append_as_leader(records, leader_epoch=0, now_ms=T0).error == ErrorCode.NONE
    log.append_control_marker(3, 0, commit=False, coordinator_epoch=0, leader_epoch=0, now_ms=T0)
    for r in range(6):
        put(log, [(b"k%d" % k, b"w%d" % r) for k in range(4)])
    log.roll()
    assert new_cleaner(manager).clean_once(T0)
    assert any(h.has_delete_horizon for h, _ in all_batches(log))
    cleaned = log.segments[0]
    files = [cleaned.log_path, cleaned.offset_index.path, cleaned.time_index.path]
    if cleaned.txn_index.path.exists():
        files.append(cleaned.txn_index.path)
    manager.close()

    result = _dump(main_class, files)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Exception" not in output, output
    assert "Mismatches" not in output and "mismatch" not in output.lower(), output
    assert "isvalid: true" in output
    assert "deleteHorizonMs" in output or "tombstone" in output.lower() or "payload" in output
