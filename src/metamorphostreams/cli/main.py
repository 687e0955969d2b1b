"""The ``mms`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .broker_cmd import add_broker_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mms", description="Metamorphostreams: Apache Kafka re-implemented in Python."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_broker_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
