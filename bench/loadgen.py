"""Load generators for the benchmark, each run as its own process by `bench/run.py`.

    python bench/loadgen.py produce  --bootstrap H:P --topic T --size 1024 --count N --acks 1
    python bench/loadgen.py latency  --bootstrap H:P --topic T --size 1024 --rate 2000 --seconds 10
    python bench/loadgen.py fetch    --bootstrap H:P --topic T --partitions 1
    python bench/loadgen.py consume  --bootstrap H:P --topic T --partitions 1 \
        [--isolation read_committed|read_uncommitted] [--expect N]
    python bench/loadgen.py txn-produce --bootstrap H:P --topic T --size 1024 --count N \
        --commit-ms 100 [--abort-every 10]
    python bench/loadgen.py failover --bootstrap H:P --topic T --partition 0 --rate 500 --acks all

Every command connects and warms up first, prints `ready`, waits for a line on stdin (so that
`run.py` can start several workers together and sample the broker's CPU around the measured
part only), runs, and prints one JSON object: what it did, the CLOCK_MONOTONIC instants it
started and ended (comparable across processes), and its own CPU seconds (to tell a
client-bound run from a broker-bound one).

`failover` goes on after `go`: a second line, `kill T`, says when the leader was killed (see
cmd_failover).

`produce`, `latency`, `txn-produce`, `failover` and `consume` use confluent-kafka (librdkafka).
`fetch` is a hand-rolled Fetch v12 client with no record parsing beyond batch headers (no
library in the way): it measures what the broker can serve, the figure to hold against loopback
TCP bandwidth.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import struct
import sys
import threading
import time
from typing import Any

PRODUCE_LINGER_MS = 5  # librdkafka's default; batches fill to batch.size under load anyway
PRODUCE_BATCH_BYTES = 1_000_000  # librdkafka's default batch.size
PRODUCE_QUEUE_KBYTES = 1 << 20  # librdkafka's default queue.buffering.max.kbytes (1 GiB)
PRODUCE_QUEUE_MESSAGES = 1_000_000  # 10x the default: no stalls in produce() with 100 B values
LATENCY_LINGER_MS = 0  # latency runs measure the broker, not librdkafka's batching wait
WARMUP_MESSAGES = 2_000  # connections, metadata and the first batches before the clock starts
TXN_TIMEOUT_S = 60.0  # bound on one transactional call; a healthy broker answers in ms
# A transaction's records are sent while it is open, not queued for its commit to drain: the
# queue holds what a broker takes in about 100 ms, not librdkafka's default 1 GiB.
TXN_QUEUE_KBYTES = 8 * 1024
FAILOVER_FLUSH_S = 30.0  # after the run: what is still queued goes to the new leader
TXN_CLOCK_EVERY = 64  # messages between looks at the clock: ~1 ms of produce() at 1 KiB
FETCH_MAX_WAIT_MS = 500  # Kafka consumer default; only the last fetch at the end ever waits
FETCH_MAX_BYTES = 50 * 1024 * 1024  # fetch.max.bytes, the consumer default
PARTITION_MAX_BYTES = 1024 * 1024  # max.partition.fetch.bytes, the consumer default
CONSUME_BATCH = 10_000  # messages per Consumer.consume() call
CLIENT_ID = b"mms-bench"


def _client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
    config.update(extra)
    return config


def _wait_for_go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# --------------------------------------------------------------------------- produce


def _producer_config(args: argparse.Namespace, linger_ms: int) -> dict[str, Any]:
    return _client_config(
        args.bootstrap,
        **{
            "acks": str(args.acks),
            "linger.ms": linger_ms,
            "batch.size": PRODUCE_BATCH_BYTES,
            "compression.type": "none",
            "enable.idempotence": False,
            "queue.buffering.max.kbytes": PRODUCE_QUEUE_KBYTES,
            "queue.buffering.max.messages": PRODUCE_QUEUE_MESSAGES,
            "delivery.report.only.error": True,
        },
    )


def cmd_produce(args: argparse.Namespace) -> None:
    from confluent_kafka import Producer

    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    producer = Producer(_producer_config(args, PRODUCE_LINGER_MS))
    payload = os.urandom(args.size)  # compression is off; random bytes keep it honest anyway
    topic = args.topic
    for _ in range(WARMUP_MESSAGES):
        producer.produce(topic, payload, on_delivery=on_delivery)
    producer.flush(30)
    _wait_for_go()
    produce = producer.produce
    poll = producer.poll
    cpu0 = _cpu_s()
    start = time.monotonic()
    sent = 0
    while sent < args.count:
        try:
            produce(topic, payload, on_delivery=on_delivery)
        except BufferError:
            poll(0.001)
            continue
        sent += 1
        if not sent & 0x3FF:
            poll(0)
    left = producer.flush(120)
    end = time.monotonic()
    _report(
        messages=sent - left,
        bytes=(sent - left) * args.size,
        start=start,
        end=end,
        client_cpu_s=_cpu_s() - cpu0,
        errors=errors,
    )


def cmd_latency(args: argparse.Namespace) -> None:
    """A fixed rate; latency is librdkafka's produce-to-acknowledgement time of each message."""
    from confluent_kafka import Producer

    samples: list[float] = []
    errors: list[str] = []
    measuring = [False]

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            if len(errors) < 10:
                errors.append(str(err))
        elif measuring[0]:
            samples.append(msg.latency())

    config = _producer_config(args, LATENCY_LINGER_MS)
    config["delivery.report.only.error"] = False
    producer = Producer(config)
    payload = os.urandom(args.size)
    for _ in range(100):
        producer.produce(args.topic, payload, on_delivery=on_delivery)
    producer.flush(30)
    _wait_for_go()

    def run_for(seconds: float) -> int:
        # Between sends the thread waits in poll(), which returns as soon as an
        # acknowledgement arrives: latency() is read when librdkafka hands it over, not
        # whenever a sleep ends.
        begin = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now - begin >= seconds:
                return sent
            due = int((now - begin) * args.rate) + 1
            while sent < due:
                producer.produce(args.topic, payload, on_delivery=on_delivery)
                sent += 1
            producer.poll(max(0.0, begin + sent / args.rate - time.monotonic()))

    run_for(args.warmup)
    producer.flush(30)
    measuring[0] = True
    cpu0 = _cpu_s()
    start = time.monotonic()
    sent = run_for(args.seconds)
    producer.flush(30)
    end = time.monotonic()
    _report(
        messages=sent,
        bytes=sent * args.size,
        start=start,
        end=end,
        client_cpu_s=_cpu_s() - cpu0,
        latencies_ms=[round(s * 1000, 3) for s in samples],
        errors=errors,
    )


