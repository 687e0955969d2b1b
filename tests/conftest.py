"""Shared pytest fixtures: real brokers in subprocesses on loopback ports.

`broker` gives each test a fresh broker on a fresh data directory; `broker_factory` starts
brokers with extra Kafka config (`--set key=value`). Every broker is stopped with SIGTERM at
teardown, and a non-zero exit there fails the test's teardown: clean shutdown is part of the
contract. When a test fails, the tail of each of its brokers' stderr is attached to the report.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    # `helpers` is imported as a top-level package whatever pytest's rootdir/import mode is.
    sys.path.insert(0, _TESTS_DIR)

from helpers.broker_process import BrokerFactory, BrokerProcess  # noqa: E402

_BROKERS_ATTR = "_mms_brokers"


@pytest.fixture
def broker_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Generator[BrokerFactory, None, None]:
    """Start brokers: `broker_factory({"num.partitions": 3}, broker_id=0)`.

    Keyword options go to `BrokerProcess` (broker_id, port, config_file, launcher,
    unbuffered, ...). Each call gets its own data and log directories under tmp_path.
    """
    started: list[BrokerProcess] = []
    setattr(request.node, _BROKERS_ATTR, started)

    def start(settings: Mapping[str, object] | None = None, **options: Any) -> BrokerProcess:
        root = tmp_path / f"broker-{len(started)}"
        broker = BrokerProcess(data_dir=root / "data", log_dir=root, settings=settings, **options)
        started.append(broker)
        broker.start()
        return broker

    yield start

    problems: list[str] = []
    for broker in started:
        try:
            if broker.running:
                broker.stop()
        except AssertionError as exc:
            problems.append(str(exc))
        finally:
            broker.close()
    if problems:
        pytest.fail("clean shutdown failed at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """A fresh single broker with Kafka's default config."""
    return broker_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for broker in getattr(item, _BROKERS_ATTR, []):
            report.sections.append(
                (
                    f"broker {broker.bootstrap} stderr tail ({broker.stderr_path})",
                    broker.stderr_tail() or "(empty)",
                )
            )
    return report
