"""The ZooKeeper fixture itself: a real server that answers, chroots that isolate tests."""

from __future__ import annotations

from collections.abc import Callable

from helpers.zookeeper import ZooKeeperServer, four_letter_word
from kazoo.client import KazooClient


def test_server_answers_ruok(zookeeper: ZooKeeperServer) -> None:
    assert four_letter_word(zookeeper.host, zookeeper.port, b"ruok") == b"imok"


def test_chroot_starts_empty(kazoo_factory: Callable[..., KazooClient]) -> None:
    client = kazoo_factory()
    assert client.get_children("/") == []
    client.create("/x", b"1")
    assert client.get("/x")[0] == b"1"
