"""The topic id index the KIP-516 handlers share: never stale after deletes and re-creates."""

from __future__ import annotations

import uuid
from pathlib import Path

from metamorphostreams.cluster.metadata import MetadataStore
from metamorphostreams.server.handlers.metadata import topic_ids


def test_ids_resolve_and_follow_deletes_and_recreates(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path)
    first = store.create_topic("a", 1, {})
    index = topic_ids(store)
    assert topic_ids(store) is index  # one per store
    assert index.get(first.topic_id) is first
    assert index.get(uuid.UUID(int=5)) is None

    later = store.create_topic("b", 2, {})  # created after the index was built
    assert index.get(later.topic_id) is later

    store.delete_topic("a")
    again = store.create_topic("a", 3, {})  # same name, new id
    assert index.get(first.topic_id) is None
    assert index.get(again.topic_id) is again
    assert index.get(later.topic_id) is later


def test_each_store_has_its_own_index(tmp_path: Path) -> None:
    for name in ("1", "2"):
        (tmp_path / name).mkdir()
    one, two = MetadataStore(tmp_path / "1"), MetadataStore(tmp_path / "2")
    info = one.create_topic("t", 1, {})
    assert topic_ids(one).get(info.topic_id) is info
    assert topic_ids(two).get(info.topic_id) is None
