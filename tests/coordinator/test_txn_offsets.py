"""TxnOffsetCommit: pending transactional offsets, markers, visibility, replay (KIP-98/447)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from metamorphostreams.coordinator import GroupCoordinator, Result
from metamorphostreams.coordinator.records import OFFSET_COMMIT_KEY, decode_key
from metamorphostreams.protocol._generated.delete_groups import DeleteGroupsRequest
from metamorphostreams.protocol._generated.offset_delete import OffsetDeleteRequest
from metamorphostreams.protocol._generated.offset_fetch import OffsetFetchRequest
from metamorphostreams.protocol._generated.txn_offset_commit import TxnOffsetCommitRequest
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness, durable_state, form_group
from .test_classic_members import static_group
from .test_consumer_group import Client, run_until_stable

PID, EPOCH = 4000, 3
MINUTE = 60_000
Offsets = Mapping[tuple[str, int], int]


class TxnHarness(Harness):
    """Keeps the log as the runtime writes it: each record with the producer id of its
    batch (-1 outside transactions), and the markers in between."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.entries: list[tuple[Any, ...]] = []

    def take(self, result: Result) -> Result:
        producer = result.producer[0] if result.producer is not None else -1
        self.entries.extend(("record", r, producer) for r in result.records)
        return super().take(result)

    def txn(
        self,
        group: str,
        offsets: Offsets,
        *,
        producer: tuple[int, int] = (PID, EPOCH),
        generation: int = -1,
        member_id: str = "",
        instance: str | None = None,
        metadata: str | None = "",
        version: int = 5,
    ) -> tuple[dict[tuple[str, int], int], Result]:
        by_topic: dict[str, list[TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition]] = {}
        for (topic, p), off in offsets.items():
            by_topic.setdefault(topic, []).append(
                TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(
                    partition_index=p,
                    committed_offset=off,
                    committed_leader_epoch=2,
                    committed_metadata=metadata,
                )
            )
        req = TxnOffsetCommitRequest(
            transactional_id="tx",
            group_id=group,
            producer_id=producer[0],
            producer_epoch=producer[1],
            generation_id=generation,
            member_id=member_id,
            group_instance_id=instance,
            topics=[
                TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=t, partitions=ps)
                for t, ps in by_topic.items()
            ],
        )
        result = self.call("txn_offset_commit", req, version)
        errors = {
            (t.name, p.partition_index): p.error_code
            for t in result.response.topics
            for p in t.partitions
        }
        return errors, result

    def marker(self, group: str, committed: bool, producer: int = PID) -> None:
        partition = self.coord.partition_for(group)
        self.entries.append(("marker", partition, producer, committed))
        result = self.coord.complete_transaction(self.now, partition, producer, committed)
        assert result.records == [] and result.response is None

    def replayed(self) -> GroupCoordinator:
        fresh = self._new_coordinator()
        for entry in self.entries:
            if entry[0] == "record":
                fresh.replay(entry[1], producer_id=entry[2])
            else:
                fresh.complete_transaction(self.now, entry[1], entry[2], entry[3])
        return fresh

    def stable(self, group: str, parts: Mapping[str, list[int]] | None, version: int = 8) -> Any:
        """OffsetFetch with require_stable: {(topic, partition): (offset, error)}."""
        if version >= 8:
            topics = (
                None
                if parts is None
                else [
                    OffsetFetchRequest.OffsetFetchRequestTopics(name=t, partition_indexes=ps)
                    for t, ps in parts.items()
                ]
            )
            req = OffsetFetchRequest(
                require_stable=True,
                groups=[OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=topics)],
            )
            resp = self.call("offset_fetch", req, version).response
            answered = resp.groups[0].topics
        else:
            req = OffsetFetchRequest(
                group_id=group,
                require_stable=True,
                topics=None
                if parts is None
                else [
                    OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                    for t, ps in parts.items()
                ],
            )
            answered = self.call("offset_fetch", req, version).response.topics
        return {
            (t.name, p.partition_index): (p.committed_offset, p.error_code)
            for t in answered
            for p in t.partitions
        }


