"""Micro-benchmarks of the per-request work on the produce and fetch paths, in-process.

    python bench/micro.py [--seconds 1.0]

CPU microseconds per operation (process time, so other load on the machine disturbs it less
than wall time), for the request versions librdkafka 2.x sends: Produce v10, Fetch v12.
A guide for codec and dispatch changes; the end-to-end figures are `bench/run.py`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# `--src DIR` (before any other argument) measures another source tree, e.g. a baseline.
SRC = Path(sys.argv[2]) if sys.argv[1:2] == ["--src"] else REPO_ROOT / "src"
sys.path.insert(0, str(SRC))

from metamorphostreams.protocol._generated.fetch import (  # noqa: E402
    FetchRequest,
    FetchResponse,
)
from metamorphostreams.protocol._generated.headers import RequestHeader  # noqa: E402
from metamorphostreams.protocol._generated.produce import (  # noqa: E402
    ProduceRequest,
    ProduceResponse,
)
from metamorphostreams.protocol.headers import (  # noqa: E402
    decode_request_header,
    encode_response_header,
    peek_request_ids,
)

PRODUCE_VERSION = 10
FETCH_VERSION = 12
RECORDS_BYTES = 1_000_000  # one full librdkafka batch


class _Region:
    """Stands in for a segment file region: sized, opaque."""

    size = RECORDS_BYTES


def _frame(api_key: int, version: int, header_version: int, body: list[Any]) -> bytes:
    header = RequestHeader(
        request_api_key=api_key, request_api_version=version, correlation_id=7, client_id="rdkafka"
    ).to_bytes(header_version)
    return header + b"".join(bytes(p) for p in body)


def produce_frame(records: bytes) -> bytes:
    req = ProduceRequest(
        acks=1,
        timeout_ms=30_000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="produce_1k_acks1-r0",
                partition_data=[ProduceRequest.PartitionProduceData(index=0, records=records)],
            )
        ],
    )
    return _frame(0, PRODUCE_VERSION, 2, req.encode(PRODUCE_VERSION))


def fetch_frame() -> bytes:
    req = FetchRequest(
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52_428_800,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            FetchRequest.FetchTopic(
                topic="consume-1g",
                partitions=[
                    FetchRequest.FetchPartition(
                        partition=0,
                        current_leader_epoch=0,
                        fetch_offset=123_456,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1_048_576,
                    )
                ],
            )
        ],
        rack_id="",
    )
    return _frame(1, FETCH_VERSION, 2, req.encode(FETCH_VERSION))


def produce_response() -> ProduceResponse:
    return ProduceResponse(
        responses=[
            ProduceResponse.TopicProduceResponse(
                name="produce_1k_acks1-r0",
                partition_responses=[
                    ProduceResponse.PartitionProduceResponse(
                        index=0,
                        error_code=0,
                        base_offset=123_456,
                        log_append_time_ms=-1,
                        log_start_offset=0,
                        record_errors=[],
                        error_message=None,
                    )
                ],
            )
        ]
    )


def fetch_response() -> FetchResponse:
    return FetchResponse(
        error_code=0,
        session_id=0,
        responses=[
            FetchResponse.FetchableTopicResponse(
                topic="consume-1g",
                partitions=[
                    FetchResponse.PartitionData(
                        partition_index=0,
                        error_code=0,
                        high_watermark=1_000_000,
                        last_stable_offset=1_000_000,
                        log_start_offset=0,
                        aborted_transactions=None,
                        preferred_read_replica=-1,
                        records=_Region(),
                    )
                ],
            )
        ],
    )


SLICES = 20  # the best slice: other load on the machine only ever makes a slice slower


def per_op_us(fn: Callable[[], object], seconds: float) -> float:
    """CPU microseconds per call of `fn`, the best of SLICES slices of `seconds` / SLICES."""
    best = float("inf")
    n = 1
    while True:  # calibrate to ~10 ms a batch
        t = time.process_time()
        for _ in range(n):
            fn()
        if time.process_time() - t > 0.01:
            break
        n *= 2
    for _ in range(SLICES):
        t = time.process_time()
        calls = 0
        while time.process_time() - t < seconds / SLICES:
            for _ in range(n):
                fn()
            calls += n
        best = min(best, (time.process_time() - t) / calls * 1e6)
    return best


def cases() -> dict[str, Callable[[], object]]:
    records = bytes(RECORDS_BYTES)
    pframe = produce_frame(records)
    fframe = fetch_frame()
    presp = produce_response()
    fresp = fetch_response()

    def decode(frame: bytes, cls: Any, version: int) -> Callable[[], object]:
        def run() -> object:
            peek_request_ids(frame)
            _, reader = decode_request_header(memoryview(frame))
            return cls.read(reader, version)

        return run

    out: dict[str, Callable[[], object]] = {
        "produce v10 request decode (header + body)": decode(pframe, ProduceRequest, 10),
        "produce v10 response encode": lambda: presp.encode(PRODUCE_VERSION),
        "fetch v12 request decode (header + body)": decode(fframe, FetchRequest, 12),
        "fetch v12 response encode": lambda: fresp.encode(FETCH_VERSION),
        "response header encode (flexible)": lambda: encode_response_header(0, 10, 7),
    }
    return out


def dispatch_cases() -> dict[str, Callable[[], object]]:
    """Dispatcher.handle end to end with handlers that return canned responses."""
    from metamorphostreams.protocol.api_versions import SERVED
    from metamorphostreams.server.dispatch import Dispatcher

    presp = produce_response()
    fresp = fetch_response()

    async def produce_handler(_ctx: Any, _req: Any) -> Any:
        return presp

    async def fetch_handler(_ctx: Any, _req: Any) -> Any:
        return fresp

    handlers: dict[int, Any] = dict.fromkeys(SERVED, produce_handler)
    handlers[1] = fetch_handler
    dispatcher = Dispatcher(broker=None, handlers=handlers)  # type: ignore[arg-type]
    pframe = produce_frame(bytes(RECORDS_BYTES))
    fframe = fetch_frame()

    def drive(frame: bytes) -> Callable[[], object]:
        def run() -> object:
            coro = dispatcher.handle(None, frame)  # type: ignore[arg-type]
            try:
                coro.send(None)
            except StopIteration as stop:
                return stop.value
            raise AssertionError("the canned handler awaited something")

        return run

    return {
        "dispatch produce v10 (decode, canned response, encode)": drive(pframe),
        "dispatch fetch v12 (decode, canned response, encode)": drive(fframe),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="micro")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--src", type=Path, help="the source tree to measure (first argument)")
    args = parser.parse_args(argv)
    asyncio.set_event_loop(asyncio.new_event_loop())
    for name, fn in {**cases(), **dispatch_cases()}.items():
        print(f"{per_op_us(fn, args.seconds):8.2f} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
