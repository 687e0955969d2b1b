"""Graceful shutdown under load: SIGTERM while producers stream, a group consumer
long-polls and raw clients have requests in flight. The broker must exit 0, write the
clean-shutdown marker, answer or close every in-flight request (never leave a client
waiting), and the next start must trust its files instead of recovering them. Nothing
acknowledged before the signal is lost, and the producers deliver the rest afterwards.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from helpers.broker_process import BrokerFactory
from helpers.confluent import (
    DeliveryLog,
    client_config,
    consume_all,
    create_topic,
    offset_of,
    produce_with_backpressure,
    value_of,
)

from .conftest import Figures
from .support import broker_pid, last_start_log, peak_rss_mib

PARTITIONS = 3
PRODUCERS = 3
LOAD_S = 2.0  # load before the signal
RAW_CLIENTS = 20  # connections with pipelined requests in flight at the signal
PIPELINED = 50


class Streamer(threading.Thread):
    """An idempotent acks=all producer streaming numbered messages until told to stop."""

    def __init__(self, bootstrap: str, topic: str, n: int) -> None:
        super().__init__(name=f"producer-{n}", daemon=True)
        self.topic = topic
        self.n = n
        self.log = DeliveryLog()
        self.sent = 0
        self.stop = threading.Event()
        self.fatal: list[str] = []
        self.producer = Producer(
            client_config(
                bootstrap,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "message.timeout.ms": 120_000,
                    "reconnect.backoff.ms": 50,
                    "reconnect.backoff.max.ms": 500,
                    "error_cb": self._on_error,
                },
            )
        )

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal.append(f"{err.name()}: {err.str()}")

    def run(self) -> None:
        while not self.stop.is_set():
            for _ in range(50):
                message_id = self.n * 10_000_000 + self.sent
                produce_with_backpressure(
                    self.producer,
                    topic=self.topic,
                    partition=self.sent % PARTITIONS,
                    value=b"%010d" % message_id,
                    on_delivery=self.log.callback(message_id),
                )
                self.sent += 1
            self.producer.poll(0.005)


def _raw_in_flight(port: int) -> socket.socket:
    """A connection with PIPELINED Metadata requests sent and none of the answers read."""
    from kafka.protocol.metadata import MetadataRequest

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    frames = b""
    for n in range(PIPELINED):
        request = MetadataRequest[1](topics=None)
        request.with_header(correlation_id=n, client_id="in-flight")
        frames += bytes(request.encode(header=True, framed=True))
    sock.sendall(frames)
    return sock


def _answers_then_close(sock: socket.socket) -> int:
    """Read until the broker closes: whole answers in order, maybe a cut-off one, then EOF;
    never silence. Returns how many whole answers came."""
    buf = bytearray()
    try:
        while True:
            chunk = sock.recv(1 << 16)  # the socket timeout turns a hang into a failure
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    answered = 0
    pos = 0
    while len(buf) - pos >= 8:
        size, correlation_id = struct.unpack_from(">ii", buf, pos)
        if len(buf) - pos - 4 < size:
            break  # cut off by the close: allowed, the client sees a closed connection
        assert correlation_id == answered, f"answer {correlation_id} out of order"
        answered += 1
        pos += 4 + size
    return answered


@pytest.mark.timeout(180)
def test_sigterm_under_load_is_clean(broker_factory: BrokerFactory, figures: Figures) -> None:
    broker = broker_factory({"group.initial.rebalance.delay.ms": 0})
    topic = f"shutdown-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    streamers = [Streamer(broker.bootstrap, topic, n) for n in range(PRODUCERS)]
    for s in streamers:
        s.start()
    consumer = Consumer(
        client_config(
            broker.bootstrap,
            **{
                "group.id": f"g-{topic}",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 500,  # long polls in flight at the signal
            },
        )
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + LOAD_S
    consumed = 0
    while time.monotonic() < deadline:
        consumed += sum(1 for m in consumer.consume(500, timeout=0.1) if m.error() is None)
    raw = [_raw_in_flight(broker.port) for _ in range(RAW_CLIENTS)]
    acked_before = {i for s in streamers for i in s.log.delivered.copy()}

    peak_rss = peak_rss_mib(broker_pid(broker))
    began = time.monotonic()
    broker.stop()  # SIGTERM; asserts exit code 0
    stop_s = time.monotonic() - began
    stop_log = last_start_log(broker)
    assert (broker.data_dir / ".kafka_cleanshutdown").exists(), "no clean-shutdown marker"
    assert "stopped cleanly" in stop_log, stop_log[-3000:]
    answered = [_answers_then_close(sock) for sock in raw]
    for sock in raw:
        sock.close()

    broker.start()
    start_log = last_start_log(broker)
    assert "(clean shutdown)" in start_log, start_log[-3000:]
    assert "recovering unflushed segment" not in start_log, "recovery after a clean shutdown"
    assert "despite a clean shutdown" not in start_log, "damage found after a clean shutdown"

    for s in streamers:
        s.stop.set()
    for s in streamers:
        s.join(30)
        assert s.producer.flush(120) == 0, f"producer {s.n} could not deliver after restart"
        assert not s.fatal, f"producer {s.n}: fatal errors {s.fatal}"
    consumer.close()

    got = consume_all(broker.bootstrap, topic, range(PARTITIONS))
    ids: list[int] = []
    for partition, messages in got.items():
        offsets = [offset_of(m) for m in messages]
        assert offsets == list(range(len(offsets))), f"partition {partition}: offset gaps"
        part_ids = [int(value_of(m)) for m in messages]
        for n in range(PRODUCERS):  # each producer's messages in its order
            mine = [i for i in part_ids if i // 10_000_000 == n]
            assert mine == sorted(mine), f"partition {partition}: producer {n} out of order"
        ids += part_ids
    assert len(ids) == len(set(ids)), "duplicates after the shutdown"
    acked = {i for s in streamers for i in s.log.delivered.copy()}
    assert acked_before <= acked <= set(ids), "acknowledged messages lost"
    failed = sum(len(s.log.failed) for s in streamers)
    assert failed == 0, f"{failed} messages failed"

    figures("producers / messages acked", (PRODUCERS, len(acked)))
    figures("acked before SIGTERM", len(acked_before))
    figures("consumed under load", consumed)
    figures("stop s", round(stop_s, 2))
    figures("peak RSS MiB under load", round(peak_rss, 1))
    figures("in-flight answers before close (of 50 each)", (min(answered), max(answered)))
