"""Fixtures for the `mms` command-line tests: a broker in-process, `mms` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from metamorphostreams.pytest_plugin import BrokerThread

from .runner import invoke_mms

COMMAND_LIMIT_S = 60.0  # one mms invocation; healthy ones take well under a second

Mms = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", {"num.partitions": "2"}) as broker:
        yield broker


def run_mms(
    *args: str, stdin: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MMS_BOOTSTRAP_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-m", "metamorphostreams.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_LIMIT_S,
        env=env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def mms(cli_broker: BrokerThread) -> Mms:
    """`mms(*args, stdin=...)` with -b pointing at the test's broker, run in-process."""

    def run(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = invoke_mms(*args, "-b", cli_broker.bootstrap, stdin=stdin)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.fixture
def mms_subprocess(cli_broker: BrokerThread) -> Mms:
    """Like `mms`, through a real `python -m metamorphostreams.cli.main` process."""

    def run(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_mms(*args, "-b", cli_broker.bootstrap, stdin=stdin, check=check)

    return run


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed command: non-zero exit, exactly one line on stderr, containing fragments."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
