"""DescribeLogDirs: our answers are Kafka's for the same partitions and batches (sizes,
lags, absent topics and partitions, every version), and Kafka's own kafka-log-dirs tool
(LogDirsCommand) reads our broker."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers.broker_process import BrokerProcess
from helpers.reference_kafka import ensure_libs, java_executable, require_reference_kafka
from kafka.protocol.admin import DescribeLogDirsRequest

from .batches import batch
from .differential import NONE, Target, Targets, create_topic, produce, unique

pytestmark = pytest.mark.timeout(180)

# The log dir's path and its volume's space are the machine's, not the broker's.
MACHINE = frozenset({"throttle_time_ms", "log_dir", "total_bytes", "usable_bytes"})
TOOL_CLASSES = ("org/apache/kafka/tools/LogDirsCommand.class", "kafka/admin/LogDirsCommand.class")
TOOL_LIMIT_S = 120.0


def _request(version: int, topics: dict[str, list[int]] | None) -> Any:
    ask = DescribeLogDirsRequest.DescribableLogDirTopic
    return DescribeLogDirsRequest[version](
        topics=None if topics is None else [ask(topic=t, partitions=p) for t, p in topics.items()]
    )


def _answer(response: Any, topic: str, *, only: bool = False) -> dict[str, Any]:
    """One response without what differs by machine, partitions in order; ``only``: ``topic``
    alone (a null request lists every topic of the broker, and the reference is shared)."""
    out: dict[str, Any] = {"error_code": response.to_dict().get("error_code"), "results": []}
    for result in response.results:
        topics = sorted(
            (
                {
                    "name": t.name,
                    "partitions": sorted(
                        (p.to_dict() for p in t.partitions), key=lambda p: p["partition_index"]
                    ),
                }
                for t in result.topics
                if not only or t.name == topic
            ),
            key=lambda t: t["name"],
        )
        d = result.to_dict()
        for key in MACHINE:
            d.pop(key, None)
        d["topics"] = topics
        out["results"].append(d)
    return out


def test_describe_log_dirs_is_kafkas(targets: Targets) -> None:
    topic = unique("logdirs")
    ts = int(time.time() * 1000)
    batches = {0: [batch(3, ts, "a"), batch(5, ts, "b", 40)], 2: [batch(1, ts, "c", 500)]}

    def setup(t: Target) -> None:
        create_topic(t, topic, 3)
        for partition, sent in batches.items():
            for b in sent:
                assert produce(t, topic, partition, b)["error_code"] == NONE

    for t in targets:
        setup(t)

    def scenario(t: Target) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for version in range(1, 6):
            asked = {topic: [0, 1, 2, 9], unique("missing"): [0]}
            out[f"v{version} asked"] = _answer(t.request(_request(version, asked)), topic)
            empty = {topic: []}
            out[f"v{version} no partitions"] = _answer(t.request(_request(version, empty)), topic)
            out[f"v{version} none"] = _answer(t.request(_request(version, {})), topic)
            every = _answer(t.request(_request(version, None)), topic, only=True)
            out[f"v{version} every"] = every
        return out

    kafka = targets.compare(scenario, "DescribeLogDirs", drop=MACHINE)
    sizes = [
        p["partition_size"] for p in kafka["v5 asked"]["results"][0]["topics"][0]["partitions"]
    ]
    assert sizes[0] > 0 and sizes[1] == 0 and sizes[2] > 0


def test_describe_log_dirs_volume_fields(targets: Targets) -> None:
    """Total and usable bytes from v4: each broker's own volume, usable within total."""
    for t in targets:
        for version in (3, 4):
            [result] = t.request(_request(version, {})).results
            assert result.error_code == NONE and Path(result.log_dir).is_absolute()
            if version >= 4:
                assert 0 <= result.usable_bytes <= result.total_bytes, (t, result)


# -- Kafka's kafka-log-dirs.sh against our broker ------------------------------------------


def _tool_class(libs: Path) -> str:
    for jar in libs.glob("kafka*.jar"):
        with zipfile.ZipFile(jar) as z:
            names = set(z.namelist())
        for cls in TOOL_CLASSES:
            if cls in names:
                return cls.removesuffix(".class").replace("/", ".")
    raise AssertionError(f"LogDirsCommand is in no jar of {libs}")


def _log_dirs_tool(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    libs = ensure_libs()
    return subprocess.run(
        [
            java_executable(),
            "-cp",
            f"{libs.resolve()}/*",
            _tool_class(libs),
            "--bootstrap-server",
            bootstrap,
            "--describe",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=TOOL_LIMIT_S,
        check=False,
    )


def _segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    return sum(p.stat().st_size for p in (data_dir / f"{topic}-{partition}").glob("*.log"))


def test_kafka_log_dirs_tool_reads_our_broker(broker: BrokerProcess) -> None:
    require_reference_kafka()
    ours = Target("ours", broker.bootstrap)
    ts = int(time.time() * 1000)
    create_topic(ours, "tooled", 2)
    create_topic(ours, "other", 1)
    assert produce(ours, "tooled", 1, batch(4, ts))["error_code"] == NONE

    done = _log_dirs_tool(broker.bootstrap, "--topic-list", "tooled")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "Querying brokers for log directories information" in lines
    assert "Received log directory information from brokers 0" in lines
    [data] = [json.loads(line) for line in lines if line.startswith("{")]
    assert data["version"] == 1
    [entry] = data["brokers"]
    assert entry["broker"] == 0
    [log_dir] = entry["logDirs"]
    assert log_dir["logDir"] == str(broker.data_dir.absolute())
    assert log_dir["error"] is None
    partitions = {p["partition"]: p for p in log_dir["partitions"]}
    assert sorted(partitions) == ["tooled-0", "tooled-1"]
    for p in range(2):
        found = partitions[f"tooled-{p}"]
        assert found["size"] == _segment_bytes(broker.data_dir, "tooled", p)
        assert found["offsetLag"] == 0 and found["isFuture"] is False
    assert partitions["tooled-1"]["size"] > 0

    everything = _log_dirs_tool(broker.bootstrap)
    assert everything.returncode == 0, everything.stdout + everything.stderr
    [data] = [json.loads(line) for line in everything.stdout.splitlines() if line.startswith("{")]
    listed = {p["partition"] for p in data["brokers"][0]["logDirs"][0]["partitions"]}
    assert listed == {"tooled-0", "tooled-1", "other-0"}

    refused = _log_dirs_tool(broker.bootstrap, "--broker-list", "0,5")
    assert refused.returncode == 1
    assert "The given brokers do not exist from --broker-list: 5" in refused.stderr