def cmd_txn_produce(args: argparse.Namespace) -> None:
    """Transactions of `--commit-ms` of producing each, back to back, until `--count` records
    are committed; every `--abort-every`th transaction is aborted instead (flushed first, so
    its records are in the log, marked aborted). The last transaction is always committed, so a
    read_committed reader ends where a read_uncommitted one does. Each transaction is flushed,
    then committed: the reported commit latency is commit_transaction()'s (EndTxn to its
    answer), not the drain of records still queued, which `flushes_ms` reports."""
    from confluent_kafka import Producer

    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    config = _producer_config(args, PRODUCE_LINGER_MS)
    del config["acks"], config["enable.idempotence"]  # transactions: idempotent, acks=all
    config["transactional.id"] = f"bench-txn-{os.getpid()}"
    config["queue.buffering.max.kbytes"] = TXN_QUEUE_KBYTES
    producer = Producer(config)
    producer.init_transactions(TXN_TIMEOUT_S)
    payload = os.urandom(args.size)
    topic = args.topic
    producer.begin_transaction()
    for _ in range(WARMUP_MESSAGES):
        producer.produce(topic, payload, on_delivery=on_delivery)
    producer.commit_transaction(TXN_TIMEOUT_S)
    _wait_for_go()
    produce = producer.produce
    poll = producer.poll
    monotonic = time.monotonic
    period = args.commit_ms / 1000
    commits_ms: list[float] = []
    flushes_ms: list[float] = []
    committed = aborted = transactions = 0
    cpu0 = _cpu_s()
    start = monotonic()
    while committed < args.count:
        producer.begin_transaction()
        transactions += 1
        abort = args.abort_every > 0 and transactions % args.abort_every == 0
        due = monotonic() + period
        sent = 0
        while abort or committed + sent < args.count:
            try:
                produce(topic, payload, on_delivery=on_delivery)
            except BufferError:
                poll(0.001)
                continue
            sent += 1
            if not sent % TXN_CLOCK_EVERY:
                poll(0)
                if monotonic() >= due:
                    break
        began = monotonic()
        if producer.flush(TXN_TIMEOUT_S):
            raise RuntimeError("records still queued after the flush timeout")
        flushed = monotonic()
        if abort:  # its records are in the log, not purged from the queue
            producer.abort_transaction(TXN_TIMEOUT_S)
            aborted += sent
            continue
        producer.commit_transaction(TXN_TIMEOUT_S)
        commits_ms.append(round((monotonic() - flushed) * 1000, 3))
        flushes_ms.append(round((flushed - began) * 1000, 3))
        committed += sent
    end = monotonic()
    _report(
        messages=committed,
        bytes=committed * args.size,
        aborted_messages=aborted,
        warmup_messages=WARMUP_MESSAGES,  # one committed transaction before `start`
        transactions=transactions,
        commits_ms=commits_ms,
        flushes_ms=flushes_ms,
        start=start,
        end=end,
        client_cpu_s=_cpu_s() - cpu0,
        errors=errors,
    )


