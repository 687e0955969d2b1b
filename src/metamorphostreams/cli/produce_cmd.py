"""``mms produce TOPIC``: one record per input line, from stdin or a file.

With ``--transactional-id`` all the input is one transaction, committed at the end of the
input; on an error it is aborted (nothing of it becomes visible to read_committed readers)
and the command fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import IO, Any

from ..client import AsyncAdmin, AsyncProducer, KafkaError
from ._common import (
    CliError,
    Progress,
    client_config,
    for_role,
    key_values,
    print_json,
    run_async,
)

READ_CHUNK = 64 * 1024


def add_produce_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    conn, json_opt = common
    p = sub.add_parser(
        "produce",
        parents=[conn, json_opt],
        help="produce lines from stdin or a file as records",
        description="Produce one record per input line (the newline is not part of the value).",
    )
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("-f", "--file", default=None, help="read lines from FILE instead of stdin")
    p.add_argument(
        "-K",
        "--key-separator",
        default=None,
        metavar="SEP",
        help="split each line at the first SEP into key and value",
    )
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a header added to every record (repeatable)",
    )
    p.add_argument("-p", "--partition", type=int, default=None, help="write to this partition")
    p.add_argument(
        "-z", "--compression", default=None, help="none, gzip, snappy, lz4 or zstd (none)"
    )
    p.add_argument("--acks", default=None, help="all, 1 or 0 (all)")
    p.add_argument(
        "--create", action="store_true", help="let the broker auto-create a missing topic"
    )
    p.add_argument(
        "--transactional-id",
        default=None,
        metavar="ID",
        help="produce all input in one transaction, committed at the end of input "
        "(aborted on an error)",
    )
    p.set_defaults(run=run_async(_produce))


async def _lines(stream: IO[bytes]) -> AsyncIterator[bytes]:
    """Lines as they arrive: reads run in a thread, so a record typed at a terminal is sent
    while the next line is awaited (linger.ms still applies)."""
    loop = asyncio.get_running_loop()
    read = getattr(stream, "read1", stream.read)
    pending = b""
    while True:
        chunk: bytes = await loop.run_in_executor(None, read, READ_CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending:
        yield pending


async def _produce(args: argparse.Namespace) -> int:
    headers = key_values(args.header, "--header")
    settings: dict[str, Any] = {}
    if args.compression:
        settings["compression.type"] = args.compression
    if args.acks:
        settings["acks"] = args.acks
    settings["allow.auto.create.topics"] = "true" if args.create else "false"
    transactional = bool(args.transactional_id)
    if transactional:
        settings["transactional.id"] = args.transactional_id
    config = client_config(args, **settings)
    separator = args.key_separator.encode() if args.key_separator else None
    if args.key_separator == "":
        raise CliError("--key-separator must not be empty")
    if not args.create:
        async with AsyncAdmin(for_role(config, "admin")) as admin:
            await admin.describe_topics([args.topic])
    stream: IO[bytes]
    stream = open(args.file, "rb") if args.file else sys.stdin.buffer
    progress = Progress("records produced")
    failures: list[KafkaError] = []
    partitions: dict[int, int] = {}

    def delivered(err: KafkaError | None, md: Any) -> None:
        if err is not None:
            failures.append(err)
        else:
            partitions[md.partition] = partitions.get(md.partition, 0) + 1
            progress.advance()

    count = 0
    try:
        async with AsyncProducer(config) as producer:
            if transactional:
                await producer.init_transactions()
                producer.begin_transaction()
            try:
                async for line in _lines(stream):
                    key: bytes | None = None
                    value = line
                    if separator is not None:
                        if separator not in line:
                            raise CliError(
                                f"line {count + 1} has no key separator {args.key_separator!r}"
                            )
                        key, _, value = line.partition(separator)
                    await producer.send(
                        args.topic,
                        value,
                        key,
                        partition=args.partition,
                        headers=headers,
                        on_delivery=delivered,
                    )
                    count += 1
                    if failures:
                        break
                if not transactional:
                    await producer.flush()
                elif failures:
                    raise failures[0]
                else:
                    await producer.commit_transaction()
            except BaseException:
                if transactional:
                    # Whatever went wrong, none of the input may become visible; a fenced
                    # producer cannot abort (its successor already has).
                    with contextlib.suppress(KafkaError):
                        await producer.abort_transaction()
                raise
    finally:
        if args.file:
            stream.close()
        progress.done()
    if failures:
        raise failures[0]
    if args.json:
        summary: dict[str, Any] = {
            "topic": args.topic,
            "records": count,
            "partitions": {str(p): n for p, n in sorted(partitions.items())},
        }
        if transactional:
            summary["transactional_id"] = args.transactional_id
        print_json(summary)
    else:
        where = f" in one transaction ({args.transactional_id})" if transactional else ""
        print(f"produced {count} records to {args.topic}{where}", file=sys.stderr)
    return 0
