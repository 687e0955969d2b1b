"""``mms consume TOPIC``: print records as plain values, JSON lines or a kcat-like template."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import signal
import sys
import time
from typing import Any

from ..client import AsyncAdmin, AsyncConsumer, ConsumerRecord, TopicPartition
from ._common import CliError, client_config, for_role, run_async

FORMAT_HELP = (
    "kcat-like template: %%t topic, %%p partition, %%o offset, %%k key, %%v value, "
    "%%T timestamp (ms), %%h headers (k=v,...), %%K key length, %%S value length, %%%% a %%; "
    "\\n \\t escapes (a newline is added unless the template has one)"
)
TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}


def add_consume_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser(
        "consume",
        parents=[conn, json_opt],
        help="print a topic's records",
        description="Print records: by default the value of each, one per line, from the end.",
    )
    p.add_argument("topic", metavar="TOPIC")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    start.add_argument(
        "--offset", default=None, help="start at this offset (or 'beginning' / 'end')"
    )
    start.add_argument(
        "--timestamp", type=int, default=None, metavar="MS", help="start at this time (epoch ms)"
    )
    p.add_argument(
        "-p", "--partition", type=int, action="append", default=None, help="only this partition"
    )
    p.add_argument("-g", "--group", default=None, help="consume as a member of this group")
    p.add_argument("-c", "--count", type=int, default=None, help="stop after N records")
    p.add_argument(
        "-e", "--exit-at-end", action="store_true", help="stop at the end of every partition"
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop after S idle seconds"
    )
    p.add_argument("--format", default=None, metavar="FMT", help=FORMAT_HELP)
    p.add_argument(
        "--isolation-level",
        choices=("read_uncommitted", "read_committed"),
        default=None,
        help="read_committed: only committed transactions' records, up to the last stable "
        "offset (default read_uncommitted, as Kafka)",
    )
    p.set_defaults(run=run_async(_consume))


def _text(data: bytes | None) -> tuple[str | None, bool]:
    if data is None:
        return None, False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), True


def record_json(r: ConsumerRecord) -> str:
    key, key_b64 = _text(r.key)
    value, value_b64 = _text(r.value)
    out: dict[str, Any] = {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": TIMESTAMP_TYPES.get(r.timestamp_type, str(r.timestamp_type)),
        "key": key,
        "value": value,
        "headers": [[k, _text(v)[0]] for k, v in r.headers],
    }
    if key_b64:
        out["key_encoding"] = "base64"
    if value_b64:
        out["value_encoding"] = "base64"
    return json.dumps(out)


_TOKEN = re.compile(r"%[tpokvThKS%]|\\[nt\\]")


class Template:
    """A compiled --format template: renders a record to bytes."""

    def __init__(self, template: str) -> None:
        if "\\n" not in template and "\n" not in template:
            template += "\\n"
        self.parts: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(template):
            if m.start() > pos:
                self.parts.append("=" + template[pos : m.start()])
            self.parts.append(m.group())
            pos = m.end()
        if pos < len(template):
            self.parts.append("=" + template[pos:])

    def render(self, r: ConsumerRecord) -> bytes:
        out = bytearray()
        for part in self.parts:
            if part[0] == "=":
                out += part[1:].encode()
            elif part == "%t":
                out += r.topic.encode()
            elif part == "%p":
                out += str(r.partition).encode()
            elif part == "%o":
                out += str(r.offset).encode()
            elif part == "%k":
                out += r.key or b""
            elif part == "%v":
                out += r.value or b""
            elif part == "%T":
                out += str(r.timestamp).encode()
            elif part == "%h":
                out += b",".join(k.encode() + b"=" + (v or b"") for k, v in r.headers)
            elif part == "%K":
                out += str(len(r.key) if r.key is not None else -1).encode()
            elif part == "%S":
                out += str(len(r.value) if r.value is not None else -1).encode()
            elif part == "%%":
                out += b"%"
            elif part == "\\n":
                out += b"\n"
            elif part == "\\t":
                out += b"\t"
            elif part == "\\\\":
                out += b"\\"
        return bytes(out)


async def _consume(args: argparse.Namespace) -> int:
    if args.group and (args.offset is not None or args.timestamp is not None or args.partition):
        raise CliError("--offset, --timestamp and --partition cannot be used with --group")
    if args.json and args.format:
        raise CliError("--json and --format cannot be used together")
    if args.count is not None and args.count <= 0:
        raise CliError("--count must be positive")
    settings: dict[str, Any] = {"allow.auto.create.topics": "false"}
    if args.isolation_level:
        settings["isolation.level"] = args.isolation_level
    if args.group:
        settings["group.id"] = args.group
        if args.from_beginning:
            settings["auto.offset.reset"] = "earliest"
    else:
        settings["auto.offset.reset"] = "earliest" if args.from_beginning else "latest"
        settings["enable.auto.commit"] = "false"
    config = client_config(args, **settings)
    async with AsyncAdmin(for_role(config, "admin")) as admin:
        description = (await admin.describe_topics([args.topic]))[args.topic]
    all_partitions = [p.partition for p in description.partitions]
    if args.partition:
        missing = sorted(set(args.partition) - set(all_partitions))
        if missing:
            raise CliError(
                f"topic {args.topic!r} has no partition {missing[0]} "
                f"({len(all_partitions)} partitions)"
            )
    template = Template(args.format) if args.format else None
    out = sys.stdout.buffer
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    count = 0
    async with AsyncConsumer(config) as consumer:
        tps = [TopicPartition(args.topic, p) for p in (args.partition or all_partitions)]
        if args.group:
            consumer.subscribe([args.topic])
        else:
            consumer.assign(tps)
            await _position(consumer, args, tps)
        ends = await consumer.end_offsets(tps) if args.exit_at_end else {}
        last_data = time.monotonic()
        printed: dict[TopicPartition, int] = {}
        while not stop.is_set():
            poll = asyncio.ensure_future(consumer.poll(200))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not poll.done():
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
                break
            records = poll.result()
            if records:
                last_data = time.monotonic()
            for r in records:
                if args.json:
                    out.write(record_json(r).encode() + b"\n")
                elif template is not None:
                    out.write(template.render(r))
                else:
                    out.write((r.value or b"") + b"\n")
                count += 1
                printed[TopicPartition(r.topic, r.partition)] = r.offset + 1
                if args.count is not None and count >= args.count:
                    break
            out.flush()
            if args.count is not None and count >= args.count:
                break
            if args.exit_at_end and await _at_end(consumer, ends):
                break
            if args.timeout is not None and time.monotonic() - last_data > args.timeout:
                break
        if args.group:
            # Commit what was printed, not what poll() fetched beyond --count.
            owned = consumer.assignment()
            await consumer.commit({tp: o for tp, o in printed.items() if tp in owned})
        await consumer.close(autocommit=False)
    if sys.stderr.isatty():
        print(f"consumed {count} records", file=sys.stderr)
    return 0


async def _position(
    consumer: AsyncConsumer, args: argparse.Namespace, tps: list[TopicPartition]
) -> None:
    if args.offset is not None:
        where = str(args.offset).strip().lower()
        if where == "beginning":
            consumer.seek_to_beginning(*tps)
        elif where == "end":
            consumer.seek_to_end(*tps)
        else:
            try:
                offset = int(where)
            except ValueError:
                raise CliError(
                    f"--offset expects a number, 'beginning' or 'end', not {args.offset!r}"
                ) from None
            if offset < 0:
                raise CliError("--offset must not be negative")
            for tp in tps:
                consumer.seek(tp, offset)
    elif args.timestamp is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, args.timestamp))
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, hit[0])


async def _at_end(consumer: AsyncConsumer, ends: dict[TopicPartition, int]) -> bool:
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        end = ends.get(tp)
        if end is None:
            continue
        if await consumer.position(tp) < end:
            return False
    return True