def cmd_failover(args: argparse.Namespace) -> None:
    """A fixed rate into one partition (`--partition`) while the benchmark kills its leader.

    After `go`, the benchmark sends a line `kill T`: T is the CLOCK_MONOTONIC instant just
    after its SIGKILL. Every record carries its produce instant to its delivery callback;
    `failover_ms` is from T to the first acknowledgement of a record produced at or after T
    (the new leader took it with the acks asked for), as this process sees it in poll(), which
    returns as soon as librdkafka hands an acknowledgement over. The run goes on for `--after`
    seconds past that acknowledgement (or gives up `--limit` seconds after the kill), then
    flushes; records produced before the kill and acknowledged after it (retried on the new
    leader) are counted, not timed."""
    from confluent_kafka import Producer

    errors: list[str] = []
    kill_at: list[float] = []  # set once, by the stdin thread
    first_after: list[float] = []  # the ack instant of the first record produced after T
    counts = {"acked_before": 0, "acked_retried": 0, "acked_after": 0}
    last_before = [0.0]  # the last acknowledgement received before T

    def on_delivery(produced_at: float, err: Any, _msg: Any) -> None:
        now = time.monotonic()
        if err is not None:
            if len(errors) < 10:
                errors.append(str(err))
            return
        if not kill_at or now < kill_at[0]:
            counts["acked_before"] += 1
            last_before[0] = now
        elif produced_at < kill_at[0]:
            counts["acked_retried"] += 1
        else:
            counts["acked_after"] += 1
            if not first_after:
                first_after.append(now)

    def read_kill() -> None:
        for line in sys.stdin:
            word, _, value = line.strip().partition(" ")
            if word == "kill":
                kill_at.append(float(value))
                return

    config = _producer_config(args, LATENCY_LINGER_MS)
    config["delivery.report.only.error"] = False
    config["log.connection.close"] = False  # the leader's connection goes: that is the point
    producer = Producer(config)
    payload = os.urandom(args.size)
    topic, partition = args.topic, args.partition
    for _ in range(100):
        producer.produce(
            topic, payload, partition=partition, on_delivery=functools.partial(on_delivery, 0.0)
        )
    producer.flush(30)
    _wait_for_go()
    threading.Thread(target=read_kill, name="kill-line", daemon=True).start()
    cpu0 = _cpu_s()
    start = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        if first_after and now >= first_after[0] + args.after:
            break
        if kill_at and now >= kill_at[0] + args.limit:
            break
        due = int((now - start) * args.rate) + 1
        while sent < due:
            callback = functools.partial(on_delivery, time.monotonic())
            producer.produce(topic, payload, partition=partition, on_delivery=callback)
            sent += 1
        producer.poll(max(0.0, start + sent / args.rate - time.monotonic()))
    end = time.monotonic()
    left = producer.flush(FAILOVER_FLUSH_S)
    killed = kill_at[0] if kill_at else None
    _report(
        messages=sent,
        bytes=sent * args.size,
        start=start,
        end=end,
        kill_at=killed,
        first_ack_after_kill=first_after[0] if first_after else None,
        failover_ms=(first_after[0] - killed) * 1000 if first_after and killed else None,
        last_ack_before_kill_ms=(killed - last_before[0]) * 1000 if killed else None,
        unacknowledged=left,
        client_cpu_s=_cpu_s() - cpu0,
        errors=errors,
        **counts,
    )


# --------------------------------------------------------------------------- consume


