"""``mms topic create|list|describe|delete|alter-config|add-partitions``."""

from __future__ import annotations

import argparse
from typing import Any

from ..client import AsyncAdmin, NewTopic, TopicPartition
from ..client.admin import OffsetSpec
from ..client.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from ._common import CliError, client_config, key_values, print_json, print_table, run_async


def add_topic_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser("topic", help="create, list, describe, delete and configure topics")
    tsub = p.add_subparsers(dest="topic_command", metavar="ACTION")
    tsub.required = True

    c = tsub.add_parser("create", parents=[conn], help="create topics")
    c.add_argument("names", nargs="+", metavar="TOPIC")
    c.add_argument("-p", "--partitions", type=int, default=-1, help="partitions (broker default)")
    c.add_argument(
        "-r", "--replication-factor", type=int, default=-1, help="replicas (broker default)"
    )
    c.add_argument(
        "-c",
        "--topic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic config, e.g. -c retention.ms=3600000 (repeatable)",
    )
    c.add_argument("--if-not-exists", action="store_true", help="no error if it exists")
    c.set_defaults(run=run_async(_create))

    ls = tsub.add_parser("list", parents=[conn, json_opt], help="list topics")
    ls.add_argument("--internal", action="store_true", help="include internal topics")
    ls.set_defaults(run=run_async(_list))

    d = tsub.add_parser(
        "describe",
        parents=[conn, json_opt],
        help="partitions: leader, replicas, ISR, offline replicas, offsets; configs",
    )
    d.add_argument("names", nargs="+", metavar="TOPIC")
    d.set_defaults(run=run_async(_describe))

    rm = tsub.add_parser("delete", parents=[conn], help="delete topics")
    rm.add_argument("names", nargs="+", metavar="TOPIC")
    rm.add_argument("--if-exists", action="store_true", help="no error if it does not exist")
    rm.set_defaults(run=run_async(_delete))

    a = tsub.add_parser(
        "alter-config", parents=[conn], help="set or delete topic configs (IncrementalAlterConfigs)"
    )
    a.add_argument("name", metavar="TOPIC")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a config")
    a.add_argument("--delete", action="append", default=[], metavar="KEY", help="reset a config")
    a.set_defaults(run=run_async(_alter_config))

    ap = tsub.add_parser("add-partitions", parents=[conn], help="grow a topic's partition count")
    ap.add_argument("name", metavar="TOPIC")
    ap.add_argument("--total", type=int, required=True, help="the new number of partitions")
    ap.set_defaults(run=run_async(_add_partitions))


def _admin(args: argparse.Namespace) -> AsyncAdmin:
    return AsyncAdmin(client_config(args))


async def _create(args: argparse.Namespace) -> int:
    configs = key_values(args.topic_config, "--topic-config")
    async with _admin(args) as admin:
        for name in args.names:
            try:
                await admin.create_topics(
                    [NewTopic(name, args.partitions, args.replication_factor, configs)]
                )
            except TopicAlreadyExistsError:
                if not args.if_not_exists:
                    raise
                continue
            print(f"created topic {name}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        topics = await admin.list_topics(include_internal=args.internal)
    if args.json:
        print_json([{"name": t.name, "partitions": len(t.partitions)} for t in topics.values()])
    else:
        print_table(["TOPIC", "PARTITIONS"], [(t.name, len(t.partitions)) for t in topics.values()])
    return 0


async def _describe(args: argparse.Namespace) -> int:
    out: list[dict[str, Any]] = []
    async with _admin(args) as admin:
        descriptions = await admin.describe_topics(args.names)
        for name in args.names:
            desc = descriptions[name]
            tps = [TopicPartition(name, p.partition) for p in desc.partitions]
            # Offsets come from the leaders; while a partition has no live leader they are
            # unknown ("-"), and asking would wait for one to be elected.
            led = all(p.leader >= 0 and p.leader not in p.offline for p in desc.partitions)
            earliest = await _offsets(admin, tps, "earliest") if led else dict.fromkeys(tps)
            latest = await _offsets(admin, tps, "latest") if led else dict.fromkeys(tps)
            configs = await admin.describe_configs("topic", name)
            out.append(
                {
                    "name": name,
                    "topic_id": str(desc.topic_id),
                    "is_internal": desc.is_internal,
                    "configs": {k: e.value for k, e in configs.items() if not e.is_default},
                    "partitions": [
                        {
                            "partition": p.partition,
                            "leader": p.leader,
                            "leader_epoch": p.leader_epoch,
                            "replicas": list(p.replicas),
                            "isr": list(p.isr),
                            "offline_replicas": list(p.offline),
                            "earliest_offset": earliest[tp],
                            "latest_offset": latest[tp],
                        }
                        for tp, p in zip(tps, desc.partitions, strict=True)
                    ],
                }
            )
    if args.json:
        print_json(out if len(out) > 1 else out[0])
        return 0
    for i, topic in enumerate(out):
        if i:
            print()
        print(
            f"Topic: {topic['name']}  TopicId: {topic['topic_id']}  "
            f"Partitions: {len(topic['partitions'])}"
        )
        config_text = ",".join(f"{k}={v}" for k, v in topic["configs"].items())
        print(f"Configs: {config_text or '(defaults)'}")
        print_table(
            ["PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE", "EARLIEST", "LATEST"],
            [
                (
                    p["partition"],
                    p["leader"] if p["leader"] >= 0 else "none",
                    _ids(p["replicas"]),
                    _ids(p["isr"]),
                    _ids(p["offline_replicas"]),
                    "-" if p["earliest_offset"] is None else p["earliest_offset"],
                    "-" if p["latest_offset"] is None else p["latest_offset"],
                )
                for p in topic["partitions"]
            ],
        )
    return 0


async def _offsets(
    admin: AsyncAdmin, tps: list[TopicPartition], spec: OffsetSpec
) -> dict[TopicPartition, int | None]:
    found = await admin.list_offsets(dict.fromkeys(tps, spec))
    return {tp: found[tp][0] for tp in tps}


def _ids(brokers: list[int]) -> str:
    return ",".join(map(str, brokers)) or "-"


async def _delete(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        for name in args.names:
            try:
                await admin.delete_topics([name])
            except UnknownTopicOrPartitionError:
                if not args.if_exists:
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r}") from None
                continue
            print(f"deleted topic {name}")
    return 0


async def _alter_config(args: argparse.Namespace) -> int:
    changes: dict[str, str | None] = dict(key_values(args.set, "--set"))
    for key in args.delete:
        changes[key] = None
    if not changes:
        raise CliError("nothing to change: give --set KEY=VALUE or --delete KEY")
    async with _admin(args) as admin:
        await admin.describe_topics([args.name])
        await admin.alter_configs("topic", args.name, changes)
    print(f"altered configs of topic {args.name}")
    return 0


async def _add_partitions(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        await admin.describe_topics([args.name])
        await admin.create_partitions({args.name: args.total})
    print(f"topic {args.name} now has {args.total} partitions")
    return 0
