"""KIP-848's online migration with confluent-kafka (issue 16, item 11): a classic consumer
(`group.protocol=classic`) owns a group; a consumer-protocol consumer (`group.protocol=consumer`)
joins the same group, which the coordinator converts online; both get partitions and together
consume everything exactly once. Then the consumer-protocol member leaves, the group converts
back to classic, and the classic member gets every partition."""

from __future__ import annotations

import pytest
from helpers.broker_process import BrokerFactory
from helpers.confluent import create_topic
from helpers.groups import (
    ConfluentMember,
    GroupLog,
    classic_config,
    duplicates,
    produce_numbered,
    unique,
)

from .test_groups_kip848 import KIP848_BROKER_SETTINGS

PARTITIONS = 4
BATCH = 200


def _batch(n: int) -> range:
    return range(n * BATCH, (n + 1) * BATCH)


@pytest.mark.timeout(180)
def test_classic_and_consumer_members_share_a_group(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(KIP848_BROKER_SETTINGS)
    topic, group = unique("migration-topic"), unique("migration")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    log = GroupLog()
    classic = ConfluentMember(
        "classic",
        broker.bootstrap,
        group,
        topic,
        log,
        classic_config(**{"group.protocol": "classic"}),
    )
    modern = ConfluentMember(
        "modern", broker.bootstrap, group, topic, log, {"group.protocol": "consumer"}
    )
    try:
        produce_numbered(broker.bootstrap, topic, _batch(0), PARTITIONS)
        classic.start()
        log.wait_for_assignment({"classic": PARTITIONS}, PARTITIONS)
        log.wait_for_processed(_batch(0))

        # A consumer-protocol member joins the classic group: it is upgraded online.
        modern.start()
        shared = log.wait_for_assignment({"classic": 2, "modern": 2}, PARTITIONS)
        assert shared["classic"] | shared["modern"] == frozenset(range(PARTITIONS))
        produce_numbered(broker.bootstrap, topic, _batch(1), PARTITIONS)
        log.wait_for_processed(_batch(1))
        by_member = {p.member for p in log.processed_so_far() if p.msg_id in _batch(1)}
        assert by_member == {"classic", "modern"}

        # The last consumer-protocol member leaves: the group is classic again.
        modern.stop()
        log.wait_for_assignment({"classic": PARTITIONS}, PARTITIONS)
        produce_numbered(broker.bootstrap, topic, _batch(2), PARTITIONS)
        log.wait_for_processed(_batch(2))
        late = {p.member for p in log.processed_so_far() if p.msg_id in _batch(2)}
        assert late == {"classic"}
        classic.stop()
    finally:
        for member in (classic, modern):
            member.loop.request_stop()

    assert set(log.processed_ids()) == set(range(3 * BATCH)), "messages lost"
    dup = duplicates(log.processed_so_far())
    assert not dup, f"processed twice: {dict(list(dup.items())[:5])}; {log.summary()}"
    assert not log.failures_so_far(), log.failures_so_far()
