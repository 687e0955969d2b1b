"""The pytest plugin: its fixture, and a sample project that uses it with confluent-kafka
and aiokafka, run as its own pytest session."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from metamorphostreams.client import Admin, NewTopic, Producer
from metamorphostreams.pytest_plugin import BrokerThread

SAMPLE = Path(__file__).resolve().parents[1] / "sample_project"
RUN_LIMIT_S = 240.0


def _plugin_args() -> list[str]:
    registered = any(
        ep.value == "metamorphostreams.pytest_plugin" for ep in entry_points(group="pytest11")
    )
    return [] if registered else ["-p", "metamorphostreams.pytest_plugin"]


def test_sample_project_passes_with_the_fixture() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *_plugin_args(),
            "--rootdir",
            str(SAMPLE),
            "-c",
            str(SAMPLE / "pytest.ini"),
            str(SAMPLE),
        ],
        cwd=SAMPLE,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout, result.stdout


def test_broker_thread_restart_keeps_data(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data") as broker:
        first = broker.bootstrap
        with Admin({"bootstrap.servers": broker.bootstrap}) as admin:
            admin.create_topics([NewTopic("kept", 1)])
        with Producer({"bootstrap.servers": broker.bootstrap}) as producer:
            producer.send("kept", b"v")
        broker.restart()
        assert broker.bootstrap == first
        with Admin({"bootstrap.servers": broker.bootstrap}) as admin:
            assert "kept" in admin.list_topics()