def full_state(coord: GroupCoordinator) -> dict[str, Any]:
    state = durable_state(coord)
    state["pending"] = coord._offsets.pending
    state["open"] = coord._offsets.open_transactions
    return state


def assert_replays_identically(h: TxnHarness) -> None:
    assert full_state(h.replayed()) == full_state(h.coord)


# -- commit and markers ----------------------------------------------------------------


def test_offsets_are_pending_until_the_commit_marker() -> None:
    h = TxnHarness()
    errors, result = h.txn("g", {("orders", 0): 10, ("orders", 1): 11, ("logs", 2): 12})
    assert errors == {("orders", 0): 0, ("orders", 1): 0, ("logs", 2): 0}
    assert result.producer == (PID, EPOCH)
    assert len(result.records) == 3
    assert {r.partition for r in result.records} == {h.coord.partition_for("g")}
    keys = [decode_key(r.key) for r in result.records]
    assert all(k is not None and k.version == OFFSET_COMMIT_KEY for k in keys)
    assert h.committed("g", "orders", 0) == -1  # not visible yet
    assert h.stable("g", {"orders": [0, 1, 5]}) == {
        ("orders", 0): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
        ("orders", 1): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
        ("orders", 5): (-1, 0),
    }
    h.marker("g", committed=True)
    assert h.committed("g", "orders", 0) == 10
    assert h.stable("g", {"orders": [0], "logs": [2]}) == {
        ("orders", 0): (10, 0),
        ("logs", 2): (12, 0),
    }
    assert h.coord._offsets.pending == {} and h.coord._offsets.open_transactions == {}
    assert_replays_identically(h)


def test_abort_marker_drops_pending_and_keeps_committed() -> None:
    h = TxnHarness()
    h.commit("g", {("orders", 0): 5})
    h.txn("g", {("orders", 0): 10})
    assert h.committed("g", "orders", 0) == 5  # the committed offset until the marker
    h.marker("g", committed=False)
    assert h.committed("g", "orders", 0) == 5
    assert h.stable("g", {"orders": [0]}) == {("orders", 0): (5, 0)}
    assert_replays_identically(h)


def test_later_plain_commit_wins_over_the_transaction_written_before_it() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 10, ("orders", 1): 11})
    h.commit("g", {("orders", 0): 20})  # written after the transaction's record
    h.marker("g", committed=True)
    assert (h.committed("g", "orders", 0), h.committed("g", "orders", 1)) == (20, 11)
    assert_replays_identically(h)
    h.commit("g", {("orders", 2): 30})
    h.txn("g", {("orders", 2): 3})  # written after the plain commit: it wins at commit
    h.marker("g", committed=True)
    assert h.committed("g", "orders", 2) == 3
    assert_replays_identically(h)


def test_a_marker_completes_only_the_groups_of_its_partition() -> None:
    h = TxnHarness()
    a, b = "group-a", "group-b"
    assert h.coord.partition_for(a) != h.coord.partition_for(b)
    h.txn(a, {("orders", 0): 1})
    h.txn(b, {("orders", 0): 2})
    h.marker(a, committed=True)
    assert (h.committed(a, "orders", 0), h.committed(b, "orders", 0)) == (1, -1)
    assert h.stable(b, {"orders": [0]}) == {("orders", 0): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    assert_replays_identically(h)
    h.marker(b, committed=False)
    assert h.committed(b, "orders", 0) == -1
    assert h.coord._offsets.pending == {}
    assert_replays_identically(h)


def test_producers_are_independent_and_a_marker_without_offsets_is_ignored() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 1}, producer=(1, 0))
    h.txn("g", {("orders", 1): 2}, producer=(2, 0))
    h.marker("g", committed=True, producer=3)
    h.marker("g", committed=False, producer=1)
    assert h.stable("g", {"orders": [0, 1]}) == {
        ("orders", 0): (-1, 0),
        ("orders", 1): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
    }
    h.marker("g", committed=True, producer=2)
    assert (h.committed("g", "orders", 0), h.committed("g", "orders", 1)) == (-1, 2)
    assert_replays_identically(h)


