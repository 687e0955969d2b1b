"""The group coordinator: classic and KIP-848 consumer groups, offsets in ``__consumer_offsets``.

A pure state machine (no I/O, time injected): see ``coordinator.GroupCoordinator``.
"""

from .config import GroupCoordinatorConfig
from .coordinator import GroupCoordinator, Result
from .records import CoordinatorRecord

__all__ = ["CoordinatorRecord", "GroupCoordinator", "GroupCoordinatorConfig", "Result"]
