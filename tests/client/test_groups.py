"""Consumer groups with our consumer: members share partitions, commit, leave, resume.

These need the broker side of consumer groups; until the broker advertises JoinGroup they
skip. ``MMS_GROUP_TEST_BOOTSTRAP=host:port`` runs them against another broker instead (the
reference Apache Kafka, to tell a wrong client from a wrong broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from metamorphostreams.client import (
    Admin,
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    CommitFailedError,
    Consumer,
    NewTopic,
    Producer,
    TopicPartition,
)
from metamorphostreams.pytest_plugin import BrokerThread

from .conftest import CONSUMER_GROUP_HEARTBEAT, require_groups, serves_api

LIMIT_S = 60.0  # liveness bound on a rebalance or a drain; healthy runs take a second or two
PARTITIONS = 6
# KIP-848 members learn of new assignments at their next heartbeat: make that soon.
BROKER_PROPS = {
    "num.partitions": "3",
    "group.consumer.heartbeat.interval.ms": "200",
    "group.consumer.min.heartbeat.interval.ms": "100",
}
FAST = {"heartbeat.interval.ms": "100", "session.timeout.ms": "10000", "retry.backoff.ms": "20"}


@pytest.fixture
def group_bootstrap(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    external = os.environ.get("MMS_GROUP_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    with BrokerThread(tmp_path / "data", BROKER_PROPS) as broker:
        require_groups(broker.bootstrap)
        yield broker.bootstrap


def _topic(bootstrap: str, partitions: int = PARTITIONS) -> str:
    name = f"grp-{uuid.uuid4().hex[:10]}"
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        admin.create_topics([NewTopic(name, partitions, 1)])
    return name


async def _produce(bootstrap: str, topic: str, start: int, count: int) -> None:
    async with AsyncProducer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(start, start + count):
            await producer.send(topic, b"%d" % i, key=b"k%d" % i)
        await producer.flush()


class Member:
    """One group member polling in its own task, committing after every poll."""

    def __init__(self, bootstrap: str, group: str, topic: str, extra: dict[str, str]) -> None:
        self.consumer = AsyncConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": "false",
                **FAST,
                **extra,
            }
        )
        self.consumer.subscribe([topic], on_revoke=self._revoked)
        self.values: list[int] = []
        self._stop = False
        self.task = asyncio.ensure_future(self._run())

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        # The classic pattern: commit what was read before the partitions move on.
        positions = {tp: await self.consumer.position(tp) for tp in partitions}
        await self.consumer.commit(positions)

    async def _run(self) -> None:
        while not self._stop:
            records = await self.consumer.poll(100)
            self.values += [int(r.value or b"-1") for r in records]
            if records:
                with contextlib.suppress(CommitFailedError):
                    # A rebalance is under way: the revocation callback commits instead.
                    await self.consumer.commit()

    async def stop(self) -> None:
        self._stop = True
        await self.task
        await self.consumer.close()


async def _until(predicate, what: str, members: Sequence[Member] = ()) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``predicate``; a member whose poll loop died fails the wait at once."""
    deadline = time.monotonic() + LIMIT_S
    while not predicate():
        for m in members:
            if m.task.done():
                m.task.result()  # raises what stopped it
                raise AssertionError("a member stopped polling")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def run_guarded(coro_fn, limit_s: float = 2 * LIMIT_S) -> None:  # type: ignore[no-untyped-def]
    """asyncio.run with a deadline that prints every task's stack when it hangs."""

    async def guarded() -> None:
        try:
            await asyncio.wait_for(coro_fn(), limit_s)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack(limit=12)
            raise

    asyncio.run(guarded())


def _all_values(members: list[Member], gone: list[Member]) -> list[int]:
    return [v for m in members + gone for v in m.values]


