"""The ``mms`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._common import client_options, json_option
from .broker_cmd import add_broker_parser
from .consume_cmd import add_consume_parser
from .group_cmd import add_cluster_parser, add_group_parser
from .log_dirs_cmd import add_log_dirs_parser
from .produce_cmd import add_produce_parser
from .topic_cmd import add_topic_parser


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr (and exit status 2), not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mms", description="Metamorphostreams: Apache Kafka re-implemented in Python."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_broker_parser(sub)
    common = [client_options(), json_option()]
    add_topic_parser(sub, common)
    add_produce_parser(sub, common)
    add_consume_parser(sub, common)
    add_group_parser(sub, common)
    add_cluster_parser(sub, common)
    add_log_dirs_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
