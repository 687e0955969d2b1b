"""Requests from this broker to the other brokers of its cluster (Kafka's inter-broker
channel): one connection per peer, opened on first use and again after a failure.

Used by the transaction side: COMMIT/ABORT markers for partitions led elsewhere
(WriteTxnMarkers) and the KIP-890 checks a partition leader asks of a transaction's
coordinator (AddPartitionsToTxn v4+). Loop-owned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ..client.connection import BrokerConnection
from ..client.errors import KafkaConnectionError, KafkaError

__all__ = ["InterBrokerClient"]


class InterBrokerClient:
    def __init__(
        self,
        broker_id: int,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.broker_id = broker_id
        self.endpoint_of = endpoint_of
        self.timeout_s = timeout_s
        self._connections: dict[int, BrokerConnection] = {}
        self._opening: dict[int, asyncio.Lock] = {}
        self._closed = False

    async def request(self, peer: int, request: Any, version: int) -> Any:
        """Send ``request`` at ``version`` to broker ``peer`` and return its response;
        KafkaError (a KafkaConnectionError when the peer cannot be reached)."""
        conn = await self._connection(peer)
        try:
            return await conn.request(request, version, self.timeout_s)
        except KafkaError:
            self._drop(peer, conn)
            raise

    async def _connection(self, peer: int) -> BrokerConnection:
        if self._closed:
            raise KafkaConnectionError("the broker is stopping")
        lock = self._opening.setdefault(peer, asyncio.Lock())
        async with lock:
            conn = self._connections.get(peer)
            if conn is not None and not conn.is_closed:
                return conn
            endpoint = self.endpoint_of(peer)
            if endpoint is None:
                raise KafkaConnectionError(f"broker {peer} is not registered")
            conn = await BrokerConnection.open(
                *endpoint,
                client_id=f"broker-{self.broker_id}",
                node_id=peer,
                timeout_s=self.timeout_s,
            )
            self._connections[peer] = conn
            return conn

    def _drop(self, peer: int, conn: BrokerConnection) -> None:
        conn.close()
        if self._connections.get(peer) is conn:
            del self._connections[peer]

    def close(self) -> None:
        self._closed = True
        for conn in self._connections.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._connections.clear()