def cmd_consume(args: argparse.Namespace) -> None:
    """librdkafka's consumer from the beginning of the topic to its high watermarks, or until
    `--expect` records arrived (a topic with transaction markers, or aborted records that
    read_committed skips). `--isolation` sets isolation.level (librdkafka's default:
    read_committed)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    config = _client_config(
        args.bootstrap,
        **{
            "group.id": f"bench-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        },
    )
    if args.isolation:
        config["isolation.level"] = args.isolation
    consumer = Consumer(config)
    count = args.expect
    for p in range(args.partitions if not count else 0):
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
        count += high - low
    consumer.assign(
        [TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(args.partitions)]
    )
    first = None
    while first is None or first.error() is not None:  # connected, offsets resolved, fetching
        first = consumer.poll(1.0)
    _wait_for_go()
    cpu0 = _cpu_s()
    start = time.monotonic()
    received = 1
    size = len(first)
    deadline = start + args.limit
    while received < count and time.monotonic() < deadline:
        # Never more than remain: consume() waits out its timeout for a batch it cannot fill.
        for msg in consumer.consume(min(CONSUME_BATCH, count - received), 1.0):
            if msg.error() is None:
                received += 1
                size += len(msg)
    end = time.monotonic()
    consumer.close()
    _report(messages=received, bytes=size, start=start, end=end, client_cpu_s=_cpu_s() - cpu0)


_REQ_HEAD = struct.Struct(">hhih")  # api key, version, correlation id, client id length
_FETCH_HEAD = struct.Struct(">iiiibii")  # replica, max wait, min bytes, max bytes, iso, session
_FETCH_PART = struct.Struct(">iiqiqi")  # partition, leader epoch, offset, last epoch, lso, max
_SIZE = struct.Struct(">i")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_HW_LSO = struct.Struct(">qq")  # high watermark, last stable offset
FETCH_KEY = 1
FETCH_VERSION = 12  # flexible, topics by name: what librdkafka 2.x sends
BATCH_LENGTH_AT = 8  # baseOffset(8), then batchLength(4)
LAST_OFFSET_DELTA_AT = 23  # baseOffset 8, length 4, leader epoch 4, magic 1, crc 4, attributes 2
BATCH_OVERHEAD = 12  # baseOffset and batchLength are outside batchLength


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _skip_tags(buf: memoryview, pos: int) -> int:
    count, pos = _read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = _read_uvarint(buf, pos)
        size, pos = _read_uvarint(buf, pos)
        pos += size
    return pos


ISOLATION_LEVELS = {"read_uncommitted": 0, "read_committed": 1}  # Fetch's isolation_level


def _fetch_request(
    correlation: int, topic: bytes, offsets: dict[int, int], isolation: int = 0
) -> bytes:
    body = bytearray(_REQ_HEAD.pack(FETCH_KEY, FETCH_VERSION, correlation, len(CLIENT_ID)))
    body += CLIENT_ID + b"\0"  # client id, header tags
    body += _FETCH_HEAD.pack(-1, FETCH_MAX_WAIT_MS, 1, FETCH_MAX_BYTES, isolation, 0, -1)
    body += _uvarint(2) + _uvarint(len(topic) + 1) + topic + _uvarint(len(offsets) + 1)
    for partition, offset in offsets.items():
        body += _FETCH_PART.pack(partition, -1, offset, -1, -1, PARTITION_MAX_BYTES) + b"\0"
    body += b"\0" + _uvarint(1) + _uvarint(1) + b"\0"  # topic tags, forgotten, rack, tags
    return _SIZE.pack(len(body)) + bytes(body)


def _parse_fetch(
    buf: memoryview, offsets: dict[int, int], hws: dict[int, int], lsos: dict[int, int]
) -> int:
    """Advance `offsets` past the complete batches of each partition; their bytes."""
    pos = 4  # correlation id
    pos = _skip_tags(buf, pos)
    pos += 4  # throttle
    (error,) = _I16.unpack_from(buf, pos)
    if error:
        raise RuntimeError(f"fetch error {error}")
    pos += 2 + 4  # error, session id
    topics, pos = _read_uvarint(buf, pos)
    total = 0
    for _ in range(topics - 1):
        name_len, pos = _read_uvarint(buf, pos)
        pos += name_len - 1
        parts, pos = _read_uvarint(buf, pos)
        for _ in range(parts - 1):
            (partition,) = _I32.unpack_from(buf, pos)
            (error,) = _I16.unpack_from(buf, pos + 4)
            if error:
                raise RuntimeError(f"fetch error {error} on partition {partition}")
            (hws[partition], lsos[partition]) = _HW_LSO.unpack_from(buf, pos + 6)
            pos += 4 + 2 + 8 + 8 + 8
            aborted, pos = _read_uvarint(buf, pos)
            for _ in range(max(aborted - 1, 0)):
                pos = _skip_tags(buf, pos + 16)
            pos += 4  # preferred read replica
            size, pos = _read_uvarint(buf, pos)
            size = max(size - 1, 0)
            end = pos + size
            batch = pos
            while batch + BATCH_OVERHEAD <= end:
                (length,) = _I32.unpack_from(buf, batch + BATCH_LENGTH_AT)
                if batch + BATCH_OVERHEAD + length > end:
                    break  # a partial batch at the end of the slice, as Kafka may send
                (base,) = _I64.unpack_from(buf, batch)
                (delta,) = _I32.unpack_from(buf, batch + LAST_OFFSET_DELTA_AT)
                offsets[partition] = base + delta + 1
                batch += BATCH_OVERHEAD + length
            total += batch - pos  # whole batches only: a partial one is fetched again
            pos = _skip_tags(buf, end)
        pos = _skip_tags(buf, pos)
    return total


def _recv_exact(sock: socket.socket, buf: memoryview, n: int) -> None:
    got = 0
    while got < n:
        r = sock.recv_into(buf[got:n])
        if r == 0:
            raise ConnectionError("broker closed the connection")
        got += r


def cmd_fetch(args: argparse.Namespace) -> None:
    """Fetch every partition from offset 0 to its high watermark (read_committed: its last
    stable offset), one request at a time. Aborted batches are fetched and counted like the
    rest: a read_committed reader receives them too and drops them itself."""
    host, port = args.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = memoryview(bytearray(FETCH_MAX_BYTES + (1 << 20)))
    topic = args.topic.encode()
    offsets = dict.fromkeys(range(args.partitions), 0)
    hws = dict.fromkeys(range(args.partitions), -1)
    lsos = dict.fromkeys(range(args.partitions), -1)
    ends = lsos if args.isolation == "read_committed" else hws
    isolation = ISOLATION_LEVELS[args.isolation or "read_uncommitted"]
    correlation = 0

    def round_trip() -> int:
        nonlocal correlation
        correlation += 1
        sock.sendall(_fetch_request(correlation, topic, offsets, isolation))
        _recv_exact(sock, buf, 4)
        (size,) = _SIZE.unpack_from(buf, 0)
        _recv_exact(sock, buf, size)
        return _parse_fetch(buf[:size], offsets, hws, lsos)

    round_trip()  # the high watermarks; also warms the connection
    offsets = dict.fromkeys(range(args.partitions), 0)
    _wait_for_go()
    cpu0 = _cpu_s()
    start = time.monotonic()
    total = 0
    requests = 0
    while any(offsets[p] < ends[p] for p in offsets):
        total += round_trip()
        requests += 1
    end = time.monotonic()
    sock.close()
    _report(
        messages=sum(ends.values()),
        bytes=total,
        requests=requests,
        start=start,
        end=end,
        client_cpu_s=_cpu_s() - cpu0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("produce", "latency", "consume", "fetch", "txn-produce", "failover"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--size", type=int, default=1024)
        p.add_argument("--count", type=int, default=100_000)
        p.add_argument("--acks", default="1")
        p.add_argument("--rate", type=int, default=2_000)
        p.add_argument("--seconds", type=float, default=10.0)
        p.add_argument("--warmup", type=float, default=1.0)
        p.add_argument("--partitions", type=int, default=1)
        p.add_argument("--limit", type=float, default=300.0, help="give up after this long")
        p.add_argument("--isolation", choices=sorted(ISOLATION_LEVELS), default=None)
        p.add_argument("--expect", type=int, default=0, help="records to consume (0: to the end)")
        p.add_argument("--commit-ms", type=float, default=100.0, help="a transaction's length")
        p.add_argument("--abort-every", type=int, default=0, help="abort every Nth transaction")
        p.add_argument("--partition", type=int, default=0, help="failover: the partition")
        p.add_argument("--after", type=float, default=1.0, help="failover: run on this long")
    args = parser.parse_args(argv)
    commands = {
        "produce": cmd_produce,
        "latency": cmd_latency,
        "consume": cmd_consume,
        "fetch": cmd_fetch,
        "txn-produce": cmd_txn_produce,
        "failover": cmd_failover,
    }
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
