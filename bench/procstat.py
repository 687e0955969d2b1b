"""What /proc says about a process: CPU seconds and resident memory (Linux only)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UTIME_FIELD = 13  # 0-based field numbers in /proc/<pid>/stat (pid is 0, comm 1, state 2)
STIME_FIELD = 14


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name is in parentheses and may contain spaces; split after its end.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state, field 2.
    return (int(fields[UTIME_FIELD - 2]) + int(fields[STIME_FIELD - 2])) / CLOCK_TICKS


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    """Resident set size now (VmRSS), in MB (10^6 bytes)."""
    return _status_kb(pid, "VmRSS") * 1024 / 1e6


def peak_rss_mb(pid: int) -> float:
    """The largest resident set size so far (VmHWM), in MB (10^6 bytes)."""
    return _status_kb(pid, "VmHWM") * 1024 / 1e6