def test_restart_in_the_middle_of_a_transaction() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 10})
    h.coord = h.replayed()
    assert h.stable("g", {"orders": [0]}) == {("orders", 0): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    h.txn("g", {("orders", 1): 11})  # the same transaction goes on
    h.marker("g", committed=True)
    assert (h.committed("g", "orders", 0), h.committed("g", "orders", 1)) == (10, 11)
    assert_replays_identically(h)


def test_metadata_and_leader_epoch_are_kept() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 7}, metadata="meta")
    h.txn("g", {("orders", 1): 8}, metadata=None)
    h.marker("g", committed=True)
    parts = h.fetch("g", {"orders": [0, 1]}).groups[0].topics[0].partitions
    assert [(p.committed_offset, p.committed_leader_epoch, p.metadata) for p in parts] == [
        (7, 2, "meta"),
        (8, 2, ""),
    ]


# -- require_stable --------------------------------------------------------------------


@pytest.mark.parametrize("version", [7, 8, 9])
def test_require_stable_names_partitions_with_pending_offsets(version: int) -> None:
    h = TxnHarness()
    h.commit("g", {("orders", 0): 1, ("orders", 1): 2})
    h.txn("g", {("orders", 1): 20, ("orders", 3): 30})
    assert h.stable("g", {"orders": [0, 1, 3]}, version=version) == {
        ("orders", 0): (1, 0),
        ("orders", 1): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
        ("orders", 3): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
    }
    # All partitions: those with a committed offset, the pending ones marked (Kafka's
    # fetchAllOffsets lists no partition that only a transaction holds).
    assert h.stable("g", None, version=version) == {
        ("orders", 0): (1, 0),
        ("orders", 1): (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
    }
    # Without require_stable: the committed offsets, as if no transaction were open.
    resp = h.fetch("g", {"orders": [0, 1, 3]}, version=version)
    parts = (resp.groups[0].topics if version >= 8 else resp.topics)[0].partitions
    assert [(p.committed_offset, p.error_code) for p in parts] == [(1, 0), (2, 0), (-1, 0)]


def test_require_stable_is_ignored_before_v7() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 20})
    req = OffsetFetchRequest(
        group_id="g",
        require_stable=True,
        topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name="orders", partition_indexes=[0])],
    )
    resp = h.call("offset_fetch", req, 6).response
    assert resp.topics[0].partitions[0].error_code == 0


# -- validation ------------------------------------------------------------------------


