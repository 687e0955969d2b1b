"""``mms log-dirs``: each broker's log directories and the partition logs in them.

Kafka's kafka-log-dirs.sh --describe: DescribeLogDirs to every broker (or those given),
the partitions optionally narrowed to some topics on our side, as Kafka's tool does.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..client import AsyncAdmin, LogDirDescription
from ..protocol.errors import ErrorCode
from ._common import CliError, client_config, print_json, print_table, run_async


def add_log_dirs_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser(
        "log-dirs",
        parents=[conn, json_opt],
        help="each broker's log directories: partition sizes and lags, volume space",
    )
    p.add_argument(
        "--broker",
        dest="brokers",
        action="append",
        type=_broker_ids,
        default=[],
        metavar="ID[,ID...]",
        help="only these brokers (repeatable; default: every broker in the cluster)",
    )
    p.add_argument(
        "--topic",
        dest="topics",
        action="append",
        default=[],
        metavar="TOPIC",
        help="only the partitions of this topic (repeatable; default: every partition)",
    )
    p.set_defaults(run=run_async(_log_dirs))


def _broker_ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a broker id: {part!r}") from None
    return ids


async def _log_dirs(args: argparse.Namespace) -> int:
    wanted = list(dict.fromkeys(b for ids in args.brokers for b in ids))
    topics = set(args.topics)
    async with AsyncAdmin(client_config(args)) as admin:
        cluster = sorted(b.node_id for b in (await admin.describe_cluster()).brokers)
        missing = [b for b in wanted if b not in cluster]
        if missing:
            raise CliError(
                f"no broker {','.join(map(str, missing))} in the cluster "
                f"(brokers: {','.join(map(str, cluster))})"
            )
        described = await admin.describe_log_dirs(sorted(wanted) if wanted else cluster)
    brokers: list[dict[str, Any]] = [
        {"broker": node, "log_dirs": [_dir_json(d, topics) for d in dirs.values()]}
        for node, dirs in sorted(described.items())
    ]
    if args.json:
        print_json({"brokers": brokers})
        return 0
    for i, broker in enumerate(brokers):
        for j, d in enumerate(broker["log_dirs"]):
            if i or j:
                print()
            print(f"Broker: {broker['broker']}  LogDir: {d['path']}  {_space(d)}")
            if d["error"] is not None:
                print(f"Error: {d['error']}")
                continue
            print_table(
                ["TOPIC", "PARTITION", "SIZE", "OFFSET_LAG", "FUTURE"],
                [
                    (p["topic"], p["partition"], p["size"], p["offset_lag"], p["is_future"])
                    for p in d["partitions"]
                ],
            )
    return 0


def _dir_json(d: LogDirDescription, topics: set[str]) -> dict[str, Any]:
    return {
        "path": d.path,
        "error": None if d.error_code == ErrorCode.NONE else _error_name(d.error_code),
        "total_bytes": d.total_bytes,
        "usable_bytes": d.usable_bytes,
        "is_cordoned": d.is_cordoned,
        "partitions": [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "size": info.size,
                "offset_lag": info.offset_lag,
                "is_future": info.is_future,
            }
            for tp, info in sorted(d.replicas.items())
            if not topics or tp.topic in topics
        ],
    }


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def _space(d: dict[str, Any]) -> str:
    if d["total_bytes"] is None:
        return "Space: unknown"
    cordoned = "  Cordoned" if d["is_cordoned"] else ""
    return f"Total: {d['total_bytes']} B  Usable: {d['usable_bytes']} B{cordoned}"
