"""The broker process: wiring, listener, background tasks, lifecycle.

``async with Broker(data_dir, port=0) as broker`` starts a broker in-process (tests, the
pytest plugin); ``mms broker`` runs the same object until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..cluster.metadata import MetadataStore, new_kafka_uuid, uuid_to_kafka
from ..cluster.store import MetadataStoreProtocol
from ..coordinator import GroupCoordinatorConfig
from ..coordinator.transaction import TransactionConfig
from ..replication.config import REPLICATION_KEYS
from ..storage import CLEANER_CONFIG_KEYS, SERVER_SYNONYMS, CleanerConfig, LogConfigError
from .config import BrokerConfig, ConfigError
from .connection import Connection, ConnectionQuotas, resolve_overrides
from .dispatch import Dispatcher
from .group_runtime import GroupRuntime
from .handlers import HANDLERS
from .replica_manager import ReplicaManager
from .topic_configs import broker_defaults
from .txn_runtime import TxnRuntime

if TYPE_CHECKING:
    from .cluster_runtime import ClusterRuntime

log = logging.getLogger("metamorphostreams.server")

META_PROPERTIES = "meta.properties"
# ZooKeeper-mode keys: read by ClusterRuntime (only when zookeeper.connect is set).
CLUSTER_KEYS = frozenset(
    {
        "zookeeper.connect",
        "zookeeper.session.timeout.ms",
        "zookeeper.connection.timeout.ms",
        "broker.rack",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "unclean.leader.election.enable",
        "controlled.shutdown.enable",
        "controlled.shutdown.max.retries",
        "controlled.shutdown.retry.backoff.ms",
        "auto.leader.rebalance.enable",
        "leader.imbalance.check.interval.seconds",
        "leader.imbalance.per.broker.percentage",
    }
)
# Broker keys read by the storage and coordinator configs rather than BrokerConfig itself.
_OTHER_KNOWN_KEYS = frozenset(
    {key for synonyms in SERVER_SYNONYMS.values() for key, _factor in synonyms}
    | {f.name.replace("_", ".") for f in dataclasses.fields(GroupCoordinatorConfig)}
    | {f.name.replace("_", ".") for f in dataclasses.fields(TransactionConfig)}
    | CLEANER_CONFIG_KEYS
    | CLUSTER_KEYS
    | REPLICATION_KEYS
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Broker:
    """One broker. Loop-owned: create and use it inside one running event loop."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        broker_id: int | None = None,
        props: Mapping[str, str] | None = None,
    ) -> None:
        given = dict(props or {})
        if broker_id is not None:
            given["broker.id"] = str(broker_id)
            given.setdefault("node.id", str(broker_id))
        self.config = BrokerConfig.from_props(given)
        try:
            broker_defaults(self.config.props)  # the log.* keys, checked before anything starts
            CleanerConfig.from_server_props(self.config.props)
        except LogConfigError as e:
            raise ConfigError(str(e)) from None
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.broker_id = self.config.broker_id
        self.now_ms = wall_clock_ms
        self.metadata: MetadataStoreProtocol
        # Set only in a cluster (zookeeper.connect): handlers take the standalone path on None.
        connect = str(self.config.props.get("zookeeper.connect", "")).strip()
        self.cluster: ClusterRuntime | None = None
        if connect:
            from .cluster_runtime import ClusterRuntime  # kazoo loads only in a cluster

            self.cluster = ClusterRuntime(self, connect)
        self.exit_code = 0
        self.stop_requested = asyncio.Event()
        self.replicas: ReplicaManager
        self.groups: GroupRuntime
        self.transactions: TxnRuntime
        self.dispatcher = Dispatcher(self, HANDLERS)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self.connection_quotas = ConnectionQuotas(
            int(self.config["max.connections"]),
            int(self.config["max.connections.per.ip"]),
            resolve_overrides(self.config["max.connections.per.ip.overrides"]),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        for key in self.config.unknown_keys(_OTHER_KNOWN_KEYS):
            log.warning("the configuration '%s' was supplied but isn't a known config", key)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.cluster is None:
            self.metadata = MetadataStore(self.data_dir)
            self.metadata.ensure_cluster_id(self.config["cluster.id"])
        else:
            self.metadata = await self.cluster.open_store()
        self._write_meta_properties()
        self.replicas = ReplicaManager(self.data_dir, self.config, self.metadata, self.now_ms)
        self.replicas.open(lead_all=self.cluster is None)
        if self.cluster is not None:
            self.cluster.sync_now()
        self.groups = GroupRuntime(self)
        self.groups.start()
        self.transactions = TxnRuntime(self)
        self.transactions.start()
        if self.cluster is not None:
            self.cluster.coordinators_started()
        self._server = await asyncio.get_running_loop().create_server(
            self._new_connection, self.host, self.port, reuse_address=True, backlog=1024
        )
        sock = self._server.sockets[0]
        receive_buffer = int(self.config["socket.receive.buffer.bytes"])
        if receive_buffer != -1:  # accepted sockets inherit it, as in Kafka's Acceptor
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.port = sock.getsockname()[1]
        if self.cluster is not None:
            try:
                await self.cluster.register()
            except BaseException:
                await self._abort_start()
                raise
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        cleaner = self.replicas.cleaner_config
        if cleaner.enable:
            for _ in range(cleaner.threads):
                self._tasks.append(asyncio.create_task(self.replicas.run_cleaner_thread()))
        loop_module = type(asyncio.get_running_loop()).__module__.split(".")[0]
        log.info(
            "broker %d listening on %s:%d (event loop: %s)",
            self.broker_id,
            self.host,
            self.port,
            loop_module,
        )

    async def stop(self) -> None:
        """Stop accepting, close connections, flush and write the clean-shutdown marker."""
        if self._server is None:
            return
        if self.cluster is not None:
            await self.cluster.controlled_shutdown()
        self._server.close()
        await self._close_connections()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None
        self.transactions.stop()
        self.groups.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        self.replicas.close()
        self._stopped.set()
        log.info("broker %d stopped cleanly", self.broker_id)

    async def _abort_start(self) -> None:
        """Undo a start that failed after the listener was bound (cluster registration)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.transactions.stop()
        self.groups.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        self.replicas.close()

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask the process running this broker to stop it (``mms broker`` waits on this)."""
        self.exit_code = max(self.exit_code, exit_code)
        self.stop_requested.set()

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def advertised(self) -> tuple[str, int]:
        """Host and port clients should use (advertised.listeners, else the bound address)."""
        spec = str(self.config["advertised.listeners"])
        if spec:
            first = spec.split(",")[0]
            hostport = first.split("://", 1)[-1]
            host, _, port = hostport.rpartition(":")
            if host and port.isdigit():
                return host, int(port)
        return self.host, self.port

    # -- internals ----------------------------------------------------------------------

    def _new_connection(self) -> Connection:
        return Connection(
            self.dispatcher.handle,
            max_frame_size=int(self.config["socket.request.max.bytes"]),
            max_queued=int(self.config["queued.max.requests"]),
            idle_ms=int(self.config["connections.max.idle.ms"]),
            send_buffer_bytes=int(self.config["socket.send.buffer.bytes"]),
            on_close=self._connection_closed,
            admit=self._admit_connection,
        )

    def _admit_connection(self, conn: Connection) -> bool:
        if not self.connection_quotas.admit(conn):
            return False
        self._connections.add(conn)
        return True

    def _connection_closed(self, conn: Connection) -> None:
        self.connection_quotas.release(conn)
        self._connections.discard(conn)

    async def _close_connections(self) -> None:
        """Close every connection and let their request tasks end (an in-flight request
        is answered only if it completes first: its client sees an answer or a closed
        connection) before the logs they may touch are closed."""
        for conn in list(self._connections):
            conn.close()
        for _ in range(100):  # connection_lost runs on the next loop iterations
            if not self._connections:
                break
            await asyncio.sleep(0.01)

    def _write_meta_properties(self) -> None:
        path = self.data_dir / META_PROPERTIES
        if path.exists():
            return
        text = (
            "#\n#Written by metamorphostreams\n"
            f"cluster.id={self.metadata.cluster_id}\n"
            f"directory.id={uuid_to_kafka(new_kafka_uuid())}\n"
            f"node.id={self.broker_id}\n"
            "version=1\n"
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    async def _housekeeping(self) -> None:
        """Retention, time-based flushes and checkpoints, at Kafka's configured intervals."""
        retention_every = int(self.config["log.retention.check.interval.ms"]) / 1000
        checkpoint_every = int(self.config["log.flush.offset.checkpoint.interval.ms"]) / 1000
        hw_every = self.replicas.replication.high_watermark_checkpoint_interval_ms / 1000
        tick = min(1.0, retention_every, max(checkpoint_every, 0.05), max(hw_every, 0.05))
        loop = asyncio.get_running_loop()
        next_retention = loop.time() + retention_every
        next_checkpoint = loop.time() + checkpoint_every
        next_hw_checkpoint = loop.time() + hw_every
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            try:
                await self.replicas.flush_dirty()
                if now >= next_retention:
                    next_retention = now + retention_every
                    self.replicas.run_retention()
                if now >= next_checkpoint:
                    next_checkpoint = now + checkpoint_every
                    self.replicas.checkpoint()
                if now >= next_hw_checkpoint:
                    next_hw_checkpoint = now + hw_every
                    self.replicas.checkpoint_high_watermarks()
            except OSError:
                log.exception("housekeeping failed; will retry")