def test_unknown_topics_partitions_and_large_metadata() -> None:
    h = TxnHarness(offset_metadata_max_bytes=4)
    errors, result = h.txn("g", {("orders", 0): 1, ("orders", 6): 1, ("nope", 0): 1})
    assert errors == {
        ("orders", 0): 0,
        ("orders", 6): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert len(result.records) == 1
    errors, result = h.txn("g", {("orders", 1): 1}, metadata="toolong")
    assert errors == {("orders", 1): ErrorCode.OFFSET_METADATA_TOO_LARGE}
    assert result.records == [] and result.producer is None and result.revert is None


def test_group_id_and_producer_id_are_checked() -> None:
    h = TxnHarness()
    errors, result = h.txn("", {("orders", 0): 1, ("nope", 0): 1})
    assert errors == {
        ("orders", 0): ErrorCode.INVALID_GROUP_ID,
        ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    errors, result = h.txn("g", {("orders", 0): 1}, producer=(-1, -1))
    assert errors == {("orders", 0): ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert result.records == [] and "g" not in h.coord._shard.groups


def test_unknown_group() -> None:
    h = TxnHarness()
    errors, _ = h.txn("g", {("orders", 0): 1}, generation=1, member_id="m", version=3)
    assert errors == {("orders", 0): ErrorCode.ILLEGAL_GENERATION}  # never GROUP_ID_NOT_FOUND
    assert "g" not in h.coord._shard.groups
    errors, _ = h.txn("g", {("orders", 0): 1})
    assert errors == {("orders", 0): 0}
    assert "g" in h.coord._shard.groups  # a simple group, as for plain commits


def test_classic_group_member_and_generation() -> None:
    h = TxnHarness()
    g = form_group(h, 2, instance=None)
    m0, m1 = g.members
    gen = g.generation
    cases: list[tuple[dict[str, Any], int]] = [
        ({"generation": gen + 1, "member_id": m0}, ErrorCode.ILLEGAL_GENERATION),
        ({"generation": gen, "member_id": "ghost"}, ErrorCode.UNKNOWN_MEMBER_ID),
        ({"generation": -1, "member_id": m0}, ErrorCode.ILLEGAL_GENERATION),
        ({"generation": gen, "member_id": m0, "instance": "i"}, ErrorCode.UNKNOWN_MEMBER_ID),
        ({"generation": gen, "member_id": m1}, 0),
    ]
    for kw, expected in cases:
        errors, _ = h.txn("g", {("orders", 0): 1}, **kw)
        assert errors == {("orders", 0): expected}, kw
    # v0-2 carry no member id or generation: accepted whatever the group's state, unlike a
    # plain commit without them.
    errors, _ = h.txn("g", {("orders", 1): 1}, version=2)
    assert errors == {("orders", 1): 0}
    assert h.commit("g", {("orders", 1): 1}) == {("orders", 1): ErrorCode.UNKNOWN_MEMBER_ID}
    # The group's state is not enforced: a rebalance in progress does not refuse the commit.
    h.join("g", m0)
    errors, _ = h.txn("g", {("orders", 2): 1}, generation=gen, member_id=m0)
    assert errors == {("orders", 2): 0}


def test_classic_static_member_fencing() -> None:
    h = TxnHarness()
    member_id = static_group(h, ["static"])["static"]
    generation = h.classic().generation_id
    errors, _ = h.txn(
        "g", {("orders", 0): 1}, generation=generation, member_id="other", instance="static"
    )
    assert errors == {("orders", 0): ErrorCode.FENCED_INSTANCE_ID}
    errors, _ = h.txn(
        "g", {("orders", 0): 1}, generation=generation, member_id=member_id, instance="static"
    )
    assert errors == {("orders", 0): 0}


def test_consumer_group_member_epoch() -> None:
    h = TxnHarness()
    c = Client(h, "m1")
    run_until_stable(h, [c])
    errors, _ = h.txn("c", {("orders", 0): 1}, generation=c.epoch + 1, member_id="m1")
    assert errors == {("orders", 0): ErrorCode.ILLEGAL_GENERATION}  # not STALE_MEMBER_EPOCH
    errors, _ = h.txn("c", {("orders", 0): 1}, generation=c.epoch, member_id="ghost")
    assert errors == {("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    errors, _ = h.txn("c", {("orders", 0): 1}, generation=-1)
    assert errors == {("orders", 0): ErrorCode.UNKNOWN_MEMBER_ID}  # the group has members
    # No OffsetCommit-v9 requirement for transactional commits of KIP-848 members.
    errors, _ = h.txn("c", {("orders", 0): 1}, generation=c.epoch, member_id="m1", version=3)
    assert errors == {("orders", 0): 0}
    h.marker("c", committed=True)
    assert h.fetch("c", {"orders": [0]}).groups[0].topics[0].partitions[0].committed_offset == 1
    assert_replays_identically(h)


# -- failed appends --------------------------------------------------------------------


def test_revert_undoes_a_write_that_could_not_be_appended() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 1})
    _, result = h.txn("g", {("orders", 0): 2, ("orders", 1): 3})
    assert result.revert is not None
    h.entries = h.entries[:-2]  # the runtime did not write them
    response = result.revert(ErrorCode.KAFKA_STORAGE_ERROR)
    assert [p.error_code for t in response.topics for p in t.partitions] == [
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NOT_COORDINATOR,
    ]
    assert_replays_identically(h)  # the earlier offset of the transaction is still pending
    h.marker("g", committed=True)
    assert (h.committed("g", "orders", 0), h.committed("g", "orders", 1)) == (1, -1)


def test_revert_of_a_fenced_producer_forgets_the_simple_group() -> None:
    h = TxnHarness()
    _, result = h.txn("new", {("orders", 0): 1})
    assert result.revert is not None
    response = result.revert(ErrorCode.PRODUCER_FENCED)
    assert response.topics[0].partitions[0].error_code == ErrorCode.PRODUCER_FENCED
    assert "new" not in h.coord._shard.groups
    assert h.coord._offsets.pending == {} and h.coord._offsets.open_transactions == {}


# -- deletion and expiry ---------------------------------------------------------------


def test_offset_delete_tombstones_pending_offsets() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 1, ("orders", 1): 2})
    req = OffsetDeleteRequest(
        group_id="g",
        topics=[
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                name="orders",
                partitions=[OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=0)],
            )
        ],
    )
    result = h.call("offset_delete", req, 0)
    assert [r.value for r in result.records] == [None]
    assert_replays_identically(h)
    h.marker("g", committed=True)
    assert (h.committed("g", "orders", 0), h.committed("g", "orders", 1)) == (-1, 2)
    assert_replays_identically(h)


