"""One handler module per API family; HANDLERS maps API keys to handler coroutines."""

from __future__ import annotations

from ..dispatch import HandlerFn
from .api_versions import handle_api_versions
from .configs import handle_describe_configs
from .elect_leaders import handle_elect_leaders
from .fetch import handle_fetch
from .groups import GROUP_HANDLERS
from .log_dirs import handle_describe_log_dirs
from .metadata import handle_describe_cluster, handle_metadata
from .offsets import handle_delete_records, handle_list_offsets, handle_offset_for_leader_epoch
from .produce import handle_produce
from .producer_id import handle_init_producer_id
from .topics import handle_create_partitions, handle_create_topics, handle_delete_topics
from .transactions import TRANSACTION_HANDLERS

HANDLERS: dict[int, HandlerFn] = {
    0: handle_produce,
    1: handle_fetch,
    2: handle_list_offsets,
    3: handle_metadata,
    18: handle_api_versions,
    19: handle_create_topics,
    20: handle_delete_topics,
    21: handle_delete_records,
    22: handle_init_producer_id,
    23: handle_offset_for_leader_epoch,
    32: handle_describe_configs,
    35: handle_describe_log_dirs,
    37: handle_create_partitions,
    43: handle_elect_leaders,
    60: handle_describe_cluster,
    **GROUP_HANDLERS,
    **TRANSACTION_HANDLERS,
}

__all__ = ["HANDLERS"]
