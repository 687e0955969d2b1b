"""Fixtures for our clients' tests: a fresh in-process broker per test (real socket)."""

from __future__ import annotations

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


@pytest.fixture
def bootstrap(broker_thread: BrokerThread) -> str:
    return broker_thread.bootstrap


def serves_api(bootstrap: str, api_key: int) -> bool:
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        return admin.supports(api_key)


JOIN_GROUP = 11
CONSUMER_GROUP_HEARTBEAT = 68


def require_groups(bootstrap: str) -> None:
    """Group tests run once the broker advertises JoinGroup (the consumer-groups issue)."""
    if not serves_api(bootstrap, JOIN_GROUP):
        pytest.skip("the broker does not serve consumer groups yet (JoinGroup not advertised)")
