"""Kafka's text checkpoint files (CheckpointFile, OffsetCheckpointFile,
LeaderEpochCheckpointFile).

Format: a version line (``0``), a line with the entry count, then one entry per line with
space-separated fields::

    0
    2
    orders 0 1234
    orders 1 99

Data-dir files ``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint`` and
``replication-offset-checkpoint`` (high watermarks) hold ``topic partition offset``
entries; a partition's ``leader-epoch-checkpoint`` holds ``epoch start_offset`` entries.
Writes are atomic: a ``.tmp`` sibling is written, fsynced and renamed over the file, then
the directory is fsynced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "LeaderEpochCheckpointFile",
    "OffsetCheckpointFile",
    "read_checkpoint_lines",
    "write_atomically",
    "write_checkpoint_lines",
]

CHECKPOINT_VERSION = 0  # the only version Kafka writes for these files


class CheckpointError(ValueError):
    """A checkpoint file that cannot be parsed (Kafka: "Malformed line in checkpoint file")."""


def fsync_dir(directory: Path) -> None:
    """Persist a rename/creation in ``directory`` (no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also keep a partial file
        raise
    if sync:
        fsync_dir(path.parent)


def write_checkpoint_lines(path: Path, entries: Iterable[str], *, sync: bool = True) -> None:
    lines = list(entries)
    text = f"{CHECKPOINT_VERSION}\n{len(lines)}\n" + "".join(line + "\n" for line in lines)
    write_atomically(path, text.encode("utf-8"), sync=sync)


def read_checkpoint_lines(path: Path) -> list[list[str]] | None:
    """The entries' fields, or None if the file does not exist. Raises CheckpointError for
    an unknown version, a wrong count or an unreadable line."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise CheckpointError(f"checkpoint file {path} is not text") from None
    if not text:
        return []  # Kafka creates checkpoint files empty and reads them as such
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        raise CheckpointError(f"checkpoint file {path} is truncated")
    try:
        version = int(lines[0].strip())
        count = int(lines[1].strip())
    except ValueError:
        raise CheckpointError(f"malformed header in checkpoint file {path}") from None
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"unrecognized version {version} of checkpoint file {path}")
    body = [line.split() for line in lines[2:]]
    if len(body) != count or count < 0:
        raise CheckpointError(
            f"expected {count} entries in checkpoint file {path} but found {len(body)}"
        )
    return body


class OffsetCheckpointFile:
    """``topic partition offset`` entries: recovery points, log start offsets, high
    watermarks."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, offsets: Mapping[tuple[str, int], int], *, sync: bool = True) -> None:
        entries = (
            f"{topic} {partition} {offset}"
            for (topic, partition), offset in sorted(offsets.items())
        )
        write_checkpoint_lines(self.path, entries, sync=sync)

    def read(self) -> dict[tuple[str, int], int]:
        """The offsets; empty if the file does not exist. Raises CheckpointError."""
        body = read_checkpoint_lines(self.path)
        if body is None:
            return {}
        out: dict[tuple[str, int], int] = {}
        for fields in body:
            if len(fields) != 3:
                raise CheckpointError(f"malformed line in checkpoint file {self.path}: {fields}")
            topic, partition, offset = fields
            try:
                out[(topic, int(partition))] = int(offset)
            except ValueError:
                raise CheckpointError(
                    f"malformed line in checkpoint file {self.path}: {fields}"
                ) from None
        return out


class LeaderEpochCheckpointFile:
    """``epoch start_offset`` entries of a partition's ``leader-epoch-checkpoint``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, entries: Iterable[tuple[int, int]], *, sync: bool = True) -> None:
        write_checkpoint_lines(self.path, (f"{e} {o}" for e, o in entries), sync=sync)

    def read(self) -> list[tuple[int, int]]:
        """The entries in file order; empty if the file does not exist. Raises
        CheckpointError."""
        body = read_checkpoint_lines(self.path)
        if body is None:
            return []
        out: list[tuple[int, int]] = []
        for fields in body:
            if len(fields) != 2:
                raise CheckpointError(f"malformed line in checkpoint file {self.path}: {fields}")
            try:
                out.append((int(fields[0]), int(fields[1])))
            except ValueError:
                raise CheckpointError(
                    f"malformed line in checkpoint file {self.path}: {fields}"
                ) from None
        return out