PROTOCOLS = [
    pytest.param({"partition.assignment.strategy": "range"}, id="classic-range"),
    pytest.param({"partition.assignment.strategy": "roundrobin"}, id="classic-roundrobin"),
    pytest.param(
        {"partition.assignment.strategy": "cooperative-sticky"}, id="classic-cooperative-sticky"
    ),
    pytest.param({"group.protocol": "consumer"}, id="kip-848"),
]


@pytest.mark.parametrize("extra", PROTOCOLS)
def test_three_members_share_commit_leave_and_resume(
    group_bootstrap: str, extra: dict[str, str]
) -> None:
    if extra.get("group.protocol") == "consumer" and not serves_api(
        group_bootstrap, CONSUMER_GROUP_HEARTBEAT
    ):
        pytest.skip("the broker does not serve the KIP-848 consumer protocol")
    three_members_share_commit_leave_and_resume(group_bootstrap, extra)


def three_members_share_commit_leave_and_resume(bootstrap: str, extra: dict[str, str]) -> None:
    """3 members share a 6-partition topic with commits; one leaves; nothing is lost or
    duplicated; a new member resumes from the committed offsets."""
    topic = _topic(bootstrap)
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        members = [Member(bootstrap, group, topic, extra) for _ in range(3)]
        gone: list[Member] = []

        def spread() -> bool:
            owned = [m.consumer.assignment() for m in members]
            return all(len(o) == 2 for o in owned) and len(set().union(*owned)) == PARTITIONS

        await _until(spread, "6 partitions spread over 3 members", members)
        await _produce(bootstrap, topic, 0, 600)
        await _until(lambda: len(_all_values(members, gone)) >= 600, "600 records", members)
        leaving = members.pop()
        await leaving.stop()
        gone.append(leaving)

        def taken_over() -> bool:
            owned = [m.consumer.assignment() for m in members]
            return len(set().union(*owned)) == PARTITIONS and all(len(o) == 3 for o in owned)

        await _until(taken_over, "the leaver's partitions taken over", members)
        await _produce(bootstrap, topic, 600, 300)
        await _until(lambda: len(_all_values(members, gone)) >= 900, "900 records", members)
        await asyncio.sleep(0.3)  # room for any duplicate to show up
        values = _all_values(members, gone)
        assert sorted(values) == list(range(900)), "lost or duplicated records"
        for m in members:
            await m.stop()
        # A new member resumes from the committed offsets.
        await _produce(bootstrap, topic, 900, 50)
        again = Member(bootstrap, group, topic, extra)
        await _until(lambda: len(again.values) >= 50, "records after the restart", [again])
        await asyncio.sleep(0.3)
        await again.stop()
        assert sorted(again.values) == list(range(900, 950))

    run_guarded(run)


def test_rebalance_callbacks_run_in_the_polling_thread(group_bootstrap: str) -> None:
    bootstrap = group_bootstrap
    topic = _topic(bootstrap, 2)
    group = f"cb-{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, set[TopicPartition]]] = []
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(10):
            producer.produce(topic, str(i), partition=i % 2)
        producer.flush()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            **FAST,
        }
    )

    def revoked(partitions: set[TopicPartition]) -> None:
        events.append(("revoke", partitions))
        consumer.commit()  # calling back into the consumer from a callback must work

    consumer.subscribe([topic], on_assign=lambda p: events.append(("assign", p)), on_revoke=revoked)
    got: list = []
    deadline = time.monotonic() + LIMIT_S
    while len(got) < 10 and time.monotonic() < deadline:
        got += consumer.poll(0.2)
    consumer.close()
    assert len(got) == 10
    assert events[0] == ("assign", {TopicPartition(topic, 0), TopicPartition(topic, 1)})
    assert events[-1][0] == "revoke"
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        assert admin.list_group_offsets(group) == {
            TopicPartition(topic, 0): 5,
            TopicPartition(topic, 1): 5,
        }


