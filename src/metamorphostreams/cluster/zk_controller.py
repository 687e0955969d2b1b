"""Broker registration and controller election in ZooKeeper, as Kafka's ZooKeeper-era brokers.

Registration: each broker creates the ephemeral ``/brokers/ids/N`` (its endpoints and rack).
The znode lives as long as the broker's session; a second broker with the same id fails with
Kafka's message. After a session expiry kazoo opens a new session and the broker registers
again.

Election: a broker becomes controller by creating the ephemeral ``/controller`` in one
ZooKeeper transaction with a version-checked increment of ``/controller_epoch`` (Kafka's
registerControllerAndIncrementControllerEpoch). The winner's ``ControllerContext`` holds the
epoch and the epoch znode's version; ``fenced_write`` prefixes every controller write with a
check of that version, so once another broker has been elected (and bumped the epoch), a
zombie controller's writes are refused (``ControllerMovedError``). Every broker watches
``/controller`` and runs for election when it disappears; a controller that loses its session,
or sees another broker in ``/controller``, resigns.

Threads: elections and re-registrations run on one worker thread per ``ControllerElector``
(they block on ZooKeeper); kazoo's callbacks only queue work there. ``on_elected`` and
``on_resigned`` are handed to ``deliver`` (the broker: ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.protocol.states import ZnodeStat
from kazoo.recipe.watchers import DataWatch

from . import zk_paths as zp
from .zk_txn import CheckOp, CreateOp, Op, SetDataOp, TransactionFailed, commit

__all__ = [
    "BrokerRegistrationConflict",
    "ControllerContext",
    "ControllerElector",
    "ControllerMovedError",
    "register_broker",
    "register_controller_and_increment_epoch",
]

log = logging.getLogger(__name__)

Deliver = Callable[[Callable[[], None]], None]


def _run_now(change: Callable[[], None]) -> None:
    change()


class BrokerRegistrationConflict(Exception):
    """Another session holds /brokers/ids/N: another live broker has this broker.id."""


class ControllerMovedError(Exception):
    """Kafka's ControllerMovedException: this broker is not (or no longer) the controller."""


# -- registration -----------------------------------------------------------------------------


def session_id(client: KazooClient) -> int:
    sid, _ = client.client_id
    return int(sid)


def register_broker(client: KazooClient, registration: zp.BrokerRegistration) -> int:
    """Create the ephemeral /brokers/ids/N; its creation zxid is the broker epoch. Blocking.

    Kafka's checkedEphemeralCreate: a node already there that our own session owns (a retry
    after a lost reply) counts as created; one owned by another session is a conflict.
    """
    path = zp.broker_path(registration.broker_id)
    client.ensure_path(zp.BROKER_IDS_PATH)
    try:
        client.create(path, registration.encode(), ephemeral=True)
    except NodeExistsError:
        stat = _stat(client, path)
        if stat is None:  # gone between create and exists: its owner's session just ended
            return register_broker(client, registration)
        if stat.ephemeralOwner != session_id(client):
            raise BrokerRegistrationConflict(
                f"Error while creating ephemeral at {path}, node already exists and owner "
                f"'{stat.ephemeralOwner}' does not match current session "
                f"'{session_id(client)}'"
            ) from None
        return int(stat.czxid)
    stat = _stat(client, path)
    assert stat is not None
    return int(stat.czxid)


def _stat(client: KazooClient, path: str) -> ZnodeStat | None:
    return client.exists(path)


# -- election ---------------------------------------------------------------------------------


