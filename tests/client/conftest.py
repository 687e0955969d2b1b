"""Fixtures for our clients' tests: a fresh in-process broker per test (real socket)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from metamorphostreams.client import Admin
from metamorphostreams.pytest_plugin import BrokerThread

DEFAULT_PARTITIONS = 3


@pytest.fixture
def broker_thread(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", {"num.partitions": str(DEFAULT_PARTITIONS)}) as broker:
        yield broker


EXTERNAL_ENV = "MMS_CLIENT_TEST_BOOTSTRAP"


@pytest.fixture
def bootstrap(request: pytest.FixtureRequest) -> str:
    """Our broker; or, with $MMS_CLIENT_TEST_BOOTSTRAP=host:port, another one (a fresh
    reference Apache Kafka: the tests use fixed topic names, so run them once per broker)."""
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        return external
    broker: BrokerThread = request.getfixturevalue("broker_thread")
    return broker.bootstrap


def serves_api(bootstrap: str, api_key: int) -> bool:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        return admin.supports(api_key)


JOIN_GROUP = 11
CONSUMER_GROUP_HEARTBEAT = 68


def require_groups(bootstrap: str) -> None:
    """Group tests run once the broker advertises JoinGroup (the consumer-groups issue)."""
    if not serves_api(bootstrap, JOIN_GROUP):
        pytest.skip("the broker does not serve consumer groups yet (JoinGroup not advertised)")
