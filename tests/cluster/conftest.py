"""A real ZooKeeper for the cluster tests: one server per session, one chroot per test."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import pytest
from helpers.zookeeper import ZooKeeperServer, require_zookeeper, unique_chroot
from kazoo.client import KazooClient

CONNECT_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper on a free loopback port; fails (not skips) with CI=true if absent."""
    require_zookeeper()
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_hosts(zookeeper: ZooKeeperServer) -> str:
    """`host:port/chroot` of a chroot of this test's own, created empty."""
    chroot = unique_chroot()
    root = KazooClient(hosts=zookeeper.connect_string)
    root.start(timeout=CONNECT_TIMEOUT_S)
    try:
        root.ensure_path(chroot)
    finally:
        root.stop()
        root.close()
    return zookeeper.connect_string + chroot


@pytest.fixture
def kazoo_factory(zk_hosts: str) -> Generator[Callable[..., KazooClient], None, None]:
    """Started KazooClients on this test's chroot (one per 'broker'); all stopped at teardown."""
    clients: list[KazooClient] = []

    def make(timeout: float = 4.0) -> KazooClient:
        client = KazooClient(hosts=zk_hosts, timeout=timeout)
        client.start(timeout=CONNECT_TIMEOUT_S)
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            client.stop()
        finally:
            client.close()
