"""`bench/run.py --quick` end to end: both brokers start, every figure is measured, and the
JSON it writes is well formed. Figures are never asserted: a benchmark's numbers belong in
its table, not in a test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.reference_kafka import require_reference_kafka

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = REPO_ROOT / "bench" / "run.py"
RUN_LIMIT_S = 600.0  # a hang guard only; the quick run takes about a minute here
REQUIRED = {
    "produce_1k_acks1_mbps",
    "produce_1k_acksall_mbps",
    "produce_100b_acks1_msgps",
    "consume_mbps",
    "produce_p99_ms",
    "cpu_s_per_gb",
    "startup_s",
    "idle_rss_mb",
    "txn_produce_mbps",
    "txn_commit_p50_ms",
    "txn_commit_p99_ms",
    "consume_read_committed_mbps",
    "consume_read_uncommitted_mbps",
    "consume_client_read_committed_mbps",
    "consume_client_read_uncommitted_mbps",
}


@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    require_reference_kafka()
    out = tmp_path / "latest.json"
    env = dict(os.environ)
    env.pop("MMS_E2E_LAUNCHER", None)  # "ours" must be ours, not Kafka behind the launcher
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, f"bench/run.py --quick failed:\n{done.stdout}\n{done.stderr}"
    assert "ours/kafka" in done.stdout  # the table was printed

    rows = json.loads(out.read_text())
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == {"name", "unit", "ours", "kafka", "ratio"}, row
        assert isinstance(row["name"], str) and isinstance(row["unit"], str)
    by_name = {row["name"]: row for row in rows}
    assert len(by_name) == len(rows), "duplicate figure names"
    assert REQUIRED <= set(by_name), f"missing figures: {sorted(REQUIRED - set(by_name))}"
    for name in REQUIRED:
        for key in ("ours", "kafka", "ratio"):
            value = by_name[name][key]
            assert isinstance(value, int | float) and math.isfinite(value), (name, key, value)