@dataclass
class ControllerContext:
    """This broker's term as controller: its epoch and the /controller_epoch znode version that
    its election wrote. Writes through ``fenced_write`` succeed only while that version is
    current, i.e. while no other broker has been elected since."""

    client: KazooClient
    broker_id: int
    epoch: int
    epoch_zk_version: int

    def epoch_check(self) -> CheckOp:
        return CheckOp(zp.CONTROLLER_EPOCH_PATH, self.epoch_zk_version)

    def fenced_write(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` in one transaction behind the epoch check; results without the check's.

        Raises ControllerMovedError when a newer controller bumped the epoch (the check
        failed), TransactionFailed when one of ``ops`` failed. Blocking.
        """
        try:
            return commit(self.client, [self.epoch_check(), *ops])[1:]
        except TransactionFailed as e:
            if e.index == 0:
                raise ControllerMovedError(
                    "Controller epoch zkVersion check fails. Expected zkVersion = "
                    f"{self.epoch_zk_version}"
                ) from None
            raise


def _read_controller_epoch(client: KazooClient) -> tuple[int, int] | None:
    try:
        data, stat = client.get(zp.CONTROLLER_EPOCH_PATH)
    except NoNodeError:
        return None
    return zp.decode_controller_epoch(data), stat.version


def read_controller_id(client: KazooClient) -> int | None:
    """The broker id in /controller, or None when there is no controller. Blocking."""
    try:
        data, _ = client.get(zp.CONTROLLER_PATH)
    except NoNodeError:
        return None
    return zp.ControllerRegistration.decode(data).broker_id


def register_controller_and_increment_epoch(
    client: KazooClient, broker_id: int, now_ms: int
) -> ControllerContext:
    """Try to become controller (Kafka's algorithm). Blocking; ControllerMovedError if not.

    Reads /controller_epoch (creating it at 0 if missing), then in one transaction creates the
    ephemeral /controller and writes epoch + 1 checked against the version read. A transaction
    that failed may still have been ours (a reply lost to a reconnect): /controller naming us
    with the epoch we wrote says so.
    """
    current = _read_controller_epoch(client)
    if current is None:
        try:
            client.create(
                zp.CONTROLLER_EPOCH_PATH, zp.encode_controller_epoch(zp.INITIAL_CONTROLLER_EPOCH)
            )
            current = (zp.INITIAL_CONTROLLER_EPOCH, 0)
        except NodeExistsError:
            current = _read_controller_epoch(client)
            if current is None:
                raise ControllerMovedError("/controller_epoch went away while reading it") from None
    epoch, epoch_version = current
    new_epoch = epoch + 1
    ops: list[Op] = [
        CreateOp(
            zp.CONTROLLER_PATH,
            zp.ControllerRegistration(broker_id, now_ms).encode(),
            ephemeral=True,
        ),
        SetDataOp(zp.CONTROLLER_EPOCH_PATH, zp.encode_controller_epoch(new_epoch), epoch_version),
    ]
    try:
        results = commit(client, ops)
    except TransactionFailed as e:
        if not isinstance(e.error, NodeExistsError | BadVersionError):
            raise
        if read_controller_id(client) == broker_id:
            now = _read_controller_epoch(client)
            if now is not None and now[0] == new_epoch:
                return ControllerContext(client, broker_id, new_epoch, now[1])
        raise ControllerMovedError(
            "Controller moved to another broker. Aborting controller startup procedure"
        ) from None
    set_stat: ZnodeStat = results[1]
    return ControllerContext(client, broker_id, new_epoch, set_stat.version)


class ControllerElector:
    """Keeps this broker registered and runs for controller whenever /controller is free.

    ``start()`` registers the broker and joins the election; ``context`` is the current term
    while this broker is controller, else None; ``active_controller_id`` is who is controller
    as last seen. ``on_elected(ctx)`` and ``on_resigned()`` go through ``deliver``.
    Registration conflicts at start raise from ``start()``; later ones (after a session
    expiry) go to ``on_fatal`` as Kafka's broker would exit.
    """

    def __init__(
        self,
        client: KazooClient,
        registration: zp.BrokerRegistration,
        *,
        on_elected: Callable[[ControllerContext], None] = lambda ctx: None,
        on_resigned: Callable[[], None] = lambda: None,
        on_fatal: Callable[[BaseException], None] = lambda e: None,
        deliver: Deliver = _run_now,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.client = client
        self.registration = registration
        self.broker_id = registration.broker_id
        self.on_elected = on_elected
        self.on_resigned = on_resigned
        self.on_fatal = on_fatal
        self.deliver = deliver
        self.clock_ms = clock_ms
        self.context: ControllerContext | None = None
        self.active_controller_id: int | None = None
        self.broker_epoch = -1
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"zk-controller-{self.broker_id}")
        self._lock = threading.Lock()
        self._session_lost = False
        self._closed = False

    @property
    def is_controller(self) -> bool:
        return self.context is not None

    def start(self) -> None:
        """Register, watch /controller and run for controller. Blocking."""
        self.broker_epoch = register_broker(self.client, self.registration)
        self.client.add_listener(self._on_state)
        DataWatch(self.client, zp.CONTROLLER_PATH, self._on_controller_change)
        self._submit(self._elect).result()

    def close(self) -> None:
        """Stop taking part: resign locally and stop the worker (the session is the caller's)."""
        self._closed = True
        self.client.remove_listener(self._on_state)
        self._submit(self._resign).result()
        self._worker.shutdown(wait=True)

    def _submit(self, fn: Callable[[], None]) -> Future[None]:
        return self._worker.submit(self._guarded, fn)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            if not self._closed:
                log.exception("broker %d: controller election step failed", self.broker_id)

    # -- kazoo callbacks: never block, only queue work ------------------------------------

    def _on_state(self, state: str) -> None:
        if self._closed:
            return
        if state == KazooState.LOST:
            self._session_lost = True
            self._submit(self._resign)
        elif state == KazooState.CONNECTED and self._session_lost:
            self._session_lost = False
            self._submit(self._rejoin)

    def _on_controller_change(self, data: bytes | None, stat: Any, event: Any = None) -> bool:
        if self._closed:
            return False
        controller = None if data is None else zp.ControllerRegistration.decode(data).broker_id
        self.active_controller_id = controller
        if controller is None:
            self._submit(self._reelect)
        elif controller != self.broker_id and self.context is not None:
            self._submit(self._resign)
        return True

    # -- worker-thread steps ------------------------------------------------------------------

    def _elect(self) -> None:
        if self._closed or self.context is not None or self._session_lost:
            return
        current = read_controller_id(self.client)
        if current is not None:
            self.active_controller_id = current
            return
        try:
            ctx = register_controller_and_increment_epoch(
                self.client, self.broker_id, self.clock_ms()
            )
        except ControllerMovedError:
            self.active_controller_id = read_controller_id(self.client)
            return
        self.context = ctx
        self.active_controller_id = self.broker_id
        log.info("broker %d is the controller, epoch %d", self.broker_id, ctx.epoch)
        self.deliver(lambda: self.on_elected(ctx))

    def _reelect(self) -> None:
        # Kafka's Reelect: /controller went away, so even the controller it named resigns
        # (its epoch is about to be superseded) before everyone runs again.
        self._resign()
        self._elect()

    def _resign(self) -> None:
        if self.context is None:
            return
        log.info("broker %d resigns as controller (epoch %d)", self.broker_id, self.context.epoch)
        self.context = None
        self.deliver(self.on_resigned)

    def _rejoin(self) -> None:
        """A new session after expiry: register again, then run for controller again."""
        try:
            self.broker_epoch = register_broker(self.client, self.registration)
        except BrokerRegistrationConflict as e:
            conflict = e  # `e` is unbound once the except block ends
            self.deliver(lambda: self.on_fatal(conflict))
            return
        self._elect()
