"""``mms group list|describe|reset-offsets|delete`` and ``mms cluster describe``."""

from __future__ import annotations

import argparse
from typing import Any

from ..client import AsyncAdmin, TopicPartition
from ..client._versions import CLIENT_VERSIONS
from ..protocol._generated import API_NAMES
from ._common import CliError, client_config, print_json, print_table, run_async
from .cluster_up_cmd import add_cluster_up_parser


def add_group_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser("group", help="list, describe, reset and delete consumer groups")
    gsub = p.add_subparsers(dest="group_command", metavar="ACTION")
    gsub.required = True

    ls = gsub.add_parser("list", parents=[conn, json_opt], help="list groups")
    ls.set_defaults(run=run_async(_list))

    d = gsub.add_parser(
        "describe", parents=[conn, json_opt], help="members, committed offsets and lag"
    )
    d.add_argument("group", metavar="GROUP")
    d.set_defaults(run=run_async(_describe))

    r = gsub.add_parser(
        "reset-offsets",
        parents=[conn, json_opt],
        help="move a group's committed offsets (dry run unless --execute)",
    )
    r.add_argument("group", metavar="GROUP")
    r.add_argument("--topic", required=True, help="the topic whose offsets move")
    r.add_argument("-p", "--partition", type=int, action="append", default=None)
    to = r.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int, default=None, metavar="N")
    to.add_argument("--to-timestamp", type=int, default=None, metavar="MS")
    to.add_argument("--shift-by", type=int, default=None, metavar="N")
    r.add_argument("--execute", action="store_true", help="commit the new offsets")
    r.set_defaults(run=run_async(_reset))

    rm = gsub.add_parser("delete", parents=[conn], help="delete groups without members")
    rm.add_argument("groups", nargs="+", metavar="GROUP")
    rm.set_defaults(run=run_async(_delete))


def add_cluster_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser("cluster", help="describe the cluster")
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    csub.required = True
    d = csub.add_parser(
        "describe", parents=[conn, json_opt], help="cluster id, controller, brokers, APIs"
    )
    d.add_argument("--api-versions", action="store_true", help="also list the broker's APIs")
    d.set_defaults(run=run_async(_cluster))
    add_cluster_up_parser(csub)


def _admin(args: argparse.Namespace) -> AsyncAdmin:
    return AsyncAdmin(client_config(args))


async def _list(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        groups = await admin.list_groups()
    if args.json:
        print_json(
            [
                {
                    "group": g.group_id,
                    "state": g.state,
                    "type": g.group_type,
                    "protocol_type": g.protocol_type,
                }
                for g in groups
            ]
        )
    else:
        print_table(
            ["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"],
            [(g.group_id, g.state, g.group_type, g.protocol_type) for g in groups],
        )
    return 0


async def _describe(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        desc = (await admin.describe_groups([args.group]))[args.group]
        lag = await admin.group_lag(args.group)
    if desc.state == "Dead" and not lag:
        raise CliError(f"group {args.group!r} does not exist")
    owners: dict[TopicPartition, tuple[str, str, str]] = {}
    for m in desc.members:
        for tp in m.assignment:
            owners[tp] = (m.member_id, m.client_id, m.client_host)
    partitions = sorted(set(lag) | set(owners))
    rows = []
    for tp in partitions:
        committed, end, behind = lag.get(tp, (None, None, None))
        member, client, host = owners.get(tp, ("-", "-", "-"))
        rows.append((tp.topic, tp.partition, committed, end, behind, member, client, host))
    if args.json:
        print_json(
            {
                "group": desc.group_id,
                "state": desc.state,
                "type": desc.group_type,
                "protocol": desc.protocol,
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "assignment": [[tp.topic, tp.partition] for tp in m.assignment],
                    }
                    for m in desc.members
                ],
                "offsets": [
                    {
                        "topic": r[0],
                        "partition": r[1],
                        "committed_offset": r[2],
                        "log_end_offset": r[3],
                        "lag": r[4],
                        "member_id": None if r[5] == "-" else r[5],
                    }
                    for r in rows
                ],
            }
        )
        return 0
    print(
        f"Group: {desc.group_id}  State: {desc.state}  Protocol: {desc.protocol or '-'}  "
        f"Members: {len(desc.members)}"
    )
    print_table(
        [
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "CLIENT-ID",
            "HOST",
        ],
        [tuple("-" if c is None else c for c in r) for r in rows],
    )
    return 0


async def _reset(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        desc = (await admin.describe_groups([args.group]))[args.group]
        if desc.members:
            raise CliError(
                f"group {args.group!r} has {len(desc.members)} active member(s): "
                "stop them before resetting offsets"
            )
        topic = (await admin.describe_topics([args.topic]))[args.topic]
        wanted = args.partition or [p.partition for p in topic.partitions]
        tps = [TopicPartition(args.topic, p) for p in wanted]
        earliest = await admin.list_offsets(dict.fromkeys(tps, "earliest"))
        latest = await admin.list_offsets(dict.fromkeys(tps, "latest"))
        current = await admin.list_group_offsets(args.group, tps)
        target: dict[TopicPartition, int] = {}
        if args.to_timestamp is not None:
            found = await admin.list_offsets(dict.fromkeys(tps, args.to_timestamp))
        for tp in tps:
            low, high = earliest[tp][0], latest[tp][0]
            if args.to_earliest:
                offset = low
            elif args.to_latest:
                offset = high
            elif args.to_offset is not None:
                offset = args.to_offset
            elif args.to_timestamp is not None:
                offset = found[tp][0] if found[tp][0] >= 0 else high
            else:
                offset = current.get(tp, low) + args.shift_by
            target[tp] = min(max(offset, low), high)
        if args.execute:
            await admin.alter_group_offsets(args.group, target)
    rows = [(tp.topic, tp.partition, current.get(tp), target[tp]) for tp in tps]
    if args.json:
        print_json(
            [
                {"topic": t, "partition": p, "previous_offset": c, "new_offset": n}
                for t, p, c, n in rows
            ]
        )
    else:
        print_table(
            ["TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"],
            [(t, p, "-" if c is None else c, n) for t, p, c, n in rows],
        )
        if not args.execute:
            print("(dry run: add --execute to commit these offsets)")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        for group in args.groups:
            await admin.delete_groups([group])
            print(f"deleted group {group}")
    return 0


async def _cluster(args: argparse.Namespace) -> int:
    async with _admin(args) as admin:
        desc = await admin.describe_cluster()
        versions = await admin.broker_api_versions() if args.api_versions else {}
    if args.json:
        data: dict[str, Any] = {
            "cluster_id": desc.cluster_id,
            "controller_id": desc.controller_id,
            "brokers": [
                {"id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
                for b in desc.brokers
            ],
        }
        if args.api_versions:
            data["api_versions"] = {
                API_NAMES.get(k, str(k)): [lo, hi] for k, (lo, hi) in sorted(versions.items())
            }
        print_json(data)
        return 0
    print(f"Cluster: {desc.cluster_id}  Controller: {desc.controller_id}")
    print_table(
        ["BROKER", "HOST", "PORT", "RACK"],
        [(b.node_id, b.host, b.port, b.rack or "-") for b in desc.brokers],
    )
    if args.api_versions:
        print()
        print_table(
            ["API", "KEY", "BROKER", "CLIENT"],
            [
                (
                    API_NAMES.get(k, str(k)),
                    k,
                    f"{lo}-{hi}",
                    "-" if k not in CLIENT_VERSIONS else "{}-{}".format(*CLIENT_VERSIONS[k]),
                )
                for k, (lo, hi) in sorted(versions.items())
            ],
        )
    return 0