def test_admin_groups(group_bootstrap: str) -> None:
    bootstrap = group_bootstrap
    topic = _topic(bootstrap, 2)
    group = f"adm-{uuid.uuid4().hex[:8]}"
    with Producer({"bootstrap.servers": bootstrap}) as producer:
        for i in range(8):
            producer.produce(topic, str(i), partition=i % 2)
        producer.flush()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "client.id": "adm-test",
            **FAST,
        }
    )
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + LIMIT_S
    while len(got) < 8 and time.monotonic() < deadline:
        got += consumer.poll(0.2)
    consumer.commit({TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 4})
    with Admin({"bootstrap.servers": bootstrap}) as admin:
        assert group in {g.group_id for g in admin.list_groups()}
        desc = admin.describe_groups([group])[group]
        assert desc.state == "Stable"
        assert [m.client_id for m in desc.members] == ["adm-test"]
        assert set(desc.members[0].assignment) == {
            TopicPartition(topic, 0),
            TopicPartition(topic, 1),
        }
        assert admin.group_lag(group) == {
            TopicPartition(topic, 0): (3, 4, 1),
            TopicPartition(topic, 1): (4, 4, 0),
        }
        consumer.close(autocommit=False)
        admin.alter_group_offsets(group, {TopicPartition(topic, 0): 0})
        assert admin.list_group_offsets(group)[TopicPartition(topic, 0)] == 0
        admin.delete_groups([group])
        assert group not in {g.group_id for g in admin.list_groups()}


def test_auto_commit_commit_async_and_new_partitions(group_bootstrap: str) -> None:
    bootstrap = group_bootstrap
    topic = _topic(bootstrap, 1)
    group = f"ac-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        await _produce(bootstrap, topic, 0, 10)
        consumer = AsyncConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "auto.commit.interval.ms": "50",
                "metadata.max.age.ms": "200",
                **FAST,
            }
        )
        consumer.subscribe([topic])
        got: list = []
        await _until_async(consumer, got, 10)
        tp0 = TopicPartition(topic, 0)

        async def committed() -> int | None:
            return (await consumer.committed([tp0]))[tp0]

        deadline = time.monotonic() + LIMIT_S
        while await committed() != 10:  # auto-commit, from inside poll()
            assert time.monotonic() < deadline, "auto-commit never happened"
            await consumer.poll(50)
        outcome: list = []
        await consumer.commit_async({tp0: 7}, lambda err, offsets: outcome.append(err))
        assert outcome == [None] and await committed() == 7
        # Partitions added to a subscribed topic are picked up after a metadata refresh.
        async with AsyncAdmin({"bootstrap.servers": bootstrap}) as admin:
            await admin.create_partitions({topic: 3})
        deadline = time.monotonic() + LIMIT_S
        while len(consumer.assignment()) != 3:
            assert time.monotonic() < deadline, "new partitions never assigned"
            await consumer.poll(50)
        await consumer.close()

    asyncio.run(run())


async def _until_async(consumer: AsyncConsumer, got: list, n: int) -> None:
    deadline = time.monotonic() + LIMIT_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} records"
        got += await consumer.poll(100)


def test_member_that_stops_polling_leaves(group_bootstrap: str) -> None:
    bootstrap = group_bootstrap
    topic = _topic(bootstrap, 2)
    group = f"slow-{uuid.uuid4().hex[:8]}"
    lost: list[set[TopicPartition]] = []

    async def run() -> None:
        slow = AsyncConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "max.poll.interval.ms": "500",
                **FAST,
            }
        )
        slow.subscribe([topic], on_lost=lost.append)
        while len(slow.assignment()) != 2:
            await slow.poll(50)
        fast = Member(bootstrap, group, topic, {})
        # `slow` stops polling: past max.poll.interval.ms it leaves, and `fast` gets all.
        await _until(lambda: len(fast.consumer.assignment()) == 2, "the fast member owns all")
        await slow.poll(0)
        assert lost and lost[0] == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        # poll() rejoined `slow`: it leaves first, or `fast` would wait in a rebalance for it.
        await slow.close()
        await fast.stop()

    run_guarded(run)
