"""``mms broker``: run one broker in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..server.broker import Broker
from ..server.config import ConfigError, read_properties


def add_broker_parser(sub: Any) -> None:
    p = sub.add_parser("broker", help="run a broker", description="Run a Kafka-compatible broker.")
    p.add_argument("--data-dir", required=True, help="directory for logs and metadata")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=9092, help="port to listen on (9092; 0 = any)")
    p.add_argument("--broker-id", type=int, default=None, help="broker id (broker.id, 0)")
    p.add_argument(
        "--zookeeper",
        default=None,
        metavar="HOST:PORT[,...][/chroot]",
        help="join the cluster coordinated by this ZooKeeper (zookeeper.connect)",
    )
    p.add_argument("--rack", default=None, help="this broker's rack (broker.rack)")
    p.add_argument("--config", type=Path, default=None, help="a server.properties file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Kafka config override, e.g. --set num.partitions=3 (repeatable)",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (INFO)")
    p.set_defaults(run=run_broker)


def _props(args: argparse.Namespace) -> dict[str, str]:
    props: dict[str, str] = {}
    if args.config is not None:
        props.update(read_properties(args.config))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        props[key.strip()] = value.strip()
    if args.zookeeper:
        props["zookeeper.connect"] = args.zookeeper
    if args.rack:
        props["broker.rack"] = args.rack
    return props


async def _serve(broker: Broker) -> None:
    loop = asyncio.get_running_loop()
    stop = broker.stop_requested
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    where = f" in the cluster at {broker.cluster.connect}" if broker.cluster is not None else ""
    print(f"mms broker {broker.broker_id} ready on {broker.bootstrap}{where}", flush=True)
    try:
        await stop.wait()
    finally:
        await broker.stop()


def _event_loop_run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (MMS_EVENT_LOOP=asyncio: asyncio's own)."""
    if os.environ.get("MMS_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def run_broker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        broker = Broker(
            args.data_dir,
            host=args.host,
            port=args.port,
            broker_id=args.broker_id,
            props=_props(args),
        )
        _event_loop_run(_serve(broker))
    except (ConfigError, OSError) as e:  # ClusterStartError is a ConfigError
        print(f"mms broker: {e}", file=sys.stderr)
        return 1
    return broker.exit_code
