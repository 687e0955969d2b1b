"""What every client subcommand shares: connection options, config, errors, output.

``-b/--bootstrap-server``, ``-X key=value`` and ``--config FILE`` build the client config
(Kafka property names; unknown keys are rejected by the client). ``run_async`` runs a
command's coroutine and turns every expected failure (a Kafka error, a bad config, an
unreachable broker, a bad file) into one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from ..client.config import DEFINITIONS, load_properties
from ..client.errors import KafkaError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "MMS_BOOTSTRAP_SERVER"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user mistake the command found itself (bad argument combination, missing file)."""


def client_options() -> argparse.ArgumentParser:
    """A parent parser with the connection options every client subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "-b",
        "--bootstrap-server",
        default=os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP),
        metavar="HOST:PORT[,...]",
        help=f"brokers to bootstrap from (${BOOTSTRAP_ENV}, else {DEFAULT_BOOTSTRAP})",
    )
    group.add_argument(
        "-X",
        dest="client_config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a client config by its Kafka name, e.g. -X request.timeout.ms=5000 (repeatable)",
    )
    group.add_argument(
        "--config",
        dest="config_file",
        default=None,
        metavar="FILE",
        help="a .properties file of client configs (-X wins over it)",
    )
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return parent


def key_values(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def client_config(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """bootstrap.servers from -b, then --config, then -X, then the command's own settings."""
    config: dict[str, Any] = {"bootstrap.servers": args.bootstrap_server}
    if args.config_file:
        config.update(load_properties(args.config_file))
    config.update(key_values(args.client_config, "-X"))
    for key, value in overrides.items():
        config.setdefault(key, value)
    return config


def for_role(config: dict[str, Any], role: str) -> dict[str, Any]:
    """The part of ``config`` that a client of ``role`` accepts (for helper clients: the
    command's main client still sees, and rejects, every unknown key)."""
    return {k: v for k, v in config.items() if k in DEFINITIONS and role in DEFINITIONS[k].roles}


def run_async(coro_fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int | None]]) -> Any:
    """Wrap an ``async def cmd(args)`` into the ``run(args) -> exit status`` argparse calls."""

    def run(args: argparse.Namespace) -> int:
        try:
            result = asyncio.run(coro_fn(args))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader of our output went away (mms consume ... | head): not an error.
            with_devnull_stdout()
            return 0
        except (KafkaError, CliError, ValueError) as exc:
            fail(str(exc))
            return EXIT_ERROR
        except OSError as exc:
            fail(
                exc.strerror or str(exc) if not exc.filename else f"{exc.filename}: {exc.strerror}"
            )
            return EXIT_ERROR
        return int(result or 0)

    return run


def with_devnull_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def fail(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"mms: error: {first}", file=sys.stderr)


def print_json(data: Any, out: TextIO | None = None) -> None:
    print(json.dumps(data, sort_keys=False), file=out or sys.stdout)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None
) -> None:
    """Left-aligned columns separated by two spaces, for people."""
    stream = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        print(line, file=stream)


class Progress:
    """A one-line counter on stderr while a person waits (only when stderr is a terminal)."""

    def __init__(self, what: str, total: int | None = None) -> None:
        self.what = what
        self.total = total
        self.count = 0
        self.enabled = sys.stderr.isatty()
        self._shown = -1

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.enabled and (self.count - self._shown >= 1000 or self.count == self.total):
            self._shown = self.count
            if self.total:
                width = 30
                filled = int(width * self.count / self.total)
                bar = "#" * filled + "-" * (width - filled)
                sys.stderr.write(f"\r[{bar}] {self.count}/{self.total} {self.what}")
            else:
                sys.stderr.write(f"\r{self.count} {self.what}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._shown >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()
