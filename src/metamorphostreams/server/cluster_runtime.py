"""A broker in a cluster: ZooKeeper membership, partition placement, leadership, replication.

Only a broker started with ``zookeeper.connect`` has one (``broker.cluster``); a standalone
broker never builds it, and its handlers take the standalone path after one ``is None`` check.

What it does, on the broker's loop:
- connects to ZooKeeper (kazoo) and opens the ``ZkMetadataStore`` that replaces the JSON
  store; registers ``/brokers/ids/N`` once the listener is bound; runs for controller;
- keeps views the handlers read: live brokers (``/brokers/ids``), partition states (a watch
  per ``/brokers/topics/T/partitions/P/state``), the controller id;
- after every view change, makes each partition assigned here a leader or a follower as its
  partition state says (the replica manager starts or stops fetching), deletes the logs of
  partitions no longer assigned here (topic deleted), and reloads the group and transaction
  coordinators when the internal partitions led here changed;
- as leader, writes the ISR changes the replica manager asks for (version-checked writes of
  the partition state, as Kafka's ZooKeeper-era leaders did), and shrinks ISRs every
  ``replica.lag.time.max.ms`` / 2;
- as controller: carries out topic deletions (``/admin/delete_topics``) and elects leaders
  from the ISR when brokers leave and return, removing dead brokers from ISRs
  (``zk_partitions.elect_leaders``, every write fenced by the controller epoch); runs the
  elections ElectLeaders asks for (``elect_leaders``), and moves leadership back to preferred
  replicas when a broker's share led elsewhere grows (``auto.leader.rebalance.enable``).

Topic administration (placement, creation, partition growth, deletion requests) is the
``ClusterTopicAdmin`` part, in ``_cluster_topics``.

Threads. Every ZooKeeper call runs on one worker thread (``self._zk``), never on the loop;
kazoo's watch callbacks only read ZooKeeper and hand view changes to ``_deliver``
(``loop.call_soon_threadsafe``). Loop-owned otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from ..cluster import zk_paths as zp
from ..cluster.zk_controller import (
    BrokerRegistrationConflict,
    ControllerContext,
    ControllerElector,
    ControllerMovedError,
)
from ..cluster.zk_partitions import (
    ELECTION_PREFERRED,
    ElectionOutcome,
    elect_leaders,
    elect_partitions,
    live_brokers,
    read_assignments,
    rebalance_candidates,
    update_isr,
)
from ..cluster.zk_store import (
    ZkMetadataStore,
)
from ..protocol.errors import ErrorCode
from ..replication.partition import IsrChange
from ._cluster_topics import DELETE_WAIT_POLL_S, ClusterTopicAdmin
from .config import ConfigError

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("metamorphostreams.server")

DEFAULT_SESSION_TIMEOUT_MS = 18_000  # Kafka's zookeeper.session.timeout.ms
ELECTION_WAIT_POLL_S = 0.02  # until the view shows the leaders an ElectLeaders wrote
FIRST_REBALANCE_DELAY_S = 5.0  # Kafka checks the leader balance 5 s after a controller starts


class ClusterStartError(ConfigError):
    """The broker cannot join the cluster (ZooKeeper unreachable, broker id taken): like a
    bad config, the broker exits non-zero with this one line."""


class ClusterRuntime(ClusterTopicAdmin):
    """This broker's membership in a ZooKeeper cluster. Loop-owned (see the module doc)."""

    def __init__(self, broker: Broker, connect: str) -> None:
        self.broker = broker
        self.connect = connect
        self.broker_id = broker.broker_id
        rack = str(broker.config.props.get("broker.rack", "")).strip()
        self.rack = rack or None
        props = broker.config.props
        session_ms = int(props.get("zookeeper.session.timeout.ms", DEFAULT_SESSION_TIMEOUT_MS))
        # Kafka's zookeeper.connection.timeout.ms defaults to the session timeout.
        self.connect_timeout_s = (
            int(props.get("zookeeper.connection.timeout.ms", session_ms)) / 1000
        )
        self.client = KazooClient(hosts=connect, timeout=session_ms / 1000)
        self.store: ZkMetadataStore
        self.elector: ControllerElector | None = None
        self.brokers: dict[int, zp.BrokerRegistration] = {}
        self.states: dict[tuple[str, int], zp.PartitionState] = {}
        self._zk = ThreadPoolExecutor(1, thread_name_prefix=f"zk-broker-{self.broker_id}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watched_states: set[tuple[str, int]] = set()
        self._watch_lock = threading.Lock()
        self._sync_scheduled = False
        self._controller_lock = threading.Lock()
        self._controller_dirty = False
        self._creating: set[str] = set()
        self._coordinator_partitions: dict[str, frozenset[int]] | None = None
        self._isr_task: asyncio.Task[None] | None = None
        self._rebalance_task: asyncio.Task[None] | None = None
        self._closed = False
        self._started = False  # the logs are open: view changes may now open and drop logs

    # -- lifecycle ---------------------------------------------------------------------

    def _deliver(self, change: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._apply, change)

    def _apply(self, change: Callable[[], None]) -> None:
        if self._closed:
            return
        change()
        if not self._sync_scheduled:
            self._sync_scheduled = True
            asyncio.get_running_loop().call_soon(self._sync)

    async def open_store(self) -> ZkMetadataStore:
        """Connect, load topics and the cluster id; the store the broker uses. Raises
        ClusterStartError with a one-line reason when ZooKeeper does not answer."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._run(self.client.start, self.connect_timeout_s)
        except (KazooTimeoutError, ValueError) as e:
            await self._run(self._close_client)
            raise ClusterStartError(
                f"cannot reach ZooKeeper at {self.connect} within {self.connect_timeout_s:g} s"
                + (f" ({e})" if str(e) and not isinstance(e, KazooTimeoutError) else "")
            ) from None
        self.store = ZkMetadataStore(self.client, self.broker_id, deliver=self._deliver)
        await self._run(self.store.open)
        await self._run(self.store.ensure_cluster_id, str(self.broker.config["cluster.id"]))
        await self._run(self.store.watch)
        # Producer-id blocks are claimed on the worker, ahead of need, never on the loop.
        await self._run(self.store.prefetch_producer_id_block)
        self.store.background = self._background
        return self.store

    async def register(self) -> None:
        """Register /brokers/ids/N with the bound endpoint and run for controller."""
        host, port = self.broker.advertised()
        registration = zp.BrokerRegistration(
            self.broker_id,
            (zp.Endpoint("PLAINTEXT", host, port, "PLAINTEXT"),),
            self.rack,
            self.broker.now_ms(),
        )
        self.elector = ControllerElector(
            self.client,
            registration,
            on_elected=self._on_elected,
            on_resigned=lambda: None,
            on_fatal=self._on_fatal,
            deliver=self._deliver,
        )
        try:
            await self._run(self.elector.start)
        except BrokerRegistrationConflict as e:
            raise ClusterStartError(str(e)) from None
        await self._run(self._watch_membership)
        self._sync()
        self._isr_task = asyncio.get_running_loop().create_task(self._expire_isrs())

    async def _expire_isrs(self) -> None:
        """Kafka's isr-expiration task: every replica.lag.time.max.ms / 2."""
        replicas = self.broker.replicas
        interval_s = replicas.replication.lag_time_max_ms / 2000
        while not self._closed:
            await asyncio.sleep(interval_s)
            try:
                replicas.shrink_isrs()
            except Exception:
                log.exception("ISR expiration failed")

    def _watch_membership(self) -> None:
        ChildrenWatch(self.client, zp.BROKER_IDS_PATH, self._on_broker_ids)
        ChildrenWatch(self.client, zp.DELETE_TOPICS_PATH, self._on_delete_requests)

    async def controlled_shutdown(self) -> None:
        """Move leadership away before stopping (``controlled.shutdown.enable``, default
        true): the broker withdraws its registration, so the controller elects new leaders
        from the ISR and drops this broker from the ISRs, as it does for a dead broker but
        while this one still serves; then waits (up to ``controlled.shutdown.max.retries``
        x ``controlled.shutdown.retry.backoff.ms``) until it leads no partition that another
        live in-sync replica could lead."""
        props = self.broker.config.props
        if str(props.get("controlled.shutdown.enable", "true")).strip().lower() != "true":
            return
        if self.elector is None or self._closed:
            return
        retries = int(props.get("controlled.shutdown.max.retries", 3))
        backoff_ms = int(props.get("controlled.shutdown.retry.backoff.ms", 5000))
        path = zp.broker_path(self.broker_id)

        def withdraw() -> None:
            try:
                self.client.delete(path)
            except NoNodeError:
                pass

        try:
            await self._run(withdraw)
        except Exception as e:
            log.warning("controlled shutdown: cannot withdraw the registration: %s", e)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(retries, 1) * backoff_ms / 1000
        while (movable := self._movable_leaderships()) and loop.time() < deadline:
            await asyncio.sleep(DELETE_WAIT_POLL_S)
        if movable:
            log.warning("controlled shutdown: still leading %s", movable)
        else:
            log.info("controlled shutdown: leadership moved away")

    def _movable_leaderships(self) -> list[str]:
        """Partitions led here that another live in-sync replica could lead."""
        movable = []
        for topic, partition in self.broker.replicas.leaders or {}:
            state = self.states.get((topic, partition))
            isr = state.isr if state is not None else ()
            if any(b != self.broker_id and b in self.brokers for b in isr):
                movable.append(f"{topic}-{partition}")
        return movable

    async def stop(self) -> None:
        self._closed = True
        if self._isr_task is not None:
            self._isr_task.cancel()
        if self._rebalance_task is not None:
            self._rebalance_task.cancel()
        await self.broker.replicas.close_fetchers()
        if self.elector is not None:
            await self._run(self.elector.close)
        self.store.stop_watching()
        await self._run(self._close_client)
        self._zk.shutdown(wait=True)

    def _background(self, fn: Callable[[], None]) -> None:
        try:
            self._zk.submit(fn)
        except RuntimeError:
            pass  # shutting down

    def coordinates_transaction(self, transactional_id: str) -> bool:
        """Does this broker lead the __transaction_state partition of ``transactional_id``?"""
        from .txn_runtime import TRANSACTION_STATE_TOPIC

        partition = self.broker.transactions.coordinator.partition_for(transactional_id)
        return self.leads(TRANSACTION_STATE_TOPIC, partition)

    def _close_client(self) -> None:
        try:
            self.client.stop()
        finally:
            self.client.close()

    def _on_fatal(self, error: BaseException) -> None:
        log.error("leaving the cluster: %s", error)
        self.broker.request_stop(exit_code=1)

    # -- kazoo callbacks (kazoo's thread) ------------------------------------------------

    def _on_broker_ids(self, children: list[str]) -> bool:
        if self._closed:
            return False
        found = live_brokers(self.client)

        def apply() -> None:
            self.brokers = found

        self._deliver(apply)
        self._controller_work()
        return True

    def _on_delete_requests(self, children: list[str]) -> bool:
        if self._closed:
            return False
        if children:
            self._controller_work()
        return True

    def _state_watcher(self, topic: str, partition: int) -> Callable[..., bool]:
        key = (topic, partition)

        def on_state(data: bytes | None, stat: Any, event: Any = None) -> bool:
            if self._closed:
                return False
            state = None
            if data:
                try:
                    state = zp.PartitionState.decode(data, stat.version)
                except zp.ZkDataError:
                    log.warning("unreadable partition state of %s-%d", topic, partition)

            def apply() -> None:
                if state is None:
                    self.states.pop(key, None)
                else:
                    self.states[key] = state

            self._deliver(apply)
            return True

        return on_state

    def _watch_states(self, keys: list[tuple[str, int]]) -> None:
        for topic, partition in keys:
            DataWatch(
                self.client,
                zp.partition_state_path(topic, partition),
                self._state_watcher(topic, partition),
            )

    # -- the controller (worker thread) --------------------------------------------------

    def _on_elected(self, ctx: ControllerContext) -> None:
        log.info("broker %d is the controller (epoch %d)", self.broker_id, ctx.epoch)
        self._controller_work()
        self._start_rebalancing()

    def _controller_work(self) -> None:
        """Queue one controller pass (coalesced); a no-op on brokers that are not controller."""
        with self._controller_lock:
            if self._controller_dirty or self._closed:
                return
            self._controller_dirty = True
        try:
            self._zk.submit(self._controller_pass)
        except RuntimeError:
            pass  # shutting down

    def _controller_pass(self) -> None:
        with self._controller_lock:
            self._controller_dirty = False
        elector = self.elector
        ctx = elector.context if elector is not None else None
        if ctx is None or self._closed:
            return
        try:
            for name in self.client.get_children(zp.DELETE_TOPICS_PATH):
                log.info("controller: deleting topic %s", name)
                ctx.fenced_write([])  # still controller? (raises ControllerMovedError if not)
                self.store.complete_topic_deletion(name)
            live = {int(c) for c in self.client.get_children(zp.BROKER_IDS_PATH)}
            assignments: dict[str, zp.TopicAssignment] = {}
            for name in self.client.get_children(zp.TOPICS_PATH):
                try:
                    data, _ = self.client.get(zp.topic_path(name))
                except Exception:
                    continue
                assignments[name] = zp.TopicAssignment.decode(name, data)
            elect_leaders(ctx, assignments, live, unclean=self._unclean_allowed)
        except ControllerMovedError:
            log.info("controller moved; this broker stops acting as controller")
        except Exception:
            if not self._closed:
                log.exception("controller pass failed")

    def _unclean_allowed(self, topic: str) -> bool:
        info = self.store.topics.get(topic)
        value = info.configs.get("unclean.leader.election.enable") if info is not None else None
        if value is None:
            value = self.broker.config.props.get("unclean.leader.election.enable", "false")
        return str(value).strip().lower() == "true"

    # -- elections on request and leader rebalancing (controller; loop + worker) -----------

    @property
    def is_controller(self) -> bool:
        elector = self.elector
        return elector is not None and elector.context is not None

    async def elect_leaders(
        self, election_type: int, partitions: list[tuple[str, int]] | None, timeout_ms: int
    ) -> dict[tuple[str, int], ElectionOutcome]:
        """ElectLeaders on the controller: every partition when ``partitions`` is None.

        The elections run on the ZooKeeper worker; then, as Kafka's DelayedElectLeader, a
        partition given a new leader is answered NONE once this broker's view shows that
        leader, or REQUEST_TIMED_OUT when ``timeout_ms`` (counted from the request) ends first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        if partitions is None:
            partitions = [
                (name, p)
                for name, assignment in sorted(self.store.assignments.items())
                for p in sorted(assignment.partitions)
            ]
        if not partitions:
            return {}
        outcomes = await self._run(self._elect_partitions, partitions, election_type)
        waiting = {k: o.leader for k, o in outcomes.items() if o.error == ErrorCode.NONE}
        while True:
            for key, leader in list(waiting.items()):
                state = self.states.get(key)
                if state is not None and state.leader == leader:
                    del waiting[key]
            if not waiting or loop.time() >= deadline:
                break
            await asyncio.sleep(ELECTION_WAIT_POLL_S)
        for key in waiting:
            outcomes[key] = ElectionOutcome(ErrorCode.REQUEST_TIMED_OUT)
        return outcomes

    def _elect_partitions(
        self, partitions: list[tuple[str, int]], election_type: int
    ) -> dict[tuple[str, int], ElectionOutcome]:
        """Worker thread: the elections, on what ZooKeeper holds now."""
        elector = self.elector
        ctx = elector.context if elector is not None else None
        if ctx is None or self._closed:
            return {key: ElectionOutcome(ErrorCode.NOT_CONTROLLER) for key in partitions}
        kind = "PREFERRED" if election_type == ELECTION_PREFERRED else "UNCLEAN"
        log.info("controller: %s leader election for %d partition(s)", kind, len(partitions))
        assignments = read_assignments(self.client, {topic for topic, _ in partitions})
        live = {int(c) for c in self.client.get_children(zp.BROKER_IDS_PATH)}
        deleting = set(self.client.get_children(zp.DELETE_TOPICS_PATH))
        return elect_partitions(
            ctx, assignments, partitions, live, election_type=election_type, deleting=deleting
        )

    def _start_rebalancing(self) -> None:
        """On election (loop): Kafka's auto-leader-rebalance task, unless turned off."""
        props = self.broker.config.props
        enabled = str(props.get("auto.leader.rebalance.enable", "true")).strip().lower()
        running = self._rebalance_task is not None and not self._rebalance_task.done()
        if enabled != "true" or running or self._closed:
            return
        self._rebalance_task = asyncio.get_running_loop().create_task(self._rebalance_leaders())

    async def _rebalance_leaders(self) -> None:
        """While controller: 5 s after the election, then every
        ``leader.imbalance.check.interval.seconds``, preferred elections for the partitions
        of each broker whose share led elsewhere is above
        ``leader.imbalance.per.broker.percentage`` (``zk_partitions.rebalance_candidates``)."""
        props = self.broker.config.props
        interval_s = max(int(props.get("leader.imbalance.check.interval.seconds", 300)), 1)
        percentage = float(props.get("leader.imbalance.per.broker.percentage", 10))
        delay_s = FIRST_REBALANCE_DELAY_S
        while not self._closed and self.is_controller:
            await asyncio.sleep(delay_s)
            delay_s = interval_s
            if self._closed or not self.is_controller:
                return
            candidates = rebalance_candidates(
                self.store.assignments, self.states, set(self.brokers), percentage
            )
            if not candidates:
                continue
            try:
                outcomes = await self._run(self._elect_partitions, candidates, ELECTION_PREFERRED)
            except Exception:
                log.exception("leader rebalance failed")
                continue
            settled = (ErrorCode.NONE, ErrorCode.ELECTION_NOT_NEEDED)
            failed = {k: o.error.name for k, o in outcomes.items() if o.error not in settled}
            if failed:
                log.warning("leader rebalance: not moved: %s", failed)

    # -- ISR writes (loop; ZooKeeper on the worker) ---------------------------------------

    def _write_isr(self, topic: str, partition: int, change: IsrChange) -> None:
        """Write a leader's new ISR to the partition state, expected at the version the
        leader knew; the answer goes back to the replica manager on the loop."""
        key = (topic, partition)
        state = self.states.get(key)
        replicas = self.broker.replicas
        if state is None:
            replicas.isr_written(topic, partition, change, None)
            return
        current = replace(state, zk_version=change.zk_version)

        def write() -> None:
            try:
                new = update_isr(self.client, topic, partition, current, change.isr)
            except Exception as e:
                log.warning("%s-%d: cannot write the ISR %s: %r", topic, partition, change.isr, e)
                new = None

            def apply() -> None:
                version = None if new is None else new.zk_version
                if new is not None:
                    known = self.states.get(key)
                    if known is None or known.zk_version < new.zk_version:
                        self.states[key] = new
                replicas.isr_written(topic, partition, change, version)

            self._deliver(apply)

        self._background(write)

    # -- the view: logs follow the assignment (loop) ------------------------------------

    def sync_now(self) -> None:
        """Open this broker's logs at start-up, before the coordinators replay them."""
        self.broker.replicas.enable_replication(
            self.endpoint, self._write_isr, lambda broker_id: broker_id in self.brokers
        )
        self._started = True
        self._sync()

    def coordinators_started(self) -> None:
        """The coordinators replayed what is led here: from now on, changes reload them."""
        self._coordinator_partitions = self._led_coordinator_partitions()

    def _led_coordinator_partitions(self) -> dict[str, frozenset[int]]:
        from .group_runtime import OFFSETS_TOPIC
        from .txn_runtime import TRANSACTION_STATE_TOPIC

        leaders = self.broker.replicas.leaders or {}
        return {
            name: frozenset(p for (t, p) in leaders if t == name)
            for name in (OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC)
        }

    def _reload_coordinators(self) -> None:
        from .group_runtime import OFFSETS_TOPIC

        before = self._coordinator_partitions
        if before is None:
            return
        now = self._led_coordinator_partitions()
        self._coordinator_partitions = now
        for name, led in now.items():
            if led == before.get(name):
                continue
            log.info("%s partitions led here: %s", name, sorted(led))
            if name == OFFSETS_TOPIC:
                self.broker.groups.reload()
            else:
                self.broker.transactions.reload()

    def _sync(self) -> None:
        """Open and lead this broker's partitions; drop logs of partitions gone from here."""
        self._sync_scheduled = False
        if self._closed or not self._started:
            return
        replicas = self.broker.replicas
        mine: set[tuple[str, int]] = set()
        unwatched: list[tuple[str, int]] = []
        for name, assignment in self.store.assignments.items():
            info = self.store.topics.get(name)
            if info is None:
                continue
            cfg = replicas.log_config(info)
            for p, brokers in assignment.partitions.items():
                key = (name, p)
                if key not in self._watched_states:
                    unwatched.append(key)
                if self.broker_id not in brokers:
                    continue
                mine.add(key)
                state = self.states.get(key)
                if state is None:
                    continue  # the state's watch has not reported yet
                if state.leader == self.broker_id:
                    replicas.become_leader(
                        name,
                        p,
                        cfg,
                        leader_epoch=state.leader_epoch,
                        replicas=tuple(brokers),
                        isr=state.isr,
                        zk_version=state.zk_version,
                    )
                else:
                    replicas.become_follower(
                        name, p, cfg, leader=state.leader, leader_epoch=state.leader_epoch
                    )
        gone_topics: set[str] = set()
        for plog in list(replicas.logs.all_logs()):
            key = (plog.topic, plog.partition)
            if key not in mine:
                if plog.topic not in self.store.topics:
                    gone_topics.add(plog.topic)
                replicas.drop_partition(*key)
        if gone_topics:
            self.broker.groups.topics_deleted(sorted(gone_topics))
        if unwatched:
            self._watched_states.update(unwatched)
            self._zk.submit(self._watch_states, unwatched)
        self._reload_coordinators()

    # -- queries (loop) ------------------------------------------------------------------

    @property
    def controller_id(self) -> int:
        elector = self.elector
        if elector is None or elector.active_controller_id is None:
            return -1
        return elector.active_controller_id

    def live_broker_ids(self) -> list[int]:
        return sorted(self.brokers)

    def endpoint(self, broker_id: int) -> tuple[str, int] | None:
        reg = self.brokers.get(broker_id)
        if reg is None or not reg.endpoints:
            return None
        ep = reg.endpoints[0]
        return ep.host or "", ep.port

    def isr_of(self, topic: str, partition: int) -> list[int]:
        state = self.states.get((topic, partition))
        return list(state.isr) if state is not None else []

    def replicas_of(self, topic: str, partition: int) -> list[int]:
        assignment = self.store.assignments.get(topic)
        if assignment is None:
            return []
        return list(assignment.partitions.get(partition, ()))

    def leader_of(self, topic: str, partition: int) -> tuple[int, int]:
        """(leader id or -1, leader epoch) from the partition state."""
        state = self.states.get((topic, partition))
        if state is not None:
            return state.leader, state.leader_epoch
        replicas = self.replicas_of(topic, partition)
        if replicas and replicas[0] in self.brokers:
            return replicas[0], 0  # the state znode's watch has not reported yet
        return zp.NO_LEADER, 0

    def partition_error(self, topic: str, partition: int) -> ErrorCode:
        """Why this broker has no log for a partition clients asked it for."""
        info = self.store.topics.get(topic)
        if info is None or not 0 <= partition < info.partitions:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return ErrorCode.NOT_LEADER_OR_FOLLOWER

    def leads(self, topic: str, partition: int) -> bool:
        return self.broker.replicas.get_log(topic, partition) is not None
