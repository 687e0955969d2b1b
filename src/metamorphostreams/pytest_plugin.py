"""A pytest plugin: a fresh in-process Kafka-compatible broker per test.

Registered through the ``pytest11`` entry point, so installing metamorphostreams is enough::

    def test_roundtrip(kafka_bootstrap):
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        ...

Fixtures:
- ``kafka_bootstrap``: "127.0.0.1:<port>" of a broker started for this test on a free port
  with a temporary data directory (ready in milliseconds; stopped and removed afterwards).
- ``kafka_broker``: the same broker as a ``BrokerThread`` (``.bootstrap``, ``.data_dir``,
  ``.restart()``).
- ``kafka_broker_factory``: ``factory({"num.partitions": "3"})`` starts more brokers with
  Kafka ``server.properties`` settings.

The broker runs on its own event loop in a daemon thread, so it serves synchronous clients
(confluent-kafka, kafka-python) and asyncio clients (aiokafka) of the test alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .server.broker import Broker

__all__ = ["BrokerThread", "kafka_bootstrap", "kafka_broker", "kafka_broker_factory"]

START_TIMEOUT_S = 30.0  # a broker starts in milliseconds; the margin absorbs a loaded CI box
STOP_TIMEOUT_S = 30.0
# Tests want topics on first use and quick group joins, like a developer's local Kafka.
TEST_DEFAULTS = {"group.initial.rebalance.delay.ms": "0"}


class BrokerThread:
    """One in-process broker on a private event loop in a daemon thread. Thread-safe."""

    def __init__(
        self, data_dir: str | Path, props: Mapping[str, str] | None = None, *, port: int = 0
    ) -> None:
        self.data_dir = Path(data_dir)
        self.props = {**TEST_DEFAULTS, **(props or {})}
        self.port = port
        self.host = "127.0.0.1"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> BrokerThread:
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=f"mms-broker-{self.data_dir.name}", daemon=True
        )
        self._thread.start()
        self.port = ready.result(START_TIMEOUT_S)
        return self

    def _main(self, ready: concurrent.futures.Future[int]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        # Imported here: pytest loads this plugin in every session of every project that
        # installs us, and most tests never start a broker.
        from .server.broker import Broker

        try:
            broker = Broker(self.data_dir, host=self.host, port=self.port, props=self.props)
            loop.run_until_complete(broker.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        self._broker = broker
        ready.set_result(broker.port)
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        loop, broker, thread = self._loop, self._broker, self._thread
        if loop is None or thread is None:
            return
        if broker is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(STOP_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        self._loop = self._thread = self._broker = None

    def restart(self) -> BrokerThread:
        """Clean stop, then start again on the same data directory and port."""
        self.stop()
        return self.start()

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def kafka_broker_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., BrokerThread]]:
    started: list[BrokerThread] = []

    def start(props: Mapping[str, Any] | None = None) -> BrokerThread:
        data = tmp_path_factory.mktemp("kafka-data")
        broker = BrokerThread(data, {k: str(v) for k, v in (props or {}).items()}).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def kafka_broker(kafka_broker_factory: Callable[..., BrokerThread]) -> BrokerThread:
    """A fresh broker with Kafka's default config, for this test only."""
    return kafka_broker_factory()


@pytest.fixture
def kafka_bootstrap(kafka_broker: BrokerThread) -> str:
    """The bootstrap address ("127.0.0.1:<port>") of a fresh broker for this test."""
    return kafka_broker.bootstrap
