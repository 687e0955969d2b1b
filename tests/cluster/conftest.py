"""A real ZooKeeper for the cluster tests: one server per session, one chroot per test."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from helpers.broker_process import BrokerProcess
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


# -- real broker processes in a cluster ------------------------------------------------------

SESSION_TIMEOUT_MS = 2000  # a killed broker's registration goes away within ~2 s


def _metadata_brokers(bootstrap: str) -> list[int]:
    from helpers.kafka_wire import metadata

    return [b.node_id for b in metadata(bootstrap, []).brokers]


class BrokerCluster:
    """N `mms broker --zookeeper` processes on one chroot of the session's ZooKeeper."""

    def __init__(self, zk_connect: str, root: Path, count: int) -> None:
        self.zk_connect = zk_connect
        self.root = root
        self.brokers = [self.new_broker(i) for i in range(count)]

    def new_broker(self, broker_id: int, data_dir: Path | None = None) -> BrokerProcess:
        return BrokerProcess(
            data_dir or self.root / f"data-{broker_id}",
            self.root / f"logs-{broker_id}-{uuid.uuid4().hex[:6]}",
            broker_id=broker_id,
            settings={
                "zookeeper.connect": self.zk_connect,
                "zookeeper.session.timeout.ms": SESSION_TIMEOUT_MS,
                "offsets.topic.num.partitions": 6,
                "log.flush.offset.checkpoint.interval.ms": 200,
            },
        )

    def start(self) -> BrokerCluster:
        errors: list[BaseException] = []

        def start(b: BrokerProcess) -> None:
            try:
                b.start()
            except BaseException as e:  # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=start, args=(b,)) for b in self.brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_for_membership()
        return self

    def wait_for_membership(self, limit_s: float = 30.0) -> None:
        """Until every running broker's metadata lists every running broker (registrations
        reach the others through ZooKeeper watches, a moment after each start)."""
        running = [b for b in self.brokers if b.running]
        want = sorted(b.broker_id for b in running)
        deadline = time.monotonic() + limit_s
        for broker in running:
            while sorted(_metadata_brokers(broker.bootstrap)) != want:
                if time.monotonic() > deadline:
                    raise AssertionError(f"broker {broker.broker_id} never saw brokers {want}")
                time.sleep(0.05)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def close(self) -> None:
        for b in self.brokers:
            b.close()


def new_chroot(zookeeper: ZooKeeperServer) -> str:
    chroot = unique_chroot()
    root = KazooClient(hosts=zookeeper.connect_string)
    root.start(timeout=CONNECT_TIMEOUT_S)
    try:
        root.ensure_path(chroot)
    finally:
        root.stop()
        root.close()
    return zookeeper.connect_string + chroot


@pytest.fixture(scope="module")
def cluster3(
    zookeeper: ZooKeeperServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerCluster]:
    """Three brokers that joined one cluster (shared by a module's tests)."""
    cluster = BrokerCluster(new_chroot(zookeeper), tmp_path_factory.mktemp("cluster3"), 3)
    try:
        yield cluster.start()
    finally:
        cluster.close()
