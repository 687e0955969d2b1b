"""Broker registration and controller election against a real ZooKeeper."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from metamorphostreams.cluster import zk_paths as zp
from metamorphostreams.cluster.zk_controller import (
    BrokerRegistrationConflict,
    ControllerContext,
    ControllerElector,
    ControllerMovedError,
    read_controller_id,
    register_broker,
)
from metamorphostreams.cluster.zk_txn import SetDataOp

from .test_zk_store import wait_for

KazooFactory = Callable[..., KazooClient]
FAILOVER_S = 5.0  # the bound for a new controller after the old one died


def registration(broker_id: int, rack: str | None = None) -> zp.BrokerRegistration:
    return zp.BrokerRegistration(
        broker_id,
        (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9090 + broker_id),),
        rack=rack,
        timestamp_ms=int(time.time() * 1000),
    )


def expire_session(client: KazooClient, hosts: str) -> None:
    """Expire ``client``'s session as ZooKeeper would: another client joins it, then leaves."""
    sid, password = client.client_id
    other = KazooClient(hosts=hosts, client_id=(sid, password))
    other.start(timeout=10)
    other.stop()
    other.close()


class Candidate:
    """One broker's elector plus what its callbacks saw."""

    def __init__(self, client: KazooClient, broker_id: int) -> None:
        self.client = client
        self.elected: list[ControllerContext] = []
        self.resigned = 0
        self.elector = ControllerElector(
            client,
            registration(broker_id),
            on_elected=self.elected.append,
            on_resigned=self._resigned,
        )

    def _resigned(self) -> None:
        self.resigned += 1


def test_registration_is_ephemeral_and_kafkas_json(kazoo_factory: KazooFactory) -> None:
    a = kazoo_factory()
    reg = registration(1, rack="r1")
    epoch = register_broker(a, reg)
    data, stat = a.get("/brokers/ids/1")
    assert stat.ephemeralOwner == a.client_id[0] and stat.czxid == epoch
    assert zp.BrokerRegistration.decode(1, data) == reg
    assert register_broker(a, reg) == epoch  # our own node: a retry, not a conflict
    a.stop()
    b = kazoo_factory()
    assert b.exists("/brokers/ids/1") is None  # gone with the session


def test_second_broker_with_same_id_fails_with_kafkas_message(
    kazoo_factory: KazooFactory,
) -> None:
    a, b = kazoo_factory(), kazoo_factory()
    register_broker(a, registration(5))
    with pytest.raises(BrokerRegistrationConflict) as err:
        register_broker(b, registration(5))
    assert str(err.value) == (
        "Error while creating ephemeral at /brokers/ids/5, node already exists and owner "
        f"'{a.client_id[0]}' does not match current session '{b.client_id[0]}'"
    )


def test_election_among_three_picks_one(kazoo_factory: KazooFactory) -> None:
    candidates = [Candidate(kazoo_factory(), broker_id) for broker_id in (1, 2, 3)]
    for c in candidates:
        c.elector.start()
    winners = [c for c in candidates if c.elector.is_controller]
    assert len(winners) == 1
    (winner,) = winners
    ctx = winner.elected[0]
    assert ctx.epoch == 1
    for c in candidates:
        wait_for(lambda c=c: c.elector.active_controller_id == ctx.broker_id, "agreement")
    data, _ = winner.client.get("/controller")
    reg = zp.ControllerRegistration.decode(data)
    assert (reg.broker_id, reg.kraft_controller_epoch) == (ctx.broker_id, -1)
    assert winner.client.get("/controller_epoch")[0] == b"1"
    assert sorted(winner.client.get_children("/brokers/ids")) == ["1", "2", "3"]


