"""ZooKeeper multi-operations (transactions) over kazoo, with the first failure raised.

kazoo's ``transaction().commit()`` returns one result per operation, failures included as
exception instances (the others as RolledBackError or RuntimeInconsistency); ``commit`` here
raises the failure that made the transaction roll back, with the index of the operation that
failed. Blocking: call it
from a thread that may wait on ZooKeeper, never from an event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, RolledBackError, RuntimeInconsistency

__all__ = ["CheckOp", "CreateOp", "DeleteOp", "Op", "SetDataOp", "TransactionFailed", "commit"]


@dataclass(frozen=True)
class CreateOp:
    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequence: bool = False


@dataclass(frozen=True)
class SetDataOp:
    path: str
    data: bytes
    version: int = -1  # -1: any version


@dataclass(frozen=True)
class DeleteOp:
    path: str
    version: int = -1


@dataclass(frozen=True)
class CheckOp:
    path: str
    version: int


Op = CreateOp | SetDataOp | DeleteOp | CheckOp


class TransactionFailed(Exception):
    """The transaction rolled back: ``error`` is what operation ``index`` got."""

    def __init__(self, index: int, op: Op, error: KazooException) -> None:
        super().__init__(f"{type(error).__name__} on {op}")
        self.index = index
        self.op = op
        self.error = error


def commit(client: KazooClient, ops: Sequence[Op]) -> list[Any]:
    """Run ``ops`` atomically; their results (a path, a ZnodeStat, True) or TransactionFailed."""
    txn = client.transaction()
    for op in ops:
        if isinstance(op, CreateOp):
            txn.create(op.path, op.data, ephemeral=op.ephemeral, sequence=op.sequence)
        elif isinstance(op, SetDataOp):
            txn.set_data(op.path, op.data, op.version)
        elif isinstance(op, DeleteOp):
            txn.delete(op.path, op.version)
        else:
            txn.check(op.path, op.version)
    results: list[Any] = txn.commit()
    for index, result in enumerate(results):
        # ZooKeeper reports the failed operation's error; the others before it rolled back
        # and those after it were never tried (RuntimeInconsistency).
        if isinstance(result, KazooException) and not isinstance(
            result, RolledBackError | RuntimeInconsistency
        ):
            raise TransactionFailed(index, ops[index], result)
    return results
