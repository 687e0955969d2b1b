"""Run `mms` in this process, capturing what it writes (for tests)."""

from __future__ import annotations

import io
import subprocess
import sys

from metamorphostreams.cli.main import main


def invoke_mms(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mms` in this process (an interpreter start costs more than most commands)."""
    streams = (sys.stdin, sys.stdout, sys.stderr)
    sys.stdin = io.TextIOWrapper(io.BytesIO((stdin or "").encode()))
    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), write_through=True)
    sys.stdout, sys.stderr = out, err
    try:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out.flush()
        err.flush()
        stdout = out.buffer.getvalue().decode()  # type: ignore[attr-defined]
        stderr = err.buffer.getvalue().decode()  # type: ignore[attr-defined]
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
    return subprocess.CompletedProcess(["mms", *args], code, stdout, stderr)