def _fail_over(
    candidates: list[Candidate],
    kill: Callable[[Candidate], None],
    zombie_client: KazooClient | None = None,
    before_zombie_write: Callable[[Candidate], None] = lambda old: None,
    started: bool = False,
) -> None:
    if not started:
        for c in candidates:
            c.elector.start()
    (old,) = [c for c in candidates if c.elector.is_controller]
    old_ctx = old.elected[0]
    old_ctx.fenced_write([SetDataOp("/controller_epoch", b"1", old_ctx.epoch_zk_version)])
    others = [c for c in candidates if c is not old]
    started = time.monotonic()
    kill(old)
    wait_for(lambda: any(c.elector.is_controller for c in others), "a new controller", FAILOVER_S)
    elapsed = time.monotonic() - started
    (new,) = [c for c in others if c.elector.is_controller]
    new_ctx = new.elected[0]
    assert new_ctx.epoch == old_ctx.epoch + 1 and elapsed < FAILOVER_S
    for c in others:
        wait_for(lambda c=c: c.elector.active_controller_id == new_ctx.broker_id, "agreement")
    assert new.client.get("/controller_epoch")[0] == str(new_ctx.epoch).encode()

    # The deposed controller's write carries its old epoch check: refused, nothing written
    # (through a new session of the old broker when its own was closed).
    if zombie_client is not None:
        old_ctx = dataclasses.replace(old_ctx, client=zombie_client)
    before_zombie_write(old)
    target = "/brokers/topics/fenced"
    new_ctx.fenced_write([])  # the new one writes fine
    new.client.ensure_path(target)
    with pytest.raises(ControllerMovedError, match="Expected zkVersion"):
        old_ctx.fenced_write([SetDataOp(target, b"zombie")])
    assert new.client.get(target)[0] == b""


def test_closing_the_controllers_session_elects_another(kazoo_factory: KazooFactory) -> None:
    candidates = [Candidate(kazoo_factory(), broker_id) for broker_id in (1, 2, 3)]

    def close_session(c: Candidate) -> None:
        c.elector.close()
        c.client.stop()

    _fail_over(candidates, close_session, zombie_client=kazoo_factory())


def test_expired_controller_resigns_rejoins_and_is_fenced(
    kazoo_factory: KazooFactory, zk_hosts: str
) -> None:
    candidates = [Candidate(kazoo_factory(timeout=2.0), broker_id) for broker_id in (1, 2)]
    expired: list[Candidate] = []

    def expire(c: Candidate) -> None:
        expired.append(c)
        expire_session(c.client, zk_hosts)

    def rejoined(old: Candidate) -> None:
        wait_for(lambda: old.resigned == 1, "the old controller to resign")
        # kazoo opened a new session: the old controller registered again, as a follower.
        wait_for(lambda: old.elector.broker_epoch != first_epoch, "re-registration")
        assert old.client.exists(f"/brokers/ids/{old.elector.broker_id}") is not None

    first_epoch = -1
    for c in candidates:
        c.elector.start()
    first_epoch = next(c for c in candidates if c.elector.is_controller).elector.broker_epoch
    _fail_over(candidates, expire, before_zombie_write=rejoined, started=True)
    (old,) = expired
    wait_for(
        lambda: old.elector.active_controller_id not in (None, old.elector.broker_id),
        "the rejoined broker to see the new controller",
    )
    assert not old.elector.is_controller
    assert read_controller_id(old.client) != old.elector.broker_id


def test_deleted_controller_znode_makes_everyone_run_again(kazoo_factory: KazooFactory) -> None:
    candidates = [Candidate(kazoo_factory(), broker_id) for broker_id in (1, 2)]
    for c in candidates:
        c.elector.start()
    (old,) = [c for c in candidates if c.elector.is_controller]
    old.client.delete("/controller")
    wait_for(
        lambda: (
            any(len(c.elected) + c.resigned >= 2 for c in candidates)
            and sum(c.elector.is_controller for c in candidates) == 1
            and old.client.exists("/controller") is not None
        ),
        "a re-election",
    )
    (new,) = [c for c in candidates if c.elector.is_controller]
    assert new.elected[-1].epoch == 2
    assert old.resigned == 1