def test_delete_groups_tombstones_pending_offsets() -> None:
    h = TxnHarness()
    h.commit("g", {("orders", 0): 1})
    h.txn("g", {("orders", 0): 5, ("orders", 1): 6})
    result = h.call("delete_groups", DeleteGroupsRequest(groups_names=["g"]), 2)
    response: Any = result.response
    assert response.results[0].error_code == 0
    tombstones = {
        (k.topic, k.partition)
        for r in result.records
        if r.value is None and (k := decode_key(r.key)) and k.version == OFFSET_COMMIT_KEY
    }
    assert tombstones == {("orders", 0), ("orders", 1)}
    assert "g" not in h.coord._shard.groups
    assert_replays_identically(h)
    h.marker("g", committed=True)
    assert h.coord._offsets.offsets == {} and h.coord._offsets.open_transactions == {}
    assert_replays_identically(h)


def test_group_with_an_open_transaction_is_not_expired() -> None:
    h = TxnHarness(offsets_retention_minutes=1, offsets_retention_check_interval_ms=MINUTE)
    h.txn("pending-only", {("orders", 0): 1})
    h.commit("mixed", {("orders", 0): 1, ("orders", 1): 1})
    h.txn("mixed", {("orders", 0): 2})
    h.tick(3 * MINUTE)
    assert "pending-only" in h.coord._shard.groups  # KAFKA-19163
    assert "mixed" in h.coord._shard.groups
    # The offset a transaction would replace is kept; the other one expires.
    assert (h.committed("mixed", "orders", 0), h.committed("mixed", "orders", 1)) == (1, -1)
    h.marker("pending-only", committed=False)
    h.marker("mixed", committed=False)
    h.tick(MINUTE)
    assert "pending-only" not in h.coord._shard.groups
    assert "mixed" not in h.coord._shard.groups  # its offset is old enough: it goes now
    assert_replays_identically(h)


def test_deleted_topics_lose_pending_offsets() -> None:
    h = TxnHarness()
    h.txn("g", {("orders", 0): 1, ("logs", 0): 2})
    result = h.take(h.coord.on_topics_deleted(h.now, ["orders"]))
    assert [r.value for r in result.records] == [None]
    h.marker("g", committed=True)
    assert (h.committed("g", "orders", 0), h.committed("g", "logs", 0)) == (-1, 2)
    assert_replays_identically(h)


def test_txn_commit_leaves_due_timers_to_poll() -> None:
    """Its Result holds the transaction's records only, even when a timer is due."""
    h = TxnHarness(offsets_retention_minutes=1, offsets_retention_check_interval_ms=MINUTE)
    h.commit("old", {("orders", 0): 1})
    h.now += 5 * MINUTE
    _, result = h.txn("g", {("orders", 0): 1})
    assert len(result.records) == 1 and result.producer == (PID, EPOCH)
    assert h.committed("old", "orders", 0) == -1  # the next call ran the expiry
