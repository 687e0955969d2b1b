"""Summarise a py-spy `--format raw` profile (collapsed stacks): the top functions by own
time and by inclusive time, as shares of all samples.

    python bench/profile_top.py bench/out/profile-produce_1k_acks1.txt [--top 25]

py-spy samples the broker's threads whether they run or wait; waiting in the event loop's
`select` is reported as idle, so the shares of the rest are the busy loop's.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
IDLE_FUNCS = {"select", "poll", "epoll", "wait"}  # the loop's selector or a parked thread


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`; lines would split a function."""
    m = FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    file = m.group("file")
    parts = file.split("/")
    if "metamorphostreams" in parts:
        file = "/".join(parts[parts.index("metamorphostreams") + 1 :])
    else:
        file = parts[-1]
    return f"{m.group('func')} ({file})"


def summarise(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    idle = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if leaf.split(" ")[0].rsplit(".", 1)[-1] in IDLE_FUNCS:
            idle += count
            continue
        own[leaf] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return f"{path}: no samples"
    busy = total - idle
    lines = [
        f"{path.name}: {total} samples, busy {busy / total:.0%} (idle in select/wait "
        f"{idle / total:.0%}); shares below are of busy samples",
        "",
        f"{'own':>6}  function",
    ]
    lines += [f"{n / busy:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", f"{'incl':>6}  function"]
    lines += [f"{n / busy:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profile_top")
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.profiles:
        print(summarise(path, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
