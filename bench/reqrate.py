"""Per-request cost of a broker: one small request at a time over a raw socket.

    python bench/reqrate.py --bootstrap H:P [--api produce|fetch] [--seconds 5] [--pid PID]

Sends Produce v10 (one 1 KiB record, acks=1) or Fetch v12 (offset 0, max wait 0) requests
back to back, one in flight, and prints round trips per second and, with `--pid`, the broker's
CPU microseconds per request (from /proc). A tool for profiling the request path (dispatch,
decoding, handlers, response writing) without a client library's batching; run it with
py-spy attached to the broker. Fetch reads a topic holding one batch of `--fetch-bytes`
(0: an empty topic), so every response carries the same records, from the page cache.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent / "src"), str(BENCH_DIR.parent), str(BENCH_DIR)]

import procstat  # noqa: E402

from metamorphostreams.protocol._generated.fetch import FetchRequest  # noqa: E402
from metamorphostreams.protocol._generated.headers import RequestHeader  # noqa: E402
from metamorphostreams.protocol._generated.produce import ProduceRequest  # noqa: E402
from metamorphostreams.protocol.records import build_batch  # noqa: E402
from tests.helpers.confluent import admin, create_topic  # noqa: E402

TOPIC = "reqrate"
RECORD_OVERHEAD = 80  # batch header plus one record's framing, roughly: the batch stays under
_SIZE = struct.Struct(">i")


def _frame(api_key: int, version: int, body: bytes) -> bytes:
    header = RequestHeader(
        request_api_key=api_key, request_api_version=version, correlation_id=1, client_id="rr"
    ).to_bytes(2)
    return _SIZE.pack(len(header) + len(body)) + header + body


def produce_frame(topic: str, value_bytes: int = 1024) -> bytes:
    batch = build_batch([(None, bytes(value_bytes))])
    req = ProduceRequest(
        acks=1,
        timeout_ms=30_000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.PartitionProduceData(index=0, records=batch)],
            )
        ],
    )
    return _frame(0, 10, req.to_bytes(10))


def fetch_frame(topic: str) -> bytes:
    req = FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=1 << 20,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=0, fetch_offset=0, partition_max_bytes=1 << 21
                    )
                ],
            )
        ],
    )
    return _frame(1, 12, req.to_bytes(12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reqrate")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--api", choices=("produce", "fetch"), default="produce")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pid", type=int, help="the broker's pid, for its CPU per request")
    parser.add_argument("--fetch-bytes", type=int, default=0, help="the fetched batch's size")
    args = parser.parse_args(argv)
    topic = TOPIC if args.api == "produce" else f"{TOPIC}-{args.fetch_bytes}"
    new = topic not in admin(args.bootstrap).list_topics(timeout=30).topics
    if new:
        create_topic(args.bootstrap, topic, 1)
    host, port = args.bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 22)
    view = memoryview(buf)

    def round_trip() -> None:
        sock.sendall(frame)
        got = 0
        need = 4
        while got < need:
            got += sock.recv_into(view[got:])
            if got >= 4:
                need = 4 + _SIZE.unpack_from(buf, 0)[0]

    if args.api == "fetch" and new and args.fetch_bytes:
        frame = produce_frame(topic, max(args.fetch_bytes - RECORD_OVERHEAD, 0))
        round_trip()
    frame = produce_frame(topic) if args.api == "produce" else fetch_frame(topic)
    for _ in range(200):
        round_trip()
    cpu0 = procstat.cpu_seconds(args.pid) if args.pid else 0.0
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds:
        for _ in range(100):
            round_trip()
        n += 100
    elapsed = time.monotonic() - start
    line = f"{args.api}: {n / elapsed:,.0f} round trips/s ({elapsed / n * 1e6:.0f} us each)"
    if args.pid:
        line += f", broker {(procstat.cpu_seconds(args.pid) - cpu0) / n * 1e6:.0f} CPU us/request"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
